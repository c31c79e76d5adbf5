"""The metric registry: every metric's name and aliases, the class behind each, and which way its score improves.

Task and evaluation-set definitions, the training loop and the report name metrics by any of these names (e.g.
``m2_f05`` for ``m2``, ``errant_f05`` for ``errant``); `canonical_name` resolves them, so no caller keeps its own map.
Every metric, built-in or not, enters through `register_metric`.
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

METRICS: dict[str, type[Metric]] = {}
"""Canonical name (the class's `name`) -> metric class."""

ALIASES: dict[str, str] = {}
"""Other accepted names (lower case) -> canonical name."""


def register_metric(cls: type[Metric], aliases: tuple[str, ...] = (), *, replace: bool = False) -> type[Metric]:
    """Add a metric class under its `name` and `aliases` (matched case-insensitively); every built-in metric is
    added this way. A name or alias already taken raises ValueError, unless `replace` is set and the name is the
    metric's own."""
    name = cls.name
    if name in METRICS and not replace:
        raise ValueError(f"metric '{name}' is already registered")
    for alias in (name, *aliases):
        key = alias.lower()
        owner = key if key in METRICS else ALIASES.get(key)
        if owner is not None and owner != name:
            raise ValueError(f"metric name or alias '{alias}' is already used by metric '{owner}'")
    METRICS[name] = cls
    ALIASES.update({alias.lower(): name for alias in aliases})
    return cls


_BUILTIN: tuple[tuple[type[Metric], tuple[str, ...]], ...] = (
    (Sari, ()),
    (Gleu, ()),
    (M2Score, ("m2scorer", "maxmatch", "m2_f05")),
    (ErrantF05, ("errant_f05",)),
    (ExactMatch, ("exact_match",)),
    (Bleu, ()),
    (SelfBleu, ("self-bleu", "selfbleu")),
    (IBleu, ()),
    (CopyRate, ("copy", "copy-rate")),
    (RougeL, ("rouge-l", "rougel")),
    (AnswerLength, ()),
    (EmptyOrTruncated, ()),
    *((cls, ()) for cls in IFBENCH_METRICS.values()),
)

for _cls, _aliases in _BUILTIN:
    register_metric(_cls, _aliases)


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
