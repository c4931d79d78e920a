"""What every command shares: the store option, error mapping to one-line messages, output."""
from __future__ import annotations

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
JobsOption = typer.Option(None, "--jobs", "-j", help="Parallel workers (default: all cores).")


def home_path(home: Optional[Path]) -> Path:
    if home is not None:
        return Path(home)
    env = os.environ.get("XAUG_HOME")
    return Path(env) if env else Path("xaug-data")


def open_store(home: Optional[Path]):
    from xaug.store import Store

    return Store(home_path(home))


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


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


class XaugGroup(TyperGroup):
    """Maps user mistakes (XaugError, pydantic ValidationError) to `error: where: message` lines
    on stderr and exit code 2, with no traceback; real bugs still raise."""

    def invoke(self, ctx):
        from pydantic import ValidationError

        try:
            return super().invoke(ctx)
        except (XaugError, ValidationError) as exc:
            for line in error_lines(exc):
                console.print(f"error: {line}", markup=False)
            raise typer.Exit(2) from None
