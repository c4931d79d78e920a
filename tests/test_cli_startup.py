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
