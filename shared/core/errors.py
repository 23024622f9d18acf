"""Errors with enough context to act on: which file, which row, what was expected."""

from __future__ import annotations

__all__ = ["ParityError", "DataError", "WeightsError", "UsageError"]


class ParityError(Exception):
    """Base class for every error this project raises on purpose.

    The command line turns these into a one-line message and exit code 2.
    """


class DataError(ParityError, ValueError):
    """Bad input data.

    Args:
        message: what is wrong and what was expected.
        path: the file (or folder) at fault, if any.
        row: the 1-based data row in that file (header not counted), if any.
    """

    def __init__(self, message: str, *, path=None, row: int | None = None):
        self.path = None if path is None else str(path)
        self.row = row
        where = ""
        if self.path is not None:
            where = self.path
            if row is not None:
                where += f", row {row}"
            where += ": "
        super().__init__(where + message)


class WeightsError(ParityError, ValueError):
    """A portable weights file that does not fit the model it is loaded into."""


class UsageError(ParityError, ValueError):
    """Bad options or arguments."""
