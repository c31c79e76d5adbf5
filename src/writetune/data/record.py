"""The mix record: one line of a mix's `train.jsonl` or `dev.jsonl`, as `writetune data build` writes it and
training reads it back.

A record is a JSON object with the keys `id`, `task`, `origin` (the recipe source it came from), `instruction`,
`input` and `output`, in that order; a dev record also has `references` (every reference of its source sentence,
the output among them). Files are UTF-8, one object a line, `\\n` line ends, no byte-order mark. Reading is lenient
where a hand-written file may differ (`input`, `id`, `task`, `origin` and `references` may be missing; a leading
byte-order mark is skipped) and strict about the rest: every error names the file and the line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from writetune.data.errors import DataError

TRAIN_FILE, DEV_FILE, MANIFEST_FILE = "train.jsonl", "dev.jsonl", "manifest.json"
_STRING_KEYS = ("instruction", "input", "output")


class DataFileError(DataError):
    """A mix file that cannot be used for training; the message is `file:line: what is wrong`."""


@dataclass(frozen=True)
class Record:
    """One mix record. `references` is empty on training records as written (reading fills in the output)."""

    id: str
    task: str
    instruction: str
    input: str
    output: str
    references: tuple[str, ...] = ()
    origin: str = ""

    def to_json(self, *, with_references: bool) -> str:
        """The record's line (without the line end); `with_references` for dev records."""
        row = {"id": self.id, "task": self.task, "origin": self.origin, "instruction": self.instruction,
               "input": self.input, "output": self.output}
        if with_references:
            row["references"] = list(self.references)
        return json.dumps(row, ensure_ascii=False)

    @classmethod
    def from_row(cls, row: object, where: str, default_id: str) -> "Record":
        """A record from one parsed line; `where` (`file:line`) prefixes every error, `default_id` stands in for a
        missing id."""
        if not isinstance(row, dict):
            raise DataFileError(f"{where}: expected a JSON object")
        for key in _STRING_KEYS:
            if not isinstance(row.get(key, "" if key == "input" else None), str):
                raise DataFileError(f"{where}: key '{key}' must be a string")
        if not row["output"].strip():
            raise DataFileError(f"{where}: empty output")
        references = row.get("references") or [row["output"]]
        return cls(id=str(row.get("id", default_id)), task=str(row.get("task", "generic")),
                   instruction=row["instruction"], input=row.get("input", ""), output=row["output"],
                   references=tuple(references), origin=str(row.get("origin", "")))


def write_records(path: str | Path, records: Iterable[Record], *, with_references: bool) -> None:
    """Write records to a mix file, one line each."""
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for record in records:
            fh.write(record.to_json(with_references=with_references) + "\n")


def read_records(path: str | Path) -> list[Record]:
    """Read a mix file (train or dev); blank lines are skipped, a file without records is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such mix file (build one with `writetune data build RECIPE -o DIR`)")
    records = []
    with path.open(encoding="utf-8-sig") as fh:  # a leading byte-order mark is not part of the first record
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFileError(f"{path}:{number}: not valid JSON: {err.msg}") from None
            records.append(Record.from_row(row, f"{path}:{number}", str(number)))
    if not records:
        raise DataFileError(f"{path}: no records")
    return records
