"""GLEU for grammatical error correction as the JFLEG release's `gleu.py` computes it (Napoles et al. 2015/2016).

Segments are split on whitespace (the JFLEG files are pre-tokenized) and compared case-sensitively. For one
hypothesis h, source s and reference r, order n contributes the numerator
``max(|h & r| - |h & (s \\ r)|, 0)`` (n-gram counts; ``s \\ r`` = source n-grams that do not occur in r, with their
source counts) and the denominator ``max(len(h) + 1 - n, 0)``; the statistics also carry len(h) and len(r).
GLEU of summed statistics = exp(min(0, 1 - r/c) + mean over n of log(num_n / den_n)), and 0 if any statistic is 0.

Multiple references are handled the way the script does: in iteration j (j = 0..iterations-1) it calls
``random.seed(j * 101)`` and draws one reference per sentence, in sentence order, with
``random.randint(0, n_refs - 1)``; each iteration gives a corpus GLEU of the summed statistics, and the score is
the mean over iterations (`components` also has the standard deviation and the script's normal "ci95" of the
iteration scores, which measure reference sampling, not test-set sampling). Python 3's `random` is used, so the
values equal the script run under Python 3; under Python 2.7 the draws differ (see docs/metrics.md).

Per-segment statistics are the 10 GLEU statistics against *every* reference plus the segment's reference draw of
every iteration. A bootstrap resample takes rows of both, so each resampled sentence keeps the references it drew
in each iteration, and the score of a resample is again the mean over iterations of the corpus GLEU of the drawn
statistics.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

import numpy as np

from writetune.metrics.base import Inputs, Metric
from writetune.metrics.stats import SegmentStats, counts_matrix

ORDER = 4
N_STATS = 2 + 2 * ORDER


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(zip(*(tokens[i:] for i in range(n))))


def segment_gleu_stats(hypothesis: list[str], source: list[str], reference: list[str]) -> list[int]:
    """[hyp_len, ref_len, num_1, den_1, ..., num_4, den_4] of one sentence against one reference."""
    hlen = len(hypothesis)
    out = [hlen, len(reference)]
    for n in range(1, ORDER + 1):
        h = _ngrams(hypothesis, n)
        s = _ngrams(source, n)
        r = _ngrams(reference, n)
        matches = sum(min(c, r[g]) for g, c in h.items() if g in r)
        penalty = sum(min(c, s[g]) for g, c in h.items() if g in s and g not in r)
        out.append(max(matches - penalty, 0))
        out.append(max(hlen + 1 - n, 0))
    return out


def gleu_from_stats(stats: list[float] | tuple[float, ...]) -> float:
    """The script's `GLEU.gleu` (no smoothing) of one vector of summed statistics, on a 0-1 scale."""
    if any(x == 0 for x in stats):
        return 0.0
    c, r = stats[0], stats[1]
    log_precision = sum(math.log(float(x) / y) for x, y in zip(stats[2::2], stats[3::2])) / ORDER
    return math.exp(min(0.0, 1.0 - float(r) / c) + log_precision)


def gleu_from_stats_array(stats: np.ndarray) -> np.ndarray:
    """Vectorised `gleu_from_stats` over the last axis (0-1 scale)."""
    stats = stats.astype(np.float64)
    zero = (stats == 0).any(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_precision = np.log(stats[..., 2::2] / stats[..., 3::2]).sum(axis=-1) / ORDER
        value = np.exp(np.minimum(0.0, 1.0 - stats[..., 1] / stats[..., 0]) + log_precision)
    return np.where(zero, 0.0, value)


def reference_draws(n_segments: int, n_refs: int, iterations: int) -> np.ndarray:
    """draws[i, j]: the reference that iteration j uses for segment i, as gleu.py draws them under Python 3."""
    draws = np.empty((n_segments, iterations), dtype=np.int16 if n_refs < 2**15 else np.int64)
    for j in range(iterations):
        rng = random.Random(j * 101)
        draws[:, j] = [rng.randint(0, n_refs - 1) for _ in range(n_segments)]
    return draws


class Gleu(Metric):
    """GLEU (JFLEG gleu.py, Python 3 reference draws), reported as the mean over sampling iterations x 100."""

    name = "gleu"
    label = "GLEU"
    needs_source = True
    needs_refs = True

    def __init__(self, iterations: int = 500):
        if iterations < 1:
            raise ValueError(f"gleu: iterations must be >= 1, got {iterations}")
        self.iterations = int(iterations)

    def segment_stats(self, inputs: Inputs) -> SegmentStats:
        n, n_refs = len(inputs.hyps), len(inputs.refs)
        per_ref = np.zeros((n, n_refs, N_STATS), dtype=np.int64)
        for i, (hyp, src) in enumerate(zip(inputs.hyps, inputs.sources)):
            h, s = hyp.split(), src.split()
            for k, stream in enumerate(inputs.refs):
                per_ref[i, k] = segment_gleu_stats(h, s, stream[i].split())
        draws = reference_draws(n, n_refs, self.iterations)
        return SegmentStats({"per_ref": per_ref, "draws": draws}, n)

    def stats_n_refs(self, stats: SegmentStats) -> int | None:
        return int(stats["per_ref"].shape[1])

    @staticmethod
    def _drawn(stats: SegmentStats, iterations: slice | None = None) -> np.ndarray:
        """Statistics of each segment under each iteration's draw: shape (n, J, 10)."""
        draws = stats["draws"] if iterations is None else stats["draws"][:, iterations]
        return np.take_along_axis(stats["per_ref"], draws.astype(np.int64)[:, :, None], axis=1)

    def iteration_scores(self, stats: SegmentStats) -> list[float]:
        """Corpus GLEU (0-1) of every sampling iteration."""
        totals = self._drawn(stats).sum(axis=0)
        return [gleu_from_stats([int(x) for x in row]) for row in totals]

    def aggregate(self, stats: SegmentStats) -> tuple[float, dict[str, Any]]:
        scores = np.array(self.iteration_scores(stats))
        mean = float(np.mean(scores))
        std = float(np.std(scores))
        components: dict[str, Any] = {
            "mean": 100.0 * mean,
            "std": 100.0 * std,
            "iterations": self.iterations,
        }
        if std > 0:
            from scipy.stats import norm  # heavy import: scipy.stats loads only where a GLEU interval is computed

            low, high = norm.interval(0.95, loc=mean, scale=std)
            components["sampling_ci95"] = [100.0 * float(low), 100.0 * float(high)]
        else:
            components["sampling_ci95"] = None
        return 100.0 * mean, components

    def resampled_scores(self, stats: SegmentStats, indices: np.ndarray) -> np.ndarray:
        counts = counts_matrix(indices, stats.n)
        total = np.zeros(counts.shape[0])
        block = max(1, 200_000 // max(stats.n, 1))
        for start in range(0, self.iterations, block):
            part = slice(start, min(start + block, self.iterations))
            drawn = self._drawn(stats, part).astype(np.float64)  # (n, J', 10)
            summed = (counts @ drawn.reshape(stats.n, -1)).reshape(counts.shape[0], -1, N_STATS)
            total += gleu_from_stats_array(summed).sum(axis=1)
        return 100.0 * total / self.iterations

    def signature_fields(self, n_refs: int | None) -> dict[str, object]:
        return {
            "impl": "jfleg-gleu.py(ee06ff8 semantics,python3 random)",
            "tok": "whitespace",
            "case": "sensitive",
            "nrefs": n_refs,
            "iter": self.iterations,
            "ref_seed": "j*101",
        }
