"""The results document: what an evaluation writes to `results.json`, and what the report, `writetune report` and the
CLI read.

`systems` maps each row to its sets, and each set to its cell: a list of score records, one per metric of the set, in
the set's metric order (a set with one metric has a list of one). Every record says which way is better (`better`:
higher, lower, or neither for a description of the answers such as their length), so that a reader ranks and marks
values without a table of metric names of its own. The other keys describe the run: the baseline row, the suite, the
sets, what was skipped or not evaluated, the systems' settings, the configuration, the timing and what each system cost to train and store.

The types are `TypedDict`s: the document is plain JSON in memory and on disk, and these say what its keys hold.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from writetune.atomic import write_text_atomic

RESULTS_FILE = "results.json"
BETTER = ("higher", "lower", "neither")

Better = Literal["higher", "lower", "neither"]


class Comparison(TypedDict):
    """A paired test of a row against the baseline row on one set and metric."""

    baseline: str
    delta: float  # this row's score minus the baseline's
    p_value: float
    test: str  # e.g. "paired_bootstrap:1000"
    delta_ci: list[float] | None


class ScoreRecord(TypedDict):
    """One metric of one row on one set."""

    metric: str  # the name the set registers (`m2_f05`)
    label: str  # the metric's display name (`M2 F0.5`)
    better: Better
    score: float  # 0-100, except answer lengths (words) and iBLEU (may go below 0)
    ci: list[float] | None  # 95% bootstrap interval, None without resampling
    n: int
    signature: str
    components: dict[str, Any]
    baseline: NotRequired[bool]  # True on the baseline row
    vs_baseline: NotRequired[Comparison]  # on every other row


Cell = list[ScoreRecord]


class SetInfo(TypedDict):
    task: str
    description: str
    n: int
    metrics: list[str]
    tokenization: str
    instruction: str
    references: int
    max_new_tokens: int | None
    files: list[str]


class ResultsDocument(TypedDict):
    systems: dict[str, dict[str, Cell]]  # row -> set -> cell
    baseline: str
    suite: str
    sets: dict[str, SetInfo]
    skipped: list[dict[str, str]]  # {"set", "task", "reason"}
    not_evaluated: list[dict[str, str]]  # {"system", "set", "reason"}
    system_info: dict[str, dict[str, Any]]
    config: dict[str, Any]
    timing: dict[str, Any]  # {"wall_seconds", "generation": {row: {set: {...}}}}
    cost: NotRequired[dict[str, dict[str, Any]]]  # row -> training and disk (writetune.evaluate.cost.model_cost)
    task_order: list[str]


class ResultsFormatError(ValueError):
    """A file that is not a results document of this format; the message names the file and the key."""


def cell(document: dict, system: str, set_name: str, metric: str) -> ScoreRecord | None:
    """The record of `metric` in a row's cell for a set, or None when the row has no such record."""
    for record in (document["systems"].get(system) or {}).get(set_name) or []:
        if record["metric"] == metric:
            return record
    return None


def records(document: dict, system: str | None = None) -> Iterator[tuple[str, str, ScoreRecord]]:
    """(row, set, record) for every record of the document, or of one row."""
    for name, sets in document["systems"].items():
        if system is None or name == system:
            for set_name, value in sets.items():
                for record in value:
                    yield name, set_name, record


def check_document(document: Any, where: str | os.PathLike) -> None:
    """Raise ResultsFormatError (naming `where` and the key) unless every cell is a list of records that say which
    way is better."""
    if not isinstance(document, dict) or not isinstance(document.get("systems"), dict):
        raise ResultsFormatError(f"{where}: not a results document (no 'systems')")
    for system, sets in document["systems"].items():
        for set_name, value in sets.items():
            key = f"systems.{system}.{set_name}"
            if not isinstance(value, list):
                raise ResultsFormatError(
                    f"{where}: key '{key}': a cell must be a list of score records (a document written before cells "
                    "were lists; run the evaluation again to rewrite it, its saved predictions are reused)")
            for index, record in enumerate(value):
                if not isinstance(record, dict) or "metric" not in record or "score" not in record:
                    raise ResultsFormatError(f"{where}: key '{key}[{index}]': not a score record")
                if record.get("better") not in BETTER:
                    raise ResultsFormatError(f"{where}: key '{key}[{index}].better': {record.get('better')!r}, "
                                             f"expected one of {', '.join(BETTER)}")


def write_results(document: ResultsDocument, out: str | os.PathLike) -> Path:
    """Write the document to `out/results.json` (atomically); returns the path."""
    check_document(document, Path(out) / RESULTS_FILE)
    return write_text_atomic(Path(out) / RESULTS_FILE, json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def load_results(path: str | os.PathLike) -> ResultsDocument:
    """A results document written by an evaluation (a file or the directory that holds results.json)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no results file") from None
    except ValueError as err:
        raise ResultsFormatError(f"{path}: not a results document ({err})") from None
    check_document(document, path)
    return document
