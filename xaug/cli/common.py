"""What every command shares: the store option, error mapping to one-line messages, output."""
from __future__ import annotations

import errno
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup
from rich.console import Console

from xaug.errors import XaugError

console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

HomeOption = typer.Option(None, "--home", help="Store folder (default: $XAUG_HOME or ./xaug-data).",
                          show_default=False)
JobsOption = typer.Option(None, "--jobs", "-j", min=1, help="Parallel workers (default: all cores).")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress bar.")
BackendOption = typer.Option(None, "--backend", help="Where building runs: local (joblib, default) or dask "
                             "(a dask.distributed cluster; $XAUG_BACKEND).", show_default=False)
SchedulerOption = typer.Option(None, "--scheduler", help="dask scheduler address, e.g. tcp://host:8786 "
                               "($XAUG_SCHEDULER; default: a local cluster of --jobs workers).", show_default=False)
StorageOption = typer.Option(None, "--storage", help="dask: shared (workers write into the store), bytes "
                             "(workers return files to this process) or auto ($XAUG_STORAGE).", show_default=False)


def backend_choice(backend: Optional[str], scheduler: Optional[str], storage: Optional[str]):
    """The build backend the flags (or XAUG_BACKEND / XAUG_SCHEDULER / XAUG_STORAGE) ask for."""
    from xaug.store.backends import choice_from

    return choice_from(backend, scheduler, storage)


def home_path(home: Optional[Path]) -> Path:
    if home is not None:
        return Path(home)
    env = os.environ.get("XAUG_HOME")
    return Path(env) if env else Path("xaug-data")


def open_store(home: Optional[Path]):
    from xaug.store import Store

    path = home_path(home)
    if path.exists() and not path.is_dir():
        from xaug.errors import BadInput

        raise BadInput("is a file, not a store folder; give a folder with --home (or $XAUG_HOME)",
                       where=str(path))
    return Store(path)


def printable(line: str) -> str:
    """One terminal line whatever a file name held: control characters (newline, escape) escaped."""
    return line if line.isprintable() else "".join(c if c.isprintable() else ascii(c)[1:-1] for c in line)


_OS_ERRORS = {
    errno.ENOSPC: "no space left on the device; free some space and run the same command again "
                  "(finished work is kept)",
    errno.EDQUOT: "disk quota exceeded; free some space and run the same command again",
    errno.EROFS: "the file system is read-only; use a writable --home or output folder",
    errno.EACCES: "permission denied; use a folder you can write to (or fix its permissions)",
    errno.EPERM: "operation not permitted; use a folder you can write to (or fix its permissions)",
    errno.EISDIR: "is a folder; give a file path",
    errno.ENOTDIR: "a part of this path is a file, not a folder; choose another path",
    errno.ENAMETOOLONG: "file name too long; choose a shorter path",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) or use fewer --jobs",
}


def os_error_line(exc: OSError) -> str:
    """An OSError as `path: what happened; what to do` (one line)."""
    what = _OS_ERRORS.get(exc.errno) or f"{exc.strerror or exc.__class__.__name__}"
    where = exc.filename if exc.filename is not None else None
    if where is not None:
        from xaug.layout import safe_name

        where = safe_name(where)
    return f"{where}: {what}" if where else what


def error_lines(exc: BaseException) -> list[str]:
    """XaugError and pydantic ValidationError as `where: message` lines."""
    if isinstance(exc, XaugError):
        return exc.lines()
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover
        ValidationError = ()  # type: ignore
    if isinstance(exc, ValidationError):
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ())) or "spec"
            lines.append(f"{loc}: {err.get('msg')}")
        return lines
    return [f"{exc.__class__.__name__}: {exc}"]


def count(n: int, noun: str) -> str:
    """'1 epoch', '3 epochs': a count with its noun (plural by an s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def print_table(table: Any, to: Optional[Console] = None) -> None:
    """Print a rich table at its natural width, whatever the console's width.

    Rich fits a table to the console by cutting cells ("+0.01…"), and a console that is not a
    terminal (a log, CI) is 80 columns: a cut number makes the log useless. A line wider than a
    terminal wraps there instead, and stays whole in a file.
    """
    from rich.measure import Measurement

    to = to or out
    table.width = Measurement.get(to, to.options.update_width(1 << 16), table).maximum
    to.print(table, crop=False)


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler `xaug.cli.main` installs, so a terminated command unwinds
    (DataLoader workers shut down, locks released) instead of dying in place."""


def _usage_error_types() -> tuple[type[Exception], ...]:
    """Click's UsageError, and the one of the click copy that newer typer releases vendor."""
    found: list[type[Exception]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).UsageError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


USAGE_ERRORS = _usage_error_types()


class XaugGroup(TyperGroup):
    """Maps user mistakes (XaugError, pydantic ValidationError) to `error: where: message` lines
    on stderr and exit code 2, with no traceback; real bugs still raise."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except USAGE_ERRORS as exc:  # a bad option of `xaug` itself
            usage_exit(exc)

    def invoke(self, ctx):
        from pydantic import ValidationError

        try:
            return super().invoke(ctx)
        except USAGE_ERRORS as exc:  # an unknown command, a bad or missing option or value
            usage_exit(exc)
        except (XaugError, ValidationError) as exc:
            for line in error_lines(exc):
                console.print(f"error: {printable(line)}", markup=False)
            raise typer.Exit(2) from None
        except OSError as exc:  # the disk, permissions, a path that is the wrong kind of thing
            if exc.errno is None:
                raise
            console.print(f"error: {os_error_line(exc)}", markup=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as exc:
            what = "terminated" if isinstance(exc, Terminated) else "interrupted"
            again = ("run the same command with --resume to continue from the last epoch"
                     if ctx.invoked_subcommand == "train" else "run the same command again to finish")
            console.print(f"error: {what}; nothing half-done was published (the store is consistent): {again}",
                          markup=False)
            raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None


def usage_exit(exc: Exception) -> None:
    """A command-line mistake as one line naming the command and the flag, then exit 2."""
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "xaug"
    msg = " ".join(exc.format_message().split()).rstrip(".")
    if not msg and type(exc).__name__ == "NoArgsIsHelpError":  # the help is printed: no empty error line
        raise typer.Exit(2) from None
    console.print(f"error: {path}: {msg} (see `{path} --help`)", markup=False)
    raise typer.Exit(2) from None
