"""The `xaug` command line: one module per command group; each exposes `register(app)`.

Nothing in the library imports this package. Heavy imports (torch, matplotlib) happen inside
the commands that need them, so store and augmentation commands start fast.
"""
from __future__ import annotations

import importlib
import typer

from xaug.cli.common import XaugGroup

app = typer.Typer(
    cls=XaugGroup,
    name="xaug",
    help="Offline augmentation and dataset engineering for hand X-ray bone segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command groups, registered in this order (each module: `def register(app): ...`).
COMMAND_MODULES = ("store", "synth", "augment", "train", "report", "demo", "ablate")


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"xaug.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"xaug.cli.{name}":
                continue  # command group not built yet
            raise
        module.register(app)


_register_all()


def main() -> None:
    import signal

    from xaug.cli.common import Terminated

    def _terminated(signum, frame):  # SIGTERM unwinds like Ctrl-C: workers and locks are released
        raise Terminated()

    signal.signal(signal.SIGTERM, _terminated)
    try:
        app()
    except SystemExit as exc:
        _exit(exc.code)
    _exit(0)


def _exit(code) -> None:
    """End the process. A command that did not load torch skips the interpreter's teardown
    (freeing every module and object: about 0.1 s, a tenth of a small build's wall time): the
    atexit handlers run, non-daemon threads are joined and the output flushed, as at a normal
    exit, then `os._exit`. With torch loaded (DataLoader workers, CUDA) the exit stays normal."""
    import atexit
    import os
    import sys
    import threading

    if isinstance(code, str):  # SystemExit("message"): printed, status 1, as Python does
        print(code, file=sys.stderr)
        code = 1
    code = 0 if code is None else code
    if "torch" in sys.modules or not isinstance(code, int):
        sys.exit(code)
    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon:
            t.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more to write
            pass
    os._exit(code & 0xFF)  # as the interpreter maps sys.exit(n)
