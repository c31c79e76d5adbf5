"""The golden metric values in ../shared/metric_golden and the files they name.

The values (EASSE SARI/BLEU, JFLEG gleu.py under Python 3, M2Scorer 3.2, ERRANT 3.0.2) and their tolerances come
from expected.json and cases.json; see shared/metric_golden/README.md. Reference implementations report GLEU, M2
and ERRANT on a 0-1 scale, writetune on 0-100, hence the divisions by 100 in the tests that use them. Tests that
need the values are marked `needs_golden` (skipped when shared/ is not beside the repository).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from writetune.metrics import Inputs, read_segments

SHARED = Path(__file__).resolve().parents[3] / "shared"
GOLDEN = SHARED / "metric_golden"

needs_golden = pytest.mark.skipif(
    not (GOLDEN / "expected.json").is_file(),
    reason=f"golden metric values not found at {GOLDEN} (clone shared/ beside the repository)",
)


@lru_cache(maxsize=1)
def expected() -> list[dict]:
    return json.loads((GOLDEN / "expected.json").read_text())


@lru_cache(maxsize=1)
def cases() -> dict:
    return json.loads((GOLDEN / "cases.json").read_text())


@lru_cache(maxsize=64)
def lines(relative: str) -> list[str]:
    return read_segments(SHARED / relative)


def records(metric: str) -> list[dict]:
    if not (GOLDEN / "expected.json").is_file():
        return []
    return [r for r in expected() if r["metric"] == metric]


def case_list(kind: str) -> list[dict]:
    if not (GOLDEN / "cases.json").is_file():
        return []
    return cases()[kind]


def ids(items: list[dict]) -> list[str]:
    return [item["id"] for item in items]


def metric_inputs(hyps, sources=None, refs=None):
    return Inputs(hyps=list(hyps), sources=None if sources is None else list(sources), refs=refs)
