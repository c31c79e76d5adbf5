"""Exact match (output equals one of its references) and copy rate (output equals its source), in percent.

Both compare segments as strings after removing leading and trailing whitespace; the comparison is case- and
punctuation-sensitive and does not re-tokenize. The copy rate is the failure mode of edit models: a system that
returns its input unchanged scores well on some metrics (SARI's KEEP, GLEU on light-edit sets) while doing nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from writetune.metrics.base import Inputs, Metric, SegmentStats, counts_matrix, version_tag


class ShareMetric(Metric):
    """A share of segments (0-100) from one 0/1 statistic per segment."""

    def aggregate(self, stats: SegmentStats) -> tuple[float, dict[str, Any]]:
        hits = int(stats["hit"].sum())
        return 100.0 * hits / stats.n, {"matches": hits, "segments": stats.n}

    def resampled_scores(self, stats: SegmentStats, indices: np.ndarray) -> np.ndarray:
        return 100.0 * (counts_matrix(indices, stats.n) @ stats["hit"].astype(np.float64)) / stats.n

    def _signature(self, what: str, bootstrap: int, seed: int | None) -> str:
        parts = [self.name, f"compare:{what}", "norm:strip", "case:sensitive"]
        if bootstrap:
            parts.append(f"bootstrap:{bootstrap}|seed:{seed}")
        parts.append(f"version:{version_tag()}")
        return "|".join(parts)


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

    def signature(self, n_refs: int | None, bootstrap: int = 0, seed: int | None = None) -> str:
        return self._signature(f"any-of-{n_refs}-refs", bootstrap, seed)


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

    def signature(self, n_refs: int | None, bootstrap: int = 0, seed: int | None = None) -> str:
        return self._signature("source", bootstrap, seed)
