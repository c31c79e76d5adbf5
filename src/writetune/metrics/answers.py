"""Two descriptions of the answers themselves, for open-ended instructions: their mean length in words, and the
share of answers that are empty or were cut off by the token budget.

Truncation is not visible in the text: the evaluation runner knows each answer's budget and passes, per answer,
whether it reached it (`EmptyOrTruncated(truncated=[...])`); without that list only empty answers are counted, and the
signature says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from writetune.metrics.base import Inputs, Metric, MetricInputError
from writetune.metrics.exact import ShareMetric
from writetune.metrics.stats import SegmentStats, resampled_mean


class AnswerLength(Metric):
    """Mean number of whitespace-separated words per answer (not a 0-100 score; higher is not better)."""

    name = "answer_words"
    label = "Words"
    higher_is_better = None

    def segment_stats(self, inputs: Inputs) -> SegmentStats:
        words = np.array([len(hyp.split()) for hyp in inputs.hyps], dtype=np.float64)
        return SegmentStats({"words": words}, len(words))

    def aggregate(self, stats: SegmentStats) -> tuple[float, dict[str, Any]]:
        return float(stats["words"].mean()), {"segments": stats.n, "max": int(stats["words"].max())}

    def resampled_scores(self, stats: SegmentStats, indices: np.ndarray) -> np.ndarray:
        return resampled_mean(stats, "words", indices)

    def signature_fields(self, n_refs: int | None) -> dict[str, object]:
        return {"unit": "whitespace-words", "mean": True}


class EmptyOrTruncated(ShareMetric):
    """Share of answers that are empty (after stripping) or reached their token budget."""

    name = "empty_or_truncated"
    label = "Empty/trunc. %"
    higher_is_better = False

    def __init__(self, truncated: Sequence[bool] | None = None):
        self.truncated = None if truncated is None else [bool(t) for t in truncated]

    def segment_stats(self, inputs: Inputs) -> SegmentStats:
        if self.truncated is not None and len(self.truncated) != len(inputs.hyps):
            raise MetricInputError(
                f"{self.name}: {len(self.truncated)} truncation flags for {len(inputs.hyps)} answers")
        flags = self.truncated or [False] * len(inputs.hyps)
        empty = np.array([not hyp.strip() for hyp in inputs.hyps], dtype=np.int64)
        cut = np.array(flags, dtype=np.int64)
        return SegmentStats({"hit": np.maximum(empty, cut), "empty": empty, "truncated": cut}, len(flags))

    def aggregate(self, stats: SegmentStats) -> tuple[float, dict[str, Any]]:
        score, components = super().aggregate(stats)
        return score, {**components, "empty": int(stats["empty"].sum()), "truncated": int(stats["truncated"].sum())}

    def compared(self, n_refs: int | None) -> str:
        return "empty-or-budget-reached" if self.truncated is not None else "empty-only(truncation-unknown)"
