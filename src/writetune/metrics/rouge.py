"""ROUGE-L (Lin 2004) of answers against reference answers, from Google's `rouge-score` package.

Each segment's score is the F-measure of the longest common subsequence of its tokens with the reference
(`rouge_score.rouge_scorer.RougeScorer(['rougeL'], use_stemmer=True)`: lower-cased, non-alphanumerics removed,
Porter-stemmed), the best over the references when there are several; an empty answer scores 0. The corpus score is
the mean over segments, x100, as generic instruction-following evaluations report it (Self-Instruct,
Super-NaturalInstructions).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import numpy as np

from writetune.metrics.base import Inputs, Metric
from writetune.metrics.stats import SegmentStats, resampled_mean


class RougeL(Metric):
    """Mean ROUGE-L F-measure of each answer against its best reference."""

    name = "rouge_l"
    label = "ROUGE-L"
    needs_refs = True

    def __init__(self, use_stemmer: bool = True):
        self.use_stemmer = use_stemmer

    def segment_stats(self, inputs: Inputs) -> SegmentStats:
        # heavy import: rouge-score (with NLTK and absl) loads only where ROUGE-L is scored
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=self.use_stemmer)
        scores = []
        for i, hyp in enumerate(inputs.hyps):
            refs = [stream[i] for stream in inputs.refs]
            scores.append(max(scorer.score(ref, hyp)["rougeL"].fmeasure for ref in refs) if hyp.strip() else 0.0)
        return SegmentStats({"f": np.array(scores, dtype=np.float64)}, len(scores), {"n_refs": len(inputs.refs)})

    def aggregate(self, stats: SegmentStats) -> tuple[float, dict[str, Any]]:
        return 100.0 * float(stats["f"].mean()), {"segments": stats.n}

    def resampled_scores(self, stats: SegmentStats, indices: np.ndarray) -> np.ndarray:
        return resampled_mean(stats, "f", indices, scale=100.0)

    def signature_fields(self, n_refs: int | None) -> dict[str, object]:
        return {"impl": f"rouge-score-{version('rouge-score')}", "measure": "f",
                "stemmer": "porter" if self.use_stemmer else "none", "refs": f"{n_refs}:max"}
