"""Command-line mistakes (unknown command or option, missing or bad value) are one line, exit 2,
and every long command has --quiet."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xaug.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args, message", [
    (["synth", "--persons", "6", "--bogus"], "error: xaug synth: No such option: --bogus"),
    (["synth"], "error: xaug synth: Missing option '--persons'"),
    (["synth", "--persons", "six"], "error: xaug synth: Invalid value for '--persons'"),
    (["rotat"], "error: xaug: No such command 'rotat'. Did you mean 'rotate'?"),
    (["--bogus"], "error: xaug: No such option: --bogus"),
    (["rotate", "--pivot", "elbow"], "error: xaug rotate: Invalid value for '--pivot'"),
    (["datasets", "--jsn"], "error: xaug datasets: No such option: --jsn (Possible options: --json)"),
    (["show"], "error: xaug show: Missing argument 'name'"),
    (["train", "--dataset", "raw", "--epochs", "0"], "error: xaug train: Invalid value for '--epochs'"),
])
def test_usage_mistakes_are_one_line_naming_the_command_and_flag(tmp_path, args, message):
    res = runner.invoke(app, ["--help"] if not args else args, env={"XAUG_HOME": str(tmp_path / "h")})
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(message), lines[0]
    assert "--help`)" in lines[0]
    assert "╭" not in res.output and "Traceback" not in res.output
    assert not (tmp_path / "h").exists()  # nothing was created


def installed_script() -> str:
    """The `xaug` console script pip installed for this interpreter."""
    for candidate in (Path(sysconfig.get_path("scripts")) / "xaug", Path(sys.executable).with_name("xaug"),
                      Path(shutil.which("xaug") or "")):
        if candidate.name == "xaug" and candidate.is_file():
            return str(candidate)
    raise AssertionError("the xaug console script is not installed (pip install -e .)")


def test_usage_mistake_from_the_installed_entry_point(tmp_path):
    out = subprocess.run([installed_script(), "verify", "--jsn", "raw"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: xaug verify: No such option: --jsn (Possible options: --json) (see `xaug verify --help`)"]


LONG_COMMANDS = ("import", "export", "synth", "rotate", "mosaic", "flip", "run", "train", "evaluate",
                 "predict", "eda", "errors", "demo")


@pytest.mark.parametrize("command", LONG_COMMANDS)
def test_every_long_command_has_quiet(command):
    res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "--quiet" in res.stdout and "-q" in res.stdout


def test_quiet_synth_prints_only_its_summary(tmp_path):
    res = runner.invoke(app, ["synth", "--persons", "2", "--test-persons", "1", "--size", "128", "-q",
                              "--jobs", "1", "--home", str(tmp_path / "h")])
    assert res.exit_code == 0, res.output
    assert res.stderr == ""
    assert res.stdout.startswith("raw_v1 (") and len(res.stdout.strip().splitlines()) == 1


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, monkeypatch):
    import xaug.synth.generate as generate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate, "synthesize", interrupted)
    res = runner.invoke(app, ["synth", "--persons", "2", "--home", str(tmp_path / "h")])
    assert res.exit_code == 130
    assert res.stderr.strip().splitlines() == [
        "error: interrupted; nothing half-done was published (the store is consistent): "
        "run the same command again to finish"]
