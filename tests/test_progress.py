"""xaug.progress: a bar on a terminal, short lines in a log, nothing when disabled."""
from __future__ import annotations

import io

from xaug.progress import Progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_short_lines_not_a_redrawn_bar():
    log = io.StringIO()
    with Progress(4, "rotate", stream=log, every_s=0.0) as bar:
        for _ in range(4):
            bar.advance()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("rotate: 1/4 (25%)") and "item/s" in lines[0]
    assert lines[-1].startswith("rotate: 4/4 (100%)") and "\r" not in log.getvalue()


def test_short_work_in_a_log_stays_quiet_and_disabled_prints_nothing():
    log = io.StringIO()
    with Progress(3, "quick", stream=log) as bar:  # default: a line every few seconds
        bar.advance(3)
    assert log.getvalue() == ""
    off = io.StringIO()
    assert list(Progress.wrap(range(3), "off", enabled=False)) == [0, 1, 2]
    with Progress(2, "off", enabled=False, stream=off, every_s=0.0) as bar:
        bar.advance(2)
    assert off.getvalue() == "" and bar.done == 2


def test_a_terminal_gets_a_bar_that_resumes_from_done():
    tty = Tty()
    with Progress(10, "synth", stream=tty, done=4) as bar:
        bar.advance(2)
        assert bar._bar is not None and bar._bar.n == 6
    assert "synth" in tty.getvalue()
