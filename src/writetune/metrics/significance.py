"""Bootstrap confidence intervals and paired significance tests, written once for every metric.

All three work on per-segment statistics (`SegmentStats`) and the metric's own aggregation, so a resample costs an
aggregation, not a re-scoring:

* `bootstrap_ci`: percentile interval of the corpus score over resamples of the segments (with replacement).
* `paired_bootstrap`: both systems resampled with the same segment indices; the p-value is two-sided, from the
  resampled differences centred on their mean (Berg-Kirkpatrick et al. 2012; Koehn 2004), with the percentile
  interval of the difference.
* `approximate_randomization`: per segment, the two systems' statistics are swapped with probability 1/2;
  p = (1 + #trials with |delta| >= |observed delta|) / (1 + trials) (Noreen 1989; Riezler & Maxwell 2005).

The random generator is numpy's PCG64 seeded with `seed` (12345 unless given), so results are reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from writetune.metrics.stats import SegmentStats

DEFAULT_SEED = 12345
"""Seed of the bootstrap and randomisation tests unless one is given (sacreBLEU's default too)."""

_CELLS_PER_CHUNK = 4_000_000


class ResamplableMetric(Protocol):
    """What resampling needs of a metric (`writetune.metrics.base.Metric` has it): its name, its aggregation of
    collected statistics, and the scores of many resampled corpora at once."""

    name: str

    def aggregate(self, stats: SegmentStats) -> tuple[float, dict[str, Any]]: ...

    def resampled_scores(self, stats: SegmentStats, indices: np.ndarray) -> np.ndarray: ...


def _chunk_rows(n: int) -> int:
    return max(1, _CELLS_PER_CHUNK // max(n, 1))


def _resample_indices(rng: np.random.Generator, n: int, n_samples: int) -> Iterator[tuple[int, np.ndarray]]:
    """`n_samples` bootstrap resamples of `n` segments, drawn in chunks of at most 4M indices: (first row, rows)."""
    step = _chunk_rows(n)
    for start in range(0, n_samples, step):
        yield start, rng.integers(0, n, size=(min(step, n_samples - start), n))


def bootstrap_scores(
    metric: ResamplableMetric, stats: SegmentStats, n_samples: int = 1000, seed: int = DEFAULT_SEED
) -> np.ndarray:
    """Corpus scores of `n_samples` bootstrap resamples of the segments."""
    if n_samples < 1:
        raise ValueError(f"bootstrap: the number of samples must be >= 1, got {n_samples}")
    out = np.empty(n_samples)
    for start, indices in _resample_indices(np.random.default_rng(seed), stats.n, n_samples):
        out[start : start + len(indices)] = metric.resampled_scores(stats, indices)
    return out


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_ci(
    metric: ResamplableMetric,
    stats: SegmentStats,
    n_samples: int = 1000,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the corpus score (same scale as the score)."""
    return percentile_interval(bootstrap_scores(metric, stats, n_samples, seed), confidence)


@dataclass(frozen=True)
class PairedResult:
    """Outcome of a paired test of system B against system A on the same segments (delta = B - A)."""

    method: str
    metric: str
    score_a: float
    score_b: float
    delta: float
    p_value: float
    samples: int
    seed: int
    delta_ci: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.delta_ci is not None:
            out["delta_ci"] = list(self.delta_ci)
        return out


def _check_pair(stats_a: SegmentStats, stats_b: SegmentStats) -> None:
    if stats_a.n != stats_b.n:
        raise ValueError(f"paired test: the systems have {stats_a.n} and {stats_b.n} segments")


def paired_bootstrap(
    metric: ResamplableMetric,
    stats_a: SegmentStats,
    stats_b: SegmentStats,
    n_samples: int = 1000,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
) -> PairedResult:
    """Paired bootstrap test: both systems resampled with the same indices."""
    _check_pair(stats_a, stats_b)
    score_a = metric.aggregate(stats_a)[0]
    score_b = metric.aggregate(stats_b)[0]
    observed = score_b - score_a
    deltas = np.empty(n_samples)
    for start, indices in _resample_indices(np.random.default_rng(seed), stats_a.n, n_samples):
        deltas[start : start + len(indices)] = metric.resampled_scores(stats_b, indices) - metric.resampled_scores(
            stats_a, indices
        )
    centred = np.abs(deltas - deltas.mean())
    extreme = int(np.sum(centred >= abs(observed) - 1e-9))
    return PairedResult(
        method="paired_bootstrap",
        metric=metric.name,
        score_a=score_a,
        score_b=score_b,
        delta=observed,
        p_value=(extreme + 1) / (n_samples + 1),
        samples=n_samples,
        seed=seed,
        delta_ci=percentile_interval(deltas, confidence),
    )


def approximate_randomization(
    metric: ResamplableMetric,
    stats_a: SegmentStats,
    stats_b: SegmentStats,
    n_trials: int = 10_000,
    seed: int = DEFAULT_SEED,
) -> PairedResult:
    """Approximate randomisation test: swap the systems' segment statistics with probability 1/2."""
    _check_pair(stats_a, stats_b)
    if n_trials < 1:
        raise ValueError(f"approximate randomization: trials must be >= 1, got {n_trials}")
    n = stats_a.n
    both = stats_a.concat(stats_b)  # row i: system A on segment i; row n + i: system B on segment i
    identity = np.arange(n)
    observed_pair = metric.resampled_scores(both, np.stack([identity, identity + n]))
    score_a, score_b = metric.aggregate(stats_a)[0], metric.aggregate(stats_b)[0]
    observed = float(observed_pair[1] - observed_pair[0])
    rng = np.random.default_rng(seed)
    extreme = 0
    step = _chunk_rows(2 * n)
    for start in range(0, n_trials, step):
        rows = min(step, n_trials - start)
        swap = rng.random((rows, n)) < 0.5
        idx_a = np.where(swap, identity + n, identity)
        idx_b = np.where(swap, identity, identity + n)
        deltas = metric.resampled_scores(both, idx_b) - metric.resampled_scores(both, idx_a)
        extreme += int(np.sum(np.abs(deltas) >= abs(observed) - 1e-9))
    return PairedResult(
        method="approximate_randomization",
        metric=metric.name,
        score_a=score_a,
        score_b=score_b,
        delta=score_b - score_a,
        p_value=(extreme + 1) / (n_trials + 1),
        samples=n_trials,
        seed=seed,
    )
