"""train, evaluate, predict and compare end to end through the CLI on a tiny synthetic store."""
from __future__ import annotations

import csv
import json

import pytest
import torch
from typer.testing import CliRunner

from xaug.cli import app
from xaug.classes import CLASSES

TINY = ["--epochs", "1", "--size", "64", "--batch", "2", "--width", "8", "--depth", "3",
        "--workers", "0", "--device", "cpu"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def home(make_store, tmp_path):
    import shutil

    src = make_store(persons=4, test_persons=1, size=128)
    dst = tmp_path / "home"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.lock", "lock"))
    return dst


def test_train_evaluate_predict_compare(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke("train", "--dataset", "raw", "--run", "base", "--home", home, *TINY)
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "base"
    for name in ("config.json", "metrics.jsonl", "best.pt", "last.pt", "val_dice.csv", "curve.png"):
        assert (run / name).exists(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["dataset"] == "raw_v1" and cfg["val_dataset"] == "raw_v1" and len(cfg["dataset_id"]) >= 12
    assert torch.load(run / "best.pt", weights_only=True)["config"]["size"] == 64

    # a derived version validates on the root of its lineage
    res = invoke("rotate", "--pivot", "wrist", "--angles", "20:40", "--home", home, "--jobs", "1", "--quiet")
    assert res.exit_code == 0, res.output
    res = invoke("train", "--dataset", "rotate", "--run", "rot", "--home", home, *TINY)
    assert res.exit_code == 0, res.output
    rot_cfg = json.loads((tmp_path / "runs" / "rot" / "config.json").read_text())
    assert rot_cfg["dataset"].startswith("rotate") and rot_cfg["val_id"] == cfg["val_id"]

    res = invoke("evaluate", "--run", "base", "--split", "test", "--json", "--home", home, "--device", "cpu")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["split"] == "test" and 0 <= summary["mean_dice"] <= 1
    assert list(summary["per_class"]) == list(CLASSES) and summary["images"] == 2
    assert (run / "eval_raw_v1_test.csv").exists()
    res = invoke("evaluate", "--run", "rot", "--split", "test", "--tta", "hflip", "--home", home, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "mean Dice" in res.stdout and "Pisiform" in res.stdout

    res = invoke("predict", "--run", "base", "--dataset", "raw", "--split", "test", "--out",
                 tmp_path / "submission.csv", "--home", home, "--device", "cpu")
    assert res.exit_code == 0, res.output
    rows = list(csv.reader(open(tmp_path / "submission.csv")))
    assert rows[0] == ["image_name", "class", "rle"] and len(rows) == 1 + 2 * 29
    assert [r[1] for r in rows[1:30]] == list(CLASSES) and rows[1][0].endswith(".png")

    res = invoke("compare", "base", "rot", "--split", "test", "--json")
    assert res.exit_code == 0, res.output
    comp = json.loads(res.stdout)
    assert [r["run"] for r in comp["runs"]] == ["base", "rot"] and comp["runs"][0]["delta_mean"] == 0
    assert (tmp_path / "runs" / "compare.png").exists()
    res = invoke("compare", "base", "rot", "--split", "test")
    assert res.exit_code == 0 and "diff" in res.stdout

    # resume of a finished run is a no-op; a second train into the same folder is refused
    res = invoke("train", "--dataset", "raw", "--run", "base", "--home", home, "--resume", *TINY)
    assert res.exit_code == 0, res.output
    res = invoke("train", "--dataset", "raw", "--run", "base", "--home", home, *TINY)
    assert res.exit_code == 2 and "--resume" in res.output


def test_user_mistakes_are_one_line_errors(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke("evaluate", "--run", "missing", "--home", home)
    assert res.exit_code == 2 and "no config.json" in res.output
    res = invoke("train", "--dataset", "nope", "--home", home, *TINY)
    assert res.exit_code == 2 and "error:" in res.output
    res = invoke("train", "--dataset", "raw", "--home", home, "--size", "100", "--depth", "3", *TINY[4:])
    assert res.exit_code == 2 and "multiple of 2**depth" in res.output
    res = invoke("compare", "nothing-here")
    assert res.exit_code == 2 and "error:" in res.output


def test_unlabelled_test_split_is_a_clear_error(tmp_path, monkeypatch):
    """An imported competition layout has no test labels: scoring it says so; predicting works."""
    from _layout import make_layout

    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    assert invoke("import", make_layout(tmp_path / "src", persons=5, size=48), "--home", home).exit_code == 0
    res = invoke("train", "--dataset", "raw", "--val", "raw", "--run", "imp", "--home", home, *TINY)
    assert res.exit_code == 0, res.output
    res = invoke("evaluate", "--run", "imp", "--split", "test", "--home", home, "--device", "cpu")
    assert res.exit_code == 2 and "have no labels" in res.output
    res = invoke("predict", "--run", "imp", "--out", tmp_path / "sub.csv", "--home", home, "--device", "cpu")
    assert res.exit_code == 0, res.output
    rows = (tmp_path / "sub.csv").read_text().splitlines()
    assert len(rows) == 1 + 29 and rows[1].split(",")[1] == "finger-1"


def test_dice_tables_keep_every_number_whole_on_a_narrow_non_terminal():
    """`xaug compare` and `evaluate` print through print_table: in a 40-column log nothing is cut."""
    import io

    from rich.console import Console

    from xaug.cli.common import print_table
    from xaug.cli.train import _dice_table

    cols = ["baseline-s0-f62cdb4ed695", "wrist-s0-6fb2cf63595f", "diff", "mosaic-s0-5232f792309f", "diff"]
    rows = [[c, [0.9617, 0.9580, -0.0037, 0.9623, +0.0006]] for c in CLASSES]
    log = io.StringIO()
    print_table(_dice_table("per-class Dice (test)", cols, rows, delta=True),
                Console(file=log, width=40, highlight=False, soft_wrap=True))
    text = log.getvalue()
    assert "…" not in text
    for name in [cols[0], cols[1], cols[3], "finger-19", "Trapezium"]:
        assert name in text
    assert len([line for line in text.splitlines() if "0.9617" in line and "-0.0037" in line
                and line.rstrip().endswith("+0.0006 │")]) == len(CLASSES)


def test_compare_without_an_evaluation_of_the_split_names_the_command_that_makes_it(tmp_path, monkeypatch):
    """`xaug evaluate --run R` alone scores val: the hint for a missing test evaluation says --split test."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "base"
    run.mkdir(parents=True)
    (run / "eval_raw_v1_val.json").write_text(json.dumps({"split": "val", "mean_dice": 0.5, "per_class": {}}))
    res = invoke("compare", "base", "--split", "test")
    assert res.exit_code == 2
    assert "no evaluation of split test in the run folder; run `xaug evaluate --run base --split test` first" \
        in res.output
