"""Reading the files that are scored, with errors that name the file (and line): one-segment-per-line text files,
and gold or hypothesis M2 files, parsed by the data layer's M2 parser under the scoring rules.

Lines are split on newlines only (``\\n``, ``\\r\\n`` or ``\\r``, as Python's text mode does), never on the other
characters that `str.splitlines` treats as line breaks, so a stray form feed inside a segment cannot shift the
alignment of a file against its references. Each line is returned with its end-of-line characters removed; metrics
strip or split further as their reference implementation does.
"""

from __future__ import annotations

import os
from pathlib import Path

from writetune.data import m2format
from writetune.data.m2format import M2Document
from writetune.metrics.base import MetricInputError


def read_segments(path: str | os.PathLike[str]) -> list[str]:
    """The lines of a UTF-8 text file (without line endings; a leading byte-order mark dropped, as the data readers
    do). Blank lines are segments (an empty output is a legal output). Raises `MetricInputError` for a missing,
    unreadable, non-UTF-8 or empty (no line at all) file."""
    p = Path(path)
    if not p.is_file():
        raise MetricInputError(f"{p}: no such file")
    try:
        with open(p, encoding="utf-8-sig", newline=None) as fh:
            text = fh.read()
    except UnicodeDecodeError as err:
        line = _line_of_byte(p, err.start)
        raise MetricInputError(f"{p}:{line}: not valid UTF-8 ({err.reason})") from None
    except OSError as err:
        raise MetricInputError(f"{p}: cannot read ({err.strerror})") from None
    if not text:
        raise MetricInputError(f"{p}: file is empty")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


class M2FormatError(MetricInputError, m2format.M2FormatError):
    """A malformed M2 file given for scoring (both a `MetricInputError` and the data layer's `M2FormatError`); the
    message is ``path:line: what is wrong``."""


def read_m2(path: str | os.PathLike[str]) -> M2Document:
    """Parse an M2 file for scoring (a leading byte-order mark dropped). Raises `M2FormatError` naming the file and
    line of the first problem."""
    p = Path(path)
    if not p.is_file():
        raise M2FormatError(p, 0, "no such file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise M2FormatError(p, 0, f"not valid UTF-8 ({err.reason} at byte {err.start})") from None
    return parse_m2(text, str(p))


def parse_m2(text: str, path: str = "<m2>") -> M2Document:
    """Parse M2 text for scoring; `path` names it in error messages. Stricter than reading training data: an edit
    span past the sentence end and an exact duplicate edit are errors (the scorers would drop the one and count the
    other twice)."""
    try:
        return m2format.parse_m2(text, path, past_end="error", duplicates="error")
    except m2format.M2FormatError as err:
        raise M2FormatError(path, err.line, err.problem) from None


def _line_of_byte(path: Path, offset: int) -> int:
    with open(path, "rb") as fh:
        return fh.read(offset).count(b"\n") + 1
