"""The project's own exception: a user mistake or bad input, reported as one line."""
from __future__ import annotations


class XaugError(Exception):
    """A user-facing error; the CLI prints `where: message` and exits non-zero, no traceback."""

    def __init__(self, message: str, where: str | None = None, problems: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.problems = list(problems or [])

    def lines(self) -> list[str]:
        head = f"{self.where}: {self.message}" if self.where else self.message
        return [head, *self.problems]


class UnknownDataset(XaugError):
    pass


class BadInput(XaugError):
    pass
