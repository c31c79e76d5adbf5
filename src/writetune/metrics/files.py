"""Reading one-segment-per-line text files for scoring, with errors that name the file.

Lines are split on newlines only (``\\n``, ``\\r\\n`` or ``\\r``, as Python's text mode does), never on the other
characters that `str.splitlines` treats as line breaks, so a stray form feed inside a segment cannot shift the
alignment of a file against its references. Each line is returned with its end-of-line characters removed; metrics
strip or split further as their reference implementation does.
"""

from __future__ import annotations

import os
from pathlib import Path

from writetune.metrics.base import MetricInputError


def read_segments(path: str | os.PathLike[str]) -> list[str]:
    """The lines of a UTF-8 text file (without line endings). Raises `MetricInputError` for a missing, unreadable,
    non-UTF-8 or empty file."""
    p = Path(path)
    if not p.is_file():
        raise MetricInputError(f"{p}: no such file")
    try:
        with open(p, encoding="utf-8", newline=None) as fh:
            text = fh.read()
    except UnicodeDecodeError as err:
        line = _line_of_byte(p, err.start)
        raise MetricInputError(f"{p}:{line}: not valid UTF-8 ({err.reason})") from None
    except OSError as err:
        raise MetricInputError(f"{p}: cannot read ({err.strerror})") from None
    if not text.strip():
        raise MetricInputError(f"{p}: file is empty")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _line_of_byte(path: Path, offset: int) -> int:
    with open(path, "rb") as fh:
        return fh.read(offset).count(b"\n") + 1
