"""`xaug synth` through typer's CliRunner."""
from __future__ import annotations


from typer.testing import CliRunner

from xaug.cli import app
from xaug.store import Store


def test_synth_command_registers_a_dataset(tmp_path):
    home = tmp_path / "home"
    args = ["synth", "--persons", "2", "--test-persons", "1", "--size", "128", "--seed", "3",
            "--jobs", "1", "--home", str(home)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "raw_v1" in res.stdout and "4 train images" in res.stdout and "2 test images" in res.stdout
    ds = Store(home).open("raw")
    assert ds.manifest["kind"] == "synth" and ds.manifest["spec"]["size"] == 128
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and ds.id[:12] in again.stdout
    assert len(Store(home).datasets()) == 1
    assert again.stderr == ""
    shown = CliRunner().invoke(app, ["show", "raw", "--items", "--json", "--home", str(home)])
    assert shown.exit_code == 0 and "wrist_rotated" in shown.stdout  # each item's pose and edge cases
    other = CliRunner().invoke(app, args + ["--name", "other", "-q"])
    assert other.exit_code == 0 and other.stdout.startswith("raw_v1 (")
    assert other.stderr.strip() == ("note: this spec was already synthesized as raw_v1; reusing it "
                                    "(no version named 'other' was added)")
    assert Store(home).names() == ["raw_v1"]


def test_synth_rejects_bad_rates_in_one_line(tmp_path):
    res = CliRunner().invoke(app, ["synth", "--persons", "2", "--rotated-train", "2",
                                   "--home", str(tmp_path)])
    assert res.exit_code == 2
    assert "error: synth: --rotated-train is a fraction of images between 0 and 1, got 2.0" in res.output
    assert "Traceback" not in res.output
