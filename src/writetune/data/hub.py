"""Corpora that a user with a network fetches from the Hugging Face hub (CoEdIT, IteraTeR, WNC, Alpaca), loaded with
`datasets.load_dataset` and turned into `Example`s.

`HUB_DATASETS` names each corpus, its hub id and how a row becomes an example. `load_hub_examples` loads a split
either from the hub or from a local directory laid out like the hub repository (the same files), which is how it is
tested here, where no machine reaches the hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from writetune.data.readers import DataFormatError, Example, MissingDataError

# CoEdIT's task labels -> the task registry's names
COEDIT_TASKS = {
    "gec": "grammaticality",
    "neutralize": "neutralization",
    "simplification": "simplification",
    "paraphrase": "paraphrase",
    "clarity": "clarity",
    "coherence": "coherence",
}
ITERATER_TASKS = ("clarity", "fluency", "coherence")  # the other intentions (style, meaning-changed) are no task

Row = Mapping[str, Any]
# (row, origin, row id) -> (task, example), or None to skip the row; raises ValueError for a malformed row
Converter = Callable[[Row, str, str], "tuple[str, Example] | None"]


def _text(row: Row, key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise ValueError(f"field '{key}' must be a string, found {type(value).__name__}")
    return value.strip()


def _coedit(row: Row, origin: str, row_id: str):
    label = _text(row, "task")
    task = COEDIT_TASKS.get(label)
    if task is None:
        raise ValueError(f"unknown CoEdIT task {label!r} (known: {', '.join(COEDIT_TASKS)})")
    src = _text(row, "src")
    instruction, sep, text = src.partition(": ")
    if not sep:
        raise ValueError(f"CoEdIT 'src' is not 'instruction: text': {src[:60]!r}")
    example = Example(task, text.strip(), (_text(row, "tgt"),), origin, row_id, False, instruction.strip())
    return task, example


def _iterater(row: Row, origin: str, row_id: str):
    label = _text(row, "labels")
    if label not in ITERATER_TASKS:
        return None
    example = Example(label, _text(row, "before_sent"), (_text(row, "after_sent"),), origin, row_id)
    return label, example


def _alpaca(row: Row, origin: str, row_id: str):
    instruction = _text(row, "instruction")
    output = _text(row, "output")
    text = _text(row, "input") if row.get("input") is not None else ""
    return "generic", Example("generic", text, (output,), origin, row_id, False, instruction)


@dataclass(frozen=True)
class HubDataset:
    name: str
    hub_id: str
    description: str
    convert: Converter
    tasks: tuple[str, ...]


HUB_DATASETS: dict[str, HubDataset] = {
    d.name: d
    for d in (
        HubDataset(
            "coedit",
            "grammarly/coedit",
            "CoEdIT instruction data (82k train, 1.7k validation): fields _id, task, src ('instruction: text'), tgt",
            _coedit,
            tuple(COEDIT_TASKS.values()),
        ),
        HubDataset(
            "iterater",
            "wanyu/IteraTeR_human_sent",
            "IteraTeR human-annotated sentence revisions (train 3,254 / dev 400 / test 364): before_sent, after_sent, "
            "labels; clarity, fluency and coherence revisions become those tasks",
            _iterater,
            ITERATER_TASKS,
        ),
        HubDataset(
            "wnc",
            "grammarly/coedit",
            "WNC as CoEdIT redistributes it (its 'neutralize' rows); the official WNC release is a zip outside the "
            "hub (read it with the wnc_tsv reader)",
            _coedit,
            ("neutralization",),
        ),
        HubDataset(
            "alpaca",
            "tatsu-lab/alpaca",
            "Stanford Alpaca, 52,002 records: instruction, input, output",
            _alpaca,
            ("generic",),
        ),
    )
}


def load_hub_examples(
    dataset: str,
    *,
    split: str = "train",
    path: str | Path | None = None,
    task: str | None = None,
    origin: str | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> list[Example]:
    """Examples of one split of a hub corpus. `dataset` is a `HUB_DATASETS` name; `path` loads a local copy in the
    hub repository's layout instead of downloading; `task` keeps only rows of that task (multi-task corpora)."""
    spec = HUB_DATASETS.get(dataset)
    if spec is None:
        raise ValueError(f"unknown hub dataset {dataset!r} (known: {', '.join(HUB_DATASETS)})")
    if task is not None and task not in spec.tasks:
        raise ValueError(f"hub dataset {dataset!r} has no {task!r} data (it has: {', '.join(spec.tasks)})")
    if path is not None and not Path(path).exists():
        raise MissingDataError(path, f"local copy of {spec.hub_id}")

    import datasets  # heavy import: datasets loads only where a hub dataset is read

    source = str(path) if path is not None else spec.hub_id
    try:
        rows = datasets.load_dataset(source, split=split, revision=revision, cache_dir=str(cache_dir) if cache_dir else None)
    except (FileNotFoundError, ValueError) as err:
        raise DataFormatError(source, 0, f"cannot load split {split!r} with datasets: {err}") from err
    origin = origin or dataset
    wanted_task = task
    if dataset == "wnc":
        wanted_task = "neutralization"
    examples = []
    for index, row in enumerate(rows):
        try:
            converted = spec.convert(row, origin, f"{dataset}-{split}:{index + 1}")
        except ValueError as err:
            raise DataFormatError(source, index + 1, f"split {split!r}, row {index + 1}: {err}") from None
        if converted is None:
            continue
        row_task, example = converted
        if wanted_task is not None and row_task != wanted_task:
            continue
        if example.source or example.instruction:
            examples.append(example)
    return examples
