"""Where a command may write its outputs (reports, overlays, run folders, a submission): checked
before any work, each refusal one line naming the flag and the path.

An output never goes inside the store: the store holds only what its manifests list, and a
report written there would be an unlisted file that `xaug verify` reports as extra.

    check_output_dir(Path("reports/eda"), "--out", store)     # a folder to create or write into
    check_output_file(Path("hand.png"), "--out", store, example="overlay.png")
"""
from __future__ import annotations

import os
from pathlib import Path

from xaug.errors import XaugError


def check_output_dir(path: Path, flag: str, store=None) -> None:
    """Before any work: `path` can be (or become) a folder we write into, outside the store."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise XaugError("is a file, not a folder; choose another path", where=f"{flag} {path}")
    _check_writable(path if path.exists() else _existing_parent(path), path, flag)
    _check_outside_store(path, flag, store)


def check_output_file(path: Path, flag: str, store=None, example: str = "submission.csv") -> None:
    """Before any work: `path` is a file we can (over)write, not a folder, outside the store."""
    path = Path(path)
    if path.is_dir():
        raise XaugError(f"is a folder; give a file path such as {example}", where=f"{flag} {path}")
    parent = _existing_parent(path.parent) if not path.parent.is_dir() else path.parent
    if not parent.is_dir():
        raise XaugError(f"{parent} is a file, not a folder; choose another path", where=f"{flag} {path}")
    _check_writable(parent, path, flag)
    if path.exists() and not os.access(path, os.W_OK):
        raise XaugError("cannot overwrite this file (permission denied); choose another path",
                        where=f"{flag} {path}")
    _check_outside_store(path, flag, store)


def _existing_parent(path: Path) -> Path:
    probe = Path(path).absolute()
    while not probe.exists():
        probe = probe.parent
    return probe


def _check_writable(folder: Path, path: Path, flag: str) -> None:
    if not folder.is_dir():
        raise XaugError(f"{folder} is a file, not a folder; choose another path", where=f"{flag} {path}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise XaugError(f"cannot write in {folder} (permission denied or read-only); choose another path",
                        where=f"{flag} {path}")


def _check_outside_store(path: Path, flag: str, store) -> None:
    if store is None:
        return
    home = Path(store.home).resolve()
    if Path(path).resolve().is_relative_to(home):
        raise XaugError(f"is inside the store {store.home}; write outputs elsewhere", where=f"{flag} {path}")
