"""Exact match (output equals one of its references) and copy rate (output equals its source), in percent.

Both compare segments as strings after removing leading and trailing whitespace; the comparison is case- and
punctuation-sensitive and does not re-tokenize. The copy rate is the failure mode of edit models: a system that
returns its input unchanged scores well on some metrics (SARI's KEEP, GLEU on light-edit sets) while doing nothing.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from writetune.metrics.base import Inputs, Metric
from writetune.metrics.stats import SegmentStats, resampled_mean


class ShareMetric(Metric):
    """A share of segments (0-100) from one 0/1 statistic per segment."""

    def aggregate(self, stats: SegmentStats) -> tuple[float, dict[str, Any]]:
        hits = int(stats["hit"].sum())
        return 100.0 * hits / stats.n, {"matches": hits, "segments": stats.n}

    def resampled_scores(self, stats: SegmentStats, indices: np.ndarray) -> np.ndarray:
        return resampled_mean(stats, "hit", indices, scale=100.0)

    @abstractmethod
    def compared(self, n_refs: int | None) -> str:
        """What each segment is compared with (or checked for), as the signature names it."""

    def signature_fields(self, n_refs: int | None) -> dict[str, object]:
        return {"compare": self.compared(n_refs), "norm": "strip", "case": "sensitive"}


class ExactMatch(ShareMetric):
    """Share of outputs identical to at least one reference."""

    name = "em"
    label = "Exact match"
    needs_refs = True

    def segment_stats(self, inputs: Inputs) -> SegmentStats:
        hit = [
            any(hyp.strip() == stream[i].strip() for stream in inputs.refs) for i, hyp in enumerate(inputs.hyps)
        ]
        return SegmentStats({"hit": np.array(hit, dtype=np.int64)}, len(hit), {"n_refs": len(inputs.refs)})

    def compared(self, n_refs: int | None) -> str:
        return f"any-of-{n_refs}-refs"


class CopyRate(ShareMetric):
    """Share of outputs identical to their source."""

    name = "copy_rate"
    label = "Copy rate"
    needs_source = True

    def n_refs(self, inputs: Inputs) -> int | None:
        return None

    def segment_stats(self, inputs: Inputs) -> SegmentStats:
        hit = [hyp.strip() == src.strip() for hyp, src in zip(inputs.hyps, inputs.sources)]
        return SegmentStats({"hit": np.array(hit, dtype=np.int64)}, len(hit))

    def compared(self, n_refs: int | None) -> str:
        return "source"
