"""The prediction store: each row's answers to each set, one JSON line per item in `predictions/ROW.SET.jsonl` with
the settings that made them beside it (`ROW.SET.meta.json`). Answers are reused, by item id, only while the settings'
fingerprint is unchanged; a run with a smaller `--limit` keeps the answers of the items it did not ask about. With a
shared answers directory (`EvalConfig.shared_answers`), each file is also kept there under its set and fingerprint,
so that other evaluations making the same answers (the base row of every grid of a study) read them instead."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from writetune.atomic import write_text_atomic
from writetune.data.evalsets import EvalSet
from writetune.data.readers import Example
from writetune.evaluate.systems import System

PREDICTIONS_DIR = "predictions"


def predictions_path(out: Path, system: System, evalset: EvalSet) -> Path:
    return out / PREDICTIONS_DIR / f"{system.slug}.{evalset.name}.jsonl"


def shared_predictions_path(shared: Path, evalset: EvalSet, fingerprint: str) -> Path:
    """Where evaluations that share answers keep a set's answers made under one fingerprint: any evaluation (another
    grid, another row name) that would make the same answers reads them there."""
    return shared / f"{evalset.name}.{fingerprint}.jsonl"


def fingerprint(settings: dict[str, Any]) -> str:
    """A short digest of the settings that made a file's answers."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def read_predictions(path: Path, expected: str) -> dict[str, dict]:
    """Records of a predictions file keyed by item id, or {} when it is absent or was made with other settings
    (its fingerprint is not `expected`)."""
    meta = path.with_suffix(".meta.json")
    if not path.is_file() or not meta.is_file():
        return {}
    try:
        if json.loads(meta.read_text(encoding="utf-8")).get("fingerprint") != expected:
            return {}
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return {}
    return {r["id"]: r for r in records if "id" in r and "output" in r}


def write_predictions(path: Path, records: list[dict], meta: dict) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    write_text_atomic(path.with_suffix(".meta.json"), json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def kept_records(examples: list[Example], records: dict[str, dict], saved: dict[str, dict]) -> list[dict]:
    """What the predictions file holds: this run's records in set order, then saved records of items outside
    this run (a run with a smaller --limit does not throw away a larger run's answers)."""
    ordered = [records[e.id] for e in examples if e.id in records]
    return ordered + [r for key, r in saved.items() if key not in records]
