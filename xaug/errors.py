"""The project's own exception: a user mistake or bad input, reported as one line."""
from __future__ import annotations


class XaugError(Exception):
    """A user-facing error; the CLI prints `where: message` and exits non-zero, no traceback."""

    def __init__(self, message: str, where: str | None = None, problems: list[str] | None = None):
        message = str(message)
        if where is None and message.startswith("Caught ") and "\nOriginal Traceback" in message:
            message = _worker_line(message, type(self))
        super().__init__(message)
        self.message = message
        self.where = where
        self.problems = list(problems or [])

    def lines(self) -> list[str]:
        head = f"{self.where}: {self.message}" if self.where else self.message
        return [head, *self.problems]

    def __str__(self) -> str:  # the one line, `where` included (also in a worker's traceback text)
        return self.lines()[0]


def _worker_line(message: str, cls: type) -> str:
    """torch's DataLoader re-raises a worker's exception as `cls("Caught X in DataLoader worker
    process N.\nOriginal Traceback ...\nxaug.errors.X: <line>")`: keep the worker's one line."""
    last = [line for line in message.strip().splitlines() if line.strip()][-1]
    for klass in cls.__mro__:
        prefix = f"{klass.__module__}.{klass.__qualname__}: "
        if last.startswith(prefix):
            return last[len(prefix):]
    return last


class UnknownDataset(XaugError):
    pass


class BadInput(XaugError):
    pass
