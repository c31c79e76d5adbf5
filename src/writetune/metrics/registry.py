"""The metric registry: every metric's name and aliases, the class behind each, and which way its score improves.

Task and evaluation-set definitions, the training loop and the report name metrics by any of these names (e.g.
``m2_f05`` for ``m2``, ``errant_f05`` for ``errant``); `canonical_name` resolves them, so no caller keeps its own map.
"""

from __future__ import annotations

from typing import Any

from writetune.metrics.answers import AnswerLength, EmptyOrTruncated
from writetune.metrics.base import Metric, MetricInputError
from writetune.metrics.bleu import Bleu, IBleu, SelfBleu
from writetune.metrics.errant_f05 import ErrantF05
from writetune.metrics.exact import CopyRate, ExactMatch
from writetune.metrics.gleu import Gleu
from writetune.metrics.ifbench import ACCURACY_METRICS as IFBENCH_METRICS
from writetune.metrics.m2 import M2Score
from writetune.metrics.rouge import RougeL
from writetune.metrics.sari import Sari

METRICS: dict[str, type[Metric]] = {
    "sari": Sari,
    "gleu": Gleu,
    "m2": M2Score,
    "errant": ErrantF05,
    "em": ExactMatch,
    "bleu": Bleu,
    "self_bleu": SelfBleu,
    "ibleu": IBleu,
    "copy_rate": CopyRate,
    "rouge_l": RougeL,
    "answer_words": AnswerLength,
    "empty_or_truncated": EmptyOrTruncated,
    **IFBENCH_METRICS,
}
"""Canonical name -> metric class."""

ALIASES: dict[str, str] = {
    "exact_match": "em",
    "self-bleu": "self_bleu",
    "selfbleu": "self_bleu",
    "copy": "copy_rate",
    "copy-rate": "copy_rate",
    "m2scorer": "m2",
    "maxmatch": "m2",
    "m2_f05": "m2",
    "errant_f05": "errant",
    "rouge-l": "rouge_l",
    "rougel": "rouge_l",
}
"""Other accepted names (case-insensitive) -> canonical name."""


def available_metrics() -> list[str]:
    """Canonical names accepted by `get_metric`."""
    return list(METRICS)


def canonical_name(name: str) -> str:
    """The registry's name for `name` or one of its aliases (``m2_f05`` -> ``m2``); `MetricInputError` if unknown."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in METRICS:
        raise MetricInputError(f"unknown metric {name!r}; choose one of: {', '.join(METRICS)}")
    return key


def metric_class(name: str) -> type[Metric]:
    """The class of the metric `name` (any alias), for its requirements without building it."""
    return METRICS[canonical_name(name)]


def higher_is_better(name: str) -> bool | None:
    """Which way the metric `name` (any alias) improves: True, False (lower is better, e.g. self-BLEU), or None for a
    description that is neither (answer length)."""
    return metric_class(name).higher_is_better


def get_metric(name: str, **options: Any) -> Metric:
    """A metric by name, with its options (e.g. ``get_metric("gleu", iterations=200)``)."""
    key = canonical_name(name)
    try:
        return METRICS[key](**options)
    except TypeError as err:
        raise MetricInputError(f"{key}: bad option ({err})") from None
