"""`xaug demo` end to end at a tiny size: every step runs, a second call reuses everything."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from xaug.cli import app
from xaug.store import Store

runner = CliRunner()


def test_demo_runs_end_to_end_and_reuses_its_work(tmp_path):
    home, runs = tmp_path / "home", tmp_path / "runs"
    args = ["demo", "--persons", "5", "--test-persons", "2", "--size", "128", "--train-size", "64",
            "--epochs", "1", "--width", "4", "--runs", str(runs), "--home", str(home), "--jobs", "1",
            "--device", "cpu"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "rotated wrists" in first.output and "baseline" in first.output and "rotate" in first.output
    store = Store(home)
    names = sorted(store.names())
    assert names == ["demo_mosaic_v1", "demo_rotate_v1", "demo_v1"]
    for run in ("demo-baseline", "demo-rotate"):
        ev = json.loads((runs / run / "eval_demo_v1_test.json").read_text())
        assert 0.0 <= ev["mean_dice"] <= 1.0 and len(ev["per_class"]) == 29
    assert (runs / "demo-comparison.png").stat().st_size > 10_000
    mtime = (runs / "demo-baseline" / "last.pt").stat().st_mtime_ns
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "up to date" in second.output
    assert sorted(Store(home).names()) == names
    assert (runs / "demo-baseline" / "last.pt").stat().st_mtime_ns == mtime
