"""Reading M2 files (the CoNLL/BEA gold-edit format) into sentences and raw edits, with ``file:line`` errors.

An M2 file is a sequence of blocks separated by blank lines; each block is one ``S <tokenized sentence>`` line and
zero or more ``A <start> <end>|||<type>|||<correction(s)>|||<required>|||<comment>|||<annotator id>`` lines.
The parser keeps each edit as written (the correction field is not split on ``||`` and ``-NONE-`` is not
rewritten), because the M2 scorer and ERRANT interpret those fields differently; `m2.py` and `errant_f05.py`
each apply their own reference implementation's reading.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from writetune.metrics.base import MetricInputError


class M2FormatError(MetricInputError):
    """A malformed M2 file; the message is ``path:line: what is wrong``."""


@dataclass(frozen=True)
class M2Edit:
    """One ``A`` line: token span, error type, raw correction field, annotator id and its line number."""

    start: int
    end: int
    type: str
    correction: str
    coder: int
    line: int

    @property
    def is_noop(self) -> bool:
        return self.type == "noop" or (self.start == -1 and self.end == -1)


@dataclass(frozen=True)
class M2Sentence:
    """One block: the ``S`` line's text (tokens joined by single spaces as written) and its edits."""

    source: str
    edits: tuple[M2Edit, ...]
    line: int

    @property
    def tokens(self) -> list[str]:
        return self.source.split()

    @property
    def coders(self) -> list[int]:
        """Annotator ids in order of first appearance."""
        seen: dict[int, None] = {}
        for e in self.edits:
            seen.setdefault(e.coder, None)
        return list(seen)


@dataclass(frozen=True)
class M2Document:
    """A parsed M2 file."""

    path: str
    sentences: tuple[M2Sentence, ...]

    def __len__(self) -> int:
        return len(self.sentences)

    def __iter__(self) -> Iterator[M2Sentence]:
        return iter(self.sentences)

    def __getitem__(self, i: int) -> M2Sentence:
        return self.sentences[i]

    @property
    def sources(self) -> list[str]:
        return [s.source for s in self.sentences]

    def subset(self, indices: list[int]) -> M2Document:
        return M2Document(self.path, tuple(self.sentences[i] for i in indices))


def read_m2(path: str | os.PathLike[str]) -> M2Document:
    """Parse an M2 file. Raises `M2FormatError` naming the file and line of the first problem."""
    p = Path(path)
    if not p.is_file():
        raise M2FormatError(f"{p}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise M2FormatError(f"{p}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
    return parse_m2(text, str(p))


def parse_m2(text: str, path: str = "<m2>") -> M2Document:
    """Parse M2 text; `path` names it in error messages."""
    sentences: list[M2Sentence] = []
    block: list[tuple[int, str]] = []
    lines = text.split("\n")
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        if line.strip() == "":
            if block:
                sentences.append(_parse_block(block, path))
                block = []
            continue
        block.append((number, line))
    if block:
        sentences.append(_parse_block(block, path))
    if not sentences:
        raise M2FormatError(f"{path}: file is empty (no 'S' lines)")
    return M2Document(path, tuple(sentences))


def _parse_block(block: list[tuple[int, str]], path: str) -> M2Sentence:
    first_no, first = block[0]
    if not first.startswith("S"):
        raise M2FormatError(f"{path}:{first_no}: expected an 'S ' line to start the sentence, got {first[:40]!r}")
    if first != "S" and not first.startswith("S "):
        raise M2FormatError(f"{path}:{first_no}: malformed S line {first[:40]!r}")
    source = first[2:].strip()
    if not source:
        raise M2FormatError(f"{path}:{first_no}: empty source sentence")
    n_tokens = len(source.split())
    edits = []
    seen: dict[tuple[int, int, str, int], int] = {}
    for number, line in block[1:]:
        if line.startswith("S ") or line == "S":
            raise M2FormatError(
                f"{path}:{number}: a second 'S' line in one block (sentences must be separated by a blank line)"
            )
        if not line.startswith("A "):
            raise M2FormatError(f"{path}:{number}: expected an 'A ' edit line, got {line[:40]!r}")
        edit = _parse_edit(line, number, n_tokens, path)
        if not edit.is_noop:
            # Both scorers would count a repeated edit twice (the M2 scorer can then report P > 1).
            key = (edit.start, edit.end, edit.correction, edit.coder)
            if key in seen:
                raise M2FormatError(
                    f"{path}:{number}: duplicate edit (same span, correction and annotator as line {seen[key]})"
                )
            seen[key] = number
        edits.append(edit)
    return M2Sentence(source=source, edits=tuple(edits), line=first_no)


def _parse_edit(line: str, number: int, n_tokens: int, path: str) -> M2Edit:
    fields = line[2:].split("|||")
    where = f"{path}:{number}"
    if len(fields) != 6:
        raise M2FormatError(
            f"{where}: malformed A line: expected 6 '|||'-separated fields "
            f"(span|||type|||correction|||required|||comment|||annotator), got {len(fields)}"
        )
    span = fields[0].split()
    if len(span) != 2:
        raise M2FormatError(f"{where}: malformed A line: the span {fields[0]!r} is not two token offsets")
    try:
        start, end = int(span[0]), int(span[1])
    except ValueError:
        raise M2FormatError(f"{where}: malformed A line: the span {fields[0]!r} is not two integers") from None
    etype = fields[1]
    if not etype:
        raise M2FormatError(f"{where}: malformed A line: empty error type")
    try:
        coder = int(fields[5])
    except ValueError:
        raise M2FormatError(f"{where}: malformed A line: annotator id {fields[5]!r} is not an integer") from None
    if not (start == -1 and end == -1):
        if etype == "noop":
            raise M2FormatError(f"{where}: a noop edit must have the span -1 -1, got {start} {end}")
        if start < 0 or end < start:
            raise M2FormatError(f"{where}: malformed A line: invalid span {start} {end}")
        if end > n_tokens:
            raise M2FormatError(f"{where}: the span {start} {end} is outside the sentence ({n_tokens} tokens)")
    return M2Edit(start=start, end=end, type=etype, correction=fields[2], coder=coder, line=number)
