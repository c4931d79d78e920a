"""Store and augmentation commands must start fast: importing the CLI never imports torch."""
from __future__ import annotations

import subprocess
import sys


def test_cli_import_does_not_import_torch_or_matplotlib():
    code = ("import sys, xaug.cli; heavy = [m for m in ('torch', 'matplotlib', 'trainer') if m in sys.modules];"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_lists_the_command_groups():
    out = subprocess.run([sys.executable, "-m", "xaug", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("import", "datasets", "show", "verify", "export"):
        assert cmd in out.stdout


def test_the_process_exit_keeps_output_codes_and_atexit(tmp_path):
    """`main()` skips the interpreter's teardown for commands without torch: the output must still
    be complete (piped to a file), the exit codes those of the command, and atexit handlers run."""
    import json
    import os

    from xaug.synth.generate import synthesize
    from xaug.store import Store

    home = tmp_path / "home"
    synthesize(Store(home), "raw", persons=3, test_persons=1, size=64, seed=0, progress=False, jobs=1)
    out_file = tmp_path / "items.json"
    with open(out_file, "w") as fh:
        r = subprocess.run([sys.executable, "-m", "xaug", "show", "raw", "--items", "--json", "--home", str(home)],
                           stdout=fh, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stderr
    shown = json.loads(out_file.read_text())  # every byte of the JSON arrived
    assert shown["items"] == len(shown["items_list"]) == 8
    r = subprocess.run([sys.executable, "-m", "xaug", "show", "nosuch", "--home", str(home)], capture_output=True,
                       text=True)
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "unknown dataset 'nosuch'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "xaug"], capture_output=True, text=True)
    assert r.returncode == 2 and "Usage" in r.stdout + r.stderr and "error:" not in r.stdout + r.stderr
    # an atexit handler registered during a command still runs (sitecustomize registers one)
    site = tmp_path / "site"
    site.mkdir()
    marker = tmp_path / "atexit-ran"
    (site / "sitecustomize.py").write_text(
        f"import atexit\natexit.register(lambda: open({str(marker)!r}, 'w').write('ok'))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "xaug", "datasets", "--home", str(home)], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0 and "raw" in r.stdout and marker.read_text() == "ok"
