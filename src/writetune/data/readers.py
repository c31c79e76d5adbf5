"""Readers, one per on-disk format of the writing corpora, each turning files into `Example`s.

Every reader takes paths (as given: relative paths are relative to the working directory), the task the examples
belong to and an origin label, and returns a list of `Example`. Text is kept exactly as the file has it (only the line
end and surrounding whitespace are stripped); `Example.tokenized` records whether the original is PTB-style tokenized,
and `Example.detokenized()` gives the plain-text form used for training and prompting.

A malformed file stops the reader with `DataFormatError`, whose message is `path:line: what is wrong`; a missing file
raises `MissingDataError` naming it. Both are `ValueError`s.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from writetune.data.errors import DataError, DataFormatError, MissingDataError
from writetune.data.m2format import parse_m2
from writetune.data.tokenization import detokenize

__all__ = [
    "DataError",
    "DataFormatError",
    "Example",
    "MissingDataError",
    "READERS",
    "STSB_PARAPHRASE_THRESHOLD",
    "read_alpaca_json",
    "read_chat_jsonl",
    "read_iterater_jsonl",
    "read_jsonl",
    "read_lines",
    "read_m2",
    "read_mrpc_tsv",
    "read_parallel",
    "read_stsb_csv",
    "read_turkcorpus_tsv",
    "read_wikisplit_tsv",
    "read_wnc_pre_post",
    "read_wnc_tsv",
]

PathLike = str | os.PathLike

# STS-B scores run 0-5; 4 is "mostly equivalent, but some unimportant details differ" and 5 "completely
# equivalent". A pair counts as a paraphrase from 4.0 up (train: 1,406 of 5,749 pairs; dev: 264 of 1,500).
STSB_PARAPHRASE_THRESHOLD = 4.0


@dataclass(frozen=True)
class Example:
    """One source text and its reference rewrites.

    `id` is unique within the file it came from (`<file name>:<line number>`, or the item number in a JSON array). `tokenized` is True when the
    text is PTB-style tokenized as in the original release (`do n't`, `word .`). `instruction` carries the example's
    own instruction where the data has one (generic instruction data); writing examples leave it empty and get a
    phrasing from the task registry when a mix is built.
    """

    task: str
    source: str
    references: tuple[str, ...]
    origin: str
    id: str
    tokenized: bool = False
    instruction: str = ""

    def detokenized(self) -> "Example":
        """The same example with plain (detokenized) text; unchanged when it is not tokenized."""
        if not self.tokenized:
            return self
        return replace(
            self,
            source=detokenize(self.source),
            references=tuple(detokenize(ref) for ref in self.references),
            tokenized=False,
        )


# --------------------------------------------------------------------------------------------------------------
# text access


def read_text(path: PathLike) -> str:
    """The whole file as UTF-8 text (a leading BOM dropped); undecodable bytes are reported with their line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MissingDataError(path) from None
    except IsADirectoryError:
        raise DataFormatError(path, 0, "is a directory, expected a file") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        bad = data[err.start : err.end]
        raise DataFormatError(path, line, f"not valid UTF-8 (byte {bad!r} at offset {err.start})") from None


def read_lines(path: PathLike) -> list[str]:
    """The file's lines without line ends (`\\n` or `\\r\\n`); a final newline does not make an extra line.

    Only `\\n` separates lines: characters such as U+2028 that `str.splitlines` would also split on occur inside
    corpus sentences.
    """
    text = read_text(path)
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _origin(origin: str | None, path: PathLike) -> str:
    return origin or Path(path).name


# --------------------------------------------------------------------------------------------------------------
# line-aligned text files


def read_parallel(
    source: PathLike,
    references: Sequence[PathLike],
    *,
    task: str,
    origin: str | None = None,
    tokenized: bool = False,
) -> list[Example]:
    """One source file and N line-aligned reference files (JFLEG, GMEG-wiki, ASSET, TurkCorpus, CWEB raw,
    WNC pre/post). All files must have the same number of lines. Lines whose source is empty are skipped, and so
    are empty references."""
    if not references:
        raise DataFormatError(source, 0, "no reference files given")
    src_lines = read_lines(source)
    ref_lines = [read_lines(path) for path in references]
    for path, lines in zip(references, ref_lines):
        if len(lines) != len(src_lines):
            first_missing = min(len(lines), len(src_lines)) + 1
            longer = path if len(lines) > len(src_lines) else source
            raise DataFormatError(
                longer,
                first_missing,
                f"line counts differ: {source} has {len(src_lines)} lines, {path} has {len(lines)}",
            )
    origin = _origin(origin, source)
    name = Path(source).name
    examples = []
    for index, text in enumerate(src_lines):
        text = text.strip()
        if not text:
            continue
        refs = tuple(ref for ref in (lines[index].strip() for lines in ref_lines) if ref)
        if not refs:
            continue
        examples.append(Example(task, text, refs, origin, f"{name}:{index + 1}", tokenized))
    return examples


def read_wnc_pre_post(
    pre: PathLike, post: PathLike, *, task: str = "neutralization", origin: str | None = None, tokenized: bool = True
) -> list[Example]:
    """WNC as `pre.<split>` (biased) and `post.<split>` (neutralized) line-aligned files, as in the sample that the
    WNC authors' code ships (lower-cased and tokenized, hence `tokenized=True` by default)."""
    return read_parallel(pre, [post], task=task, origin=origin, tokenized=tokenized)


def _tsv_rows(path: PathLike, n_fields: int, *, header: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of the non-blank lines; a line with another number of fields than `n_fields` is an
    error. With `header`, the first non-blank line must start with it and is not yielded."""
    expect_header = header is not None
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        if expect_header:
            if not line.startswith(header):
                raise DataFormatError(path, number, f"expected the header line starting with '{header}'")
            expect_header = False
            continue
        fields = line.split("\t")
        if len(fields) != n_fields:
            raise DataFormatError(path, number, f"expected {n_fields} tab-separated fields, found {len(fields)}")
        yield number, fields
    if expect_header:
        raise DataFormatError(path, 1, f"expected the header line starting with '{header}'")


def read_turkcorpus_tsv(
    path: PathLike,
    *,
    task: str = "simplification",
    origin: str | None = None,
    n_references: int = 8,
    tokenized: bool = True,
) -> list[Example]:
    """TurkCorpus as one TSV without header: id, original, then `n_references` simplifications (the truecased
    `*.8turkers.organized.tsv` files, whose text still has spaces around brackets and commas)."""
    origin = _origin(origin, path)
    name = Path(path).name
    examples = []
    for number, fields in _tsv_rows(path, 2 + n_references):
        source = fields[1].strip()
        refs = tuple(ref.strip() for ref in fields[2:] if ref.strip())
        if source and refs:
            examples.append(Example(task, source, refs, origin, f"{name}:{number}", tokenized))
    return examples


def read_wikisplit_tsv(
    path: PathLike,
    *,
    task: str = "clarity",
    origin: str | None = None,
    direction: str = "split",
    tokenized: bool = True,
) -> list[Example]:
    """WikiSplit TSV without header: the unsplit sentence, a tab, and the split version whose sentences are joined
    by ` <::::> `. `direction="split"` makes the long sentence the source (a clarity edit); `"fuse"` reverses the pair
    (sentence fusion, used as a coherence edit)."""
    if direction not in ("split", "fuse"):
        raise ValueError(f"direction must be 'split' or 'fuse', not {direction!r}")
    origin = _origin(origin, path)
    name = Path(path).name
    examples = []
    for number, fields in _tsv_rows(path, 2):
        long, parts = fields[0].strip(), " ".join(p.strip() for p in fields[1].split("<::::>"))
        if not long or not parts.strip():
            continue
        source, target = (long, parts) if direction == "split" else (parts, long)
        examples.append(Example(task, source, (target,), origin, f"{name}:{number}", tokenized))
    return examples


def read_mrpc_tsv(
    path: PathLike,
    *,
    task: str = "paraphrase",
    origin: str | None = None,
    positive_only: bool = True,
    tokenized: bool = False,
) -> list[Example]:
    """MRPC TSV with the header `Quality, #1 ID, #2 ID, #1 String, #2 String`; with `positive_only` (default) only
    the pairs judged equivalent (Quality 1) are kept. The first string is the source, the second the reference."""
    origin = _origin(origin, path)
    name = Path(path).name
    examples = []
    for number, fields in _tsv_rows(path, 5, header="Quality"):
        quality = fields[0].strip()
        if quality not in ("0", "1"):
            raise DataFormatError(path, number, f"Quality must be 0 or 1, found {quality!r}")
        if positive_only and quality != "1":
            continue
        first, second = fields[3].strip(), fields[4].strip()
        if first and second:
            examples.append(Example(task, first, (second,), origin, f"{name}:{number}", tokenized))
    return examples


def read_stsb_csv(
    path: PathLike,
    *,
    task: str = "paraphrase",
    origin: str | None = None,
    threshold: float = STSB_PARAPHRASE_THRESHOLD,
    tokenized: bool = False,
) -> list[Example]:
    """STS-B as CSV without header: sentence1, sentence2, similarity score (0-5), as in stsb-multi-mt. A pair is a
    paraphrase when its score is at least `threshold` (default `STSB_PARAPHRASE_THRESHOLD` = 4.0); only those are
    returned."""
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    origin = _origin(origin, path)
    name = Path(path).name
    examples = []
    start = 1
    try:
        for row in reader:
            number, start = start, reader.line_num + 1
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != 3:
                raise DataFormatError(path, number, f"expected 3 comma-separated fields, found {len(row)}")
            try:
                score = float(row[2])
            except ValueError:
                raise DataFormatError(path, number, f"score is not a number: {row[2]!r}") from None
            if not 0.0 <= score <= 5.0:
                raise DataFormatError(path, number, f"score {score} is outside 0-5")
            if score >= threshold and row[0].strip() and row[1].strip():
                examples.append(
                    Example(task, row[0].strip(), (row[1].strip(),), origin, f"{name}:{number}", tokenized)
                )
    except csv.Error as err:
        raise DataFormatError(path, start, f"bad CSV: {err}") from None
    return examples


def read_wnc_tsv(
    path: PathLike, *, task: str = "neutralization", origin: str | None = None, tokenized: bool = False
) -> list[Example]:
    """The official WNC release (`bias_data/WNC/biased.word.{train,dev,test}`): TSV without header, 7 fields
    `id, src_tok, tgt_tok, src_raw, tgt_raw, src_POS_tags, tgt_parse_tags`. The raw (untokenized) columns are used."""
    origin = _origin(origin, path)
    name = Path(path).name
    examples = []
    for number, fields in _tsv_rows(path, 7):
        source, target = fields[3].strip(), fields[4].strip()
        if source and target:
            examples.append(Example(task, source, (target,), origin, f"{name}:{number}", tokenized))
    return examples


# --------------------------------------------------------------------------------------------------------------
# M2


def _apply_edits(tokens: list[str], edits: list[tuple[int, int, str]]) -> str:
    """Apply one annotator's edits, in file order, shifting later spans by what earlier edits added or removed (the
    reading of the CoNLL/BEA `corr_from_m2` convention)."""
    out = list(tokens)
    offset = 0
    for start, end, correction in edits:
        new = correction.split()
        out[start + offset : end + offset] = new
        offset += len(new) - (end - start)
    return " ".join(out)


_SKIP_TYPES = {"noop", "UNK", "Um"}


def read_m2(
    path: PathLike, *, task: str = "grammaticality", origin: str | None = None, tokenized: bool = True
) -> list[Example]:
    """An M2 file (CoNLL-2014, BEA-2019, CWEB, JFLEG's converted M2): blocks of one `S` line and `A` edit lines,
    separated by blank lines, parsed by `m2format.parse_m2`. The corrected text of every annotator is rebuilt from
    its edits (`noop`, `UNK` and `Um` edits change nothing; `-NONE-` is an empty correction), giving one reference
    per annotator in annotator-id order. The annotators are the ids seen anywhere in the file (annotator 0 when
    there is no edit at all); an annotator without an `A` line in a block left that sentence unchanged. Spans past the sentence end are
    clamped to it (JFLEG's converted M2 has them) and repeated edits are kept; an empty file gives no examples."""
    text = read_text(path)
    if not text.strip():
        return []
    document = parse_m2(text, path, past_end="clamp", duplicates="keep")
    origin = _origin(origin, path)
    name = Path(path).name
    # an annotator who made no edit in a block may be left out of it (JFLEG's M2 does this), so every block gets
    # one reference per annotator id seen anywhere in the file
    annotators = sorted({edit.coder for sentence in document for edit in sentence.edits}) or [0]
    examples = []
    for sentence in document:
        per_annotator: dict[int, list[tuple[int, int, str]]] = {}
        for edit in sentence.edits:
            if edit.type in _SKIP_TYPES or edit.start < 0:
                continue
            correction = "" if edit.correction.strip() == "-NONE-" else edit.correction
            per_annotator.setdefault(edit.coder, []).append((edit.start, edit.end, correction))
        tokens = sentence.tokens
        refs = tuple(_apply_edits(tokens, per_annotator.get(a, [])) for a in annotators)
        examples.append(Example(task, sentence.source, refs, origin, f"{name}:{sentence.line}", tokenized))
    return examples


# --------------------------------------------------------------------------------------------------------------
# JSON formats


def _load_json_line(path: PathLike, number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise DataFormatError(path, number, f"bad JSON: {err.msg} (column {err.colno})") from None


def _json_array_items(path: PathLike) -> Iterator[tuple[int, Any]]:
    """(line number, item) for each element of a top-level JSON array, so errors can name the item's line."""
    text = read_text(path)
    decoder = json.JSONDecoder()
    counted = [0, 1]  # position up to which newlines are counted, line number there

    def line_of(pos: int) -> int:
        if pos < counted[0]:
            return text.count("\n", 0, pos) + 1
        counted[1] += text.count("\n", counted[0], pos)
        counted[0] = pos
        return counted[1]

    def skip_ws(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    pos = skip_ws(0)
    if pos >= len(text) or text[pos] != "[":
        raise DataFormatError(path, line_of(pos), "expected a JSON array ('[') at the top level")
    pos = skip_ws(pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        try:
            item, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise DataFormatError(path, err.lineno, f"bad JSON: {err.msg} (column {err.colno})") from None
        yield line_of(pos), item
        pos = skip_ws(end)
        if pos < len(text) and text[pos] == ",":
            pos = skip_ws(pos + 1)
        elif pos < len(text) and text[pos] == "]":
            if skip_ws(pos + 1) != len(text):
                raise DataFormatError(path, line_of(skip_ws(pos + 1)), "extra data after the JSON array")
            return
        else:
            raise DataFormatError(path, line_of(pos), "expected ',' or ']' after an array item")


def _string_field(path: PathLike, number: int, record: Any, key: str, *, required: bool = True) -> str:
    if not isinstance(record, dict):
        raise DataFormatError(path, number, f"expected a JSON object, found {type(record).__name__}")
    value = record.get(key)
    if value is None:
        if required:
            raise DataFormatError(path, number, f"missing key '{key}'")
        return ""
    if not isinstance(value, str):
        raise DataFormatError(path, number, f"key '{key}' must be a string, found {type(value).__name__}")
    return value


def _instruction_example(path, number, record, *, task, origin, example_id) -> Example | None:
    instruction = _string_field(path, number, record, "instruction").strip()
    text = _string_field(path, number, record, "input", required=False).strip()
    output = _string_field(path, number, record, "output").strip()
    if not instruction or not output:
        return None
    return Example(task, text, (output,), origin, example_id, False, instruction)


def read_alpaca_json(path: PathLike, *, task: str = "generic", origin: str | None = None) -> list[Example]:
    """Alpaca data: one JSON array of `{instruction, input, output}` objects (`input` may be empty or absent).
    `Example.instruction` is the record's instruction, `source` its input, the single reference its output.
    Records with an empty instruction or output are skipped. Ids count the array's items from 1."""
    origin = _origin(origin, path)
    name = Path(path).name
    examples = []
    for item, (number, record) in enumerate(_json_array_items(path), start=1):
        example = _instruction_example(path, number, record, task=task, origin=origin, example_id=f"{name}:{item}")
        if example is not None:
            examples.append(example)
    return examples


def read_jsonl(path: PathLike, *, task: str = "generic", origin: str | None = None) -> list[Example]:
    """JSON lines, one `{instruction, input, output}` object per line (`input` optional; other keys ignored;
    records with an empty instruction or output are skipped)."""
    origin = _origin(origin, path)
    name = Path(path).name
    examples = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        record = _load_json_line(path, number, line)
        example = _instruction_example(path, number, record, task=task, origin=origin, example_id=f"{name}:{number}")
        if example is not None:
            examples.append(example)
    return examples


def read_chat_jsonl(path: PathLike, *, task: str = "generic", origin: str | None = None) -> list[Example]:
    """JSON lines of chat conversations, `{"messages": [{"role": ..., "content": ...}, ...]}` with roles `system`,
    `user`, `assistant`. Each conversation gives one example: its first user turn is the instruction and the
    assistant turn right after it the reference; later turns are not used (the mix is single-turn). A conversation
    without a user turn followed by an assistant turn is an error."""
    origin = _origin(origin, path)
    name = Path(path).name
    examples = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        record = _load_json_line(path, number, line)
        if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
            raise DataFormatError(path, number, "expected an object with a 'messages' list")
        turns = []
        for position, message in enumerate(record["messages"]):
            if not isinstance(message, dict):
                raise DataFormatError(path, number, f"messages[{position}] is not an object")
            role, content = message.get("role"), message.get("content")
            if role not in ("system", "user", "assistant"):
                raise DataFormatError(path, number, f"messages[{position}].role must be system, user or assistant")
            if not isinstance(content, str):
                raise DataFormatError(path, number, f"messages[{position}].content must be a string")
            turns.append((role, content.strip()))
        pair = next(
            (
                (turns[i][1], turns[i + 1][1])
                for i in range(len(turns) - 1)
                if turns[i][0] == "user" and turns[i + 1][0] == "assistant"
            ),
            None,
        )
        if pair is None:
            raise DataFormatError(path, number, "no user message followed by an assistant message")
        if pair[0] and pair[1]:
            examples.append(Example(task, "", (pair[1],), origin, f"{name}:{number}", False, pair[0]))
    return examples


ITERATER_INTENTS = ("clarity", "fluency", "coherence", "style", "meaning-changed", "others")


def read_iterater_jsonl(
    path: PathLike, *, intent: str | None = None, task: str | None = None, origin: str | None = None
) -> list[Example]:
    """IteraTeR sentence-level JSON lines (`before_sent`, `after_sent`, `labels`, ...), as released in
    `IteraTeR_human_sent` / `IteraTeR_full_sent` `{train,dev,test}.json`. With `intent`, only revisions of that edit
    intention are kept; the task defaults to the intention (clarity, fluency, coherence)."""
    if intent is not None and intent not in ITERATER_INTENTS:
        raise ValueError(f"unknown IteraTeR intent {intent!r} (known: {', '.join(ITERATER_INTENTS)})")
    task = task or intent
    if task is None:
        raise ValueError("read_iterater_jsonl needs a task when no intent is given")
    origin = _origin(origin, path)
    name = Path(path).name
    examples = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        record = _load_json_line(path, number, line)
        before = _string_field(path, number, record, "before_sent").strip()
        after = _string_field(path, number, record, "after_sent").strip()
        label = _string_field(path, number, record, "labels")
        if intent is not None and label != intent:
            continue
        if before and after:
            examples.append(Example(task, before, (after,), origin, f"{name}:{number}", False))
    return examples


READERS = {
    "parallel": read_parallel,
    "turkcorpus_tsv": read_turkcorpus_tsv,
    "m2": read_m2,
    "wnc_pre_post": read_wnc_pre_post,
    "wnc_tsv": read_wnc_tsv,
    "stsb_csv": read_stsb_csv,
    "mrpc_tsv": read_mrpc_tsv,
    "wikisplit_tsv": read_wikisplit_tsv,
    "alpaca_json": read_alpaca_json,
    "jsonl": read_jsonl,
    "chat_jsonl": read_chat_jsonl,
    "iterater_jsonl": read_iterater_jsonl,
}
"""Format name -> reader function; the names are the `format` values of recipe sources and eval sets."""
