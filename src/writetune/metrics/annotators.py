"""The base of the edit-based GEC metrics (M2 and ERRANT): per-annotator counts, one annotator chosen per sentence.

Both scorers compare a hypothesis with every annotator of a sentence, giving three counts per annotator (M2:
correct, proposed, gold; ERRANT: TP, FP, FN), and add to the corpus totals, sentence by sentence in file order, the
annotator that maximises the running corpus F. The statistics of a segment are therefore its counts for every
annotator (`cand`, shape (n, annotators, 3)) and which annotator slots are used (`valid`); a resample re-runs only
the annotator choice. With one annotator per sentence there is nothing to choose and totals are plain sums. Each
metric supplies its own choice rule (exact and vectorised) and its F from totals.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import numpy as np

from writetune.metrics.base import Metric
from writetune.metrics.stats import SegmentStats, counts_matrix

Counts = tuple[int, int, int]


class AnnotatorChoiceMetric(Metric):
    """A metric over per-annotator counts with a sentence-by-sentence annotator choice (statistics `cand`, `valid`)."""

    beta: float

    @staticmethod
    def stats_from_counts(per_sentence: Sequence[Sequence[Counts]]) -> SegmentStats:
        """Statistics from each sentence's counts for every annotator (annotators in the scorer's order)."""
        width = max(len(rows) for rows in per_sentence)
        cand = np.zeros((len(per_sentence), width, 3), dtype=np.int64)
        valid = np.zeros((len(per_sentence), width), dtype=bool)
        for i, rows in enumerate(per_sentence):
            for a, counts in enumerate(rows):
                cand[i, a] = counts
                valid[i, a] = True
        return SegmentStats({"cand": cand, "valid": valid}, len(per_sentence))

    def stats_n_refs(self, stats: SegmentStats) -> int | None:
        return int(stats["valid"].sum(axis=1).max(initial=0))

    @abstractmethod
    def choose(self, cand: np.ndarray, valid: np.ndarray) -> tuple[float, float, float]:
        """Corpus totals of the scorer's sentence-by-sentence annotator choice (exact, scalar)."""

    @abstractmethod
    def choose_many(self, cand: np.ndarray, valid: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """`choose` for the resampled corpora given by the rows of `indices`: totals of shape (B, 3)."""

    @abstractmethod
    def f_scores(self, totals: np.ndarray) -> np.ndarray:
        """F (0-100) of totals of shape (B, 3)."""

    def totals(self, stats: SegmentStats) -> tuple[float, float, float]:
        """Corpus totals of the three counts: plain sums with one annotator per sentence, else the choice."""
        cand, valid = stats["cand"], stats["valid"]
        if valid.sum(axis=1).max(initial=0) <= 1:
            return tuple((cand * valid[..., None]).sum(axis=(0, 1)))
        return self.choose(cand, valid)

    def resampled_scores(self, stats: SegmentStats, indices: np.ndarray) -> np.ndarray:
        indices = np.atleast_2d(indices)
        cand, valid = stats["cand"], stats["valid"]
        if valid.sum(axis=1).max(initial=0) <= 1:
            totals = counts_matrix(indices, stats.n) @ (cand * valid[..., None]).sum(axis=1).astype(np.float64)
        else:
            totals = self.choose_many(cand, valid, indices)
        return self.f_scores(totals)
