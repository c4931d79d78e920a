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
    app()
