"""One progress reporter for every long command: a bar on a terminal, short lines in a log.

On a terminal (stderr is a TTY) it draws a tqdm bar. When stderr goes to a file or a CI log it
prints one line every few seconds (`synth: 120/800 (15%) 3.2/s, ~3m left`) and a last line when
work that took longer than that ends, instead of redrawing a bar. Disabled, it does nothing.

>>> with Progress(10, "demo", enabled=False) as bar:
...     for _ in range(10):
...         bar.advance()
>>> list(Progress.wrap(range(3), "demo", enabled=False))
[0, 1, 2]
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")
LINE_EVERY_S = 5.0


class Progress:
    """`advance(n)` after each unit of work; `close()` (or leave the `with` block) at the end."""

    def __init__(self, total: int | None, label: str, enabled: bool = True, done: int = 0,
                 unit: str = "item", stream: TextIO | None = None, every_s: float = LINE_EVERY_S):
        self.total, self.label, self.done, self.unit = total, label, done, unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.every_s = every_s
        self._bar = None
        self._start = self._last = time.monotonic()
        self._first = done
        if enabled and _is_tty(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done, desc=label, unit=unit, file=self.stream,
                             leave=False, dynamic_ncols=True)

    def advance(self, n: int = 1) -> None:
        if not self.enabled or n <= 0:
            self.done += n
            return
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._line()

    def _line(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = (self.done - self._first) / elapsed
        if self.total:
            pct = f" ({100 * self.done / self.total:.0f}%)"
            head = f"{self.label}: {self.done}/{self.total}{pct}"
        else:
            head = f"{self.label}: {self.done}"
        tail = f" {rate:.1f} {self.unit}/s"
        if final:
            tail += f", {_fmt(elapsed)}"
        elif self.total and rate > 0:
            tail += f", ~{_fmt((self.total - self.done) / rate)} left"
        self.stream.write(head + tail + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.done > self._first and time.monotonic() - self._start >= self.every_s:
            self._line(final=True)  # work that took a moment: say how long (a short one stays quiet)
        self.enabled = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @classmethod
    def wrap(cls, iterable: Iterable[T], label: str, enabled: bool = True, total: int | None = None,
             unit: str = "item") -> Iterator[T]:
        """Iterate, advancing one per element."""
        if total is None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        with cls(total, label, enabled=enabled, unit=unit) as bar:
            for x in iterable:
                yield x
                bar.advance()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
