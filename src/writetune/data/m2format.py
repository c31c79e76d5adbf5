"""The one M2 parser (the CoNLL/BEA gold-edit format): blocks into sentences and raw edits, with `path:line` errors.

An M2 file is a sequence of blocks separated by blank lines; each block is one ``S <tokenized sentence>`` line and
zero or more ``A <start> <end>|||<type>|||<correction(s)>|||<required>|||<comment>|||<annotator id>`` lines.
The parser checks the structure and keeps each edit as written (the correction field is not split on ``||`` and
``-NONE-`` is not rewritten): the training-data reader (`readers.read_m2`), the M2 scorer and ERRANT each apply
their own reading of those fields. What differs between scoring and reading training data is chosen per call:
`past_end` (an edit span past the sentence end is an error, or is clamped to the end as JFLEG's unofficial
converted M2 needs) and `duplicates` (an exact repeat of an edit is an error, or is kept).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from writetune.data.errors import DataFormatError

PastEnd = Literal["error", "clamp"]
Duplicates = Literal["error", "keep"]


class M2FormatError(DataFormatError):
    """A malformed M2 file; the message is ``path:line: what is wrong``."""


@dataclass(frozen=True)
class M2Edit:
    """One ``A`` line: token span (clamped to the sentence when parsed with ``past_end="clamp"``), error type, raw
    correction field, annotator id and its line number."""

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


def parse_m2(
    text: str,
    path: str | os.PathLike[str] = "<m2>",
    *,
    past_end: PastEnd = "error",
    duplicates: Duplicates = "error",
) -> M2Document:
    """Parse M2 text; `path` names it in error messages. Raises `M2FormatError` at the first problem.

    ``past_end="clamp"`` clamps an edit span that runs past the last token to the sentence end (instead of an error);
    ``duplicates="keep"`` keeps an edit line that repeats an earlier one of the block (same span, correction and
    annotator) instead of rejecting it: the M2 scorer and ERRANT would count it twice.
    """
    if past_end not in ("error", "clamp"):
        raise ValueError(f"past_end must be 'error' or 'clamp', got {past_end!r}")
    if duplicates not in ("error", "keep"):
        raise ValueError(f"duplicates must be 'error' or 'keep', got {duplicates!r}")
    path = os.fspath(path)
    sentences: list[M2Sentence] = []
    block: list[tuple[int, str]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip()
        if not line.strip():
            if block:
                sentences.append(_parse_block(block, path, past_end, duplicates))
                block = []
            continue
        block.append((number, line))
    if block:
        sentences.append(_parse_block(block, path, past_end, duplicates))
    if not sentences:
        raise M2FormatError(path, 0, "file is empty (no 'S' lines)")
    return M2Document(path, tuple(sentences))


def _parse_block(block: list[tuple[int, str]], path: str, past_end: PastEnd, duplicates: Duplicates) -> M2Sentence:
    first_no, first = block[0]
    if not first.startswith("S"):
        raise M2FormatError(
            path, first_no, f"expected an 'S ' line: the M2 block does not start with an 'S' line but {first[:40]!r}"
        )
    if first != "S" and not first.startswith("S "):
        raise M2FormatError(path, first_no, f"malformed S line {first[:40]!r}")
    source = first[2:].strip()
    if not source:
        raise M2FormatError(path, first_no, "empty source sentence")
    n_tokens = len(source.split())
    edits = []
    seen: dict[tuple[int, int, str, int], int] = {}
    for number, line in block[1:]:
        if line.startswith("S ") or line == "S":
            raise M2FormatError(
                path, number, "a second 'S' line in one block (sentences must be separated by a blank line)"
            )
        if not line.startswith("A "):
            raise M2FormatError(path, number, f"expected an 'A ' edit line, got {line[:40]!r}")
        edit = _parse_edit(line, number, n_tokens, path, past_end)
        if duplicates == "error" and not edit.is_noop:
            # Both scorers would count a repeated edit twice (the M2 scorer can then report P > 1).
            key = (edit.start, edit.end, edit.correction, edit.coder)
            if key in seen:
                raise M2FormatError(
                    path, number, f"duplicate edit (same span, correction and annotator as line {seen[key]})"
                )
            seen[key] = number
        edits.append(edit)
    return M2Sentence(source=source, edits=tuple(edits), line=first_no)


def _parse_edit(line: str, number: int, n_tokens: int, path: str, past_end: PastEnd) -> M2Edit:
    fields = line[2:].split("|||")

    def error(problem: str) -> M2FormatError:
        return M2FormatError(path, number, problem)

    if len(fields) != 6:
        raise error(
            "malformed A line: expected 6 '|||'-separated fields "
            f"(span|||type|||correction|||required|||comment|||annotator), got {len(fields)}"
        )
    span = fields[0].split()
    if len(span) != 2:
        raise error(f"malformed A line: the span {fields[0]!r} is not two token offsets ('start end')")
    try:
        start, end = int(span[0]), int(span[1])
    except ValueError:
        raise error(f"malformed A line: the span {fields[0]!r} is not two integers ('start end')") from None
    etype = fields[1]
    if not etype:
        raise error("malformed A line: empty error type")
    try:
        coder = int(fields[5])
    except ValueError:
        raise error(f"malformed A line: annotator id {fields[5]!r} is not an integer") from None
    if coder < 0:
        raise error(f"malformed A line: annotator id {coder} is negative")
    if not (start == -1 and end == -1):
        if etype == "noop":
            raise error(f"a noop edit must have the span -1 -1, got {start} {end}")
        if start < 0:
            raise error(f"malformed A line: invalid span {start} {end} (only a noop span -1 -1 is negative)")
        if end < start:
            raise error(f"malformed A line: invalid span {start} {end}: it ends before it starts")
        if end > n_tokens:
            if past_end == "error":
                raise error(f"the span {start} {end} is outside the sentence ({n_tokens} tokens)")
            # JFLEG's (unofficial) converted M2 has spans past the last token where its tokenization differs from
            # the S line's; they are edits at the sentence end
            start, end = min(start, n_tokens), n_tokens
    return M2Edit(start=start, end=end, type=etype, correction=fields[2], coder=coder, line=number)
