"""The data layer's errors: input data that cannot be used, a missing data file, and a malformed one whose message
is `path:line: what is wrong`. All are `ValueError`s."""

from __future__ import annotations

import os
from pathlib import Path


class DataError(ValueError):
    """Input data that cannot be used."""


class MissingDataError(DataError):
    """A data file that does not exist; the message names it."""

    def __init__(self, path: str | os.PathLike, what: str = "data file"):
        self.path = Path(path)
        super().__init__(f"{path}: {what} not found")


class DataFormatError(DataError):
    """A malformed data file; the message is `path:line: what is wrong` (line 0 when no line applies)."""

    def __init__(self, path: str | os.PathLike, line: int, message: str):
        self.path = Path(path)
        self.line = line
        self.problem = message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
