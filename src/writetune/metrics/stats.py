"""Per-segment sufficient statistics, the data every metric's score and every resample is computed from.

A metric turns each segment into `SegmentStats` rows (numpy arrays whose first axis is the segment). Resampling
never revisits the text: a bootstrap resample is a set of row indices, and `counts_matrix` turns many resamples into
how often each segment was drawn, so additive statistics of all resamples are one matrix product.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SegmentStats:
    """Per-segment sufficient statistics: named numpy arrays that all have one row per segment.

    `take` resamples segments (bootstrap), `concat` stacks two systems' statistics for the same segments
    (randomisation tests pick, per segment, the row of one system or the other).
    """

    arrays: Mapping[str, np.ndarray]
    n: int
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, arr in self.arrays.items():
            if arr.shape[0] != self.n:
                raise ValueError(f"statistics array {name!r} has {arr.shape[0]} rows for {self.n} segments")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def take(self, indices: np.ndarray | Sequence[int]) -> SegmentStats:
        idx = np.asarray(indices, dtype=np.int64)
        return SegmentStats({k: v[idx] for k, v in self.arrays.items()}, len(idx), self.meta)

    def concat(self, other: SegmentStats) -> SegmentStats:
        """Rows of `self` then rows of `other` (segment i of `other` becomes row n + i)."""
        if set(self.arrays) != set(other.arrays):
            raise ValueError("cannot combine statistics of different metrics")
        out = {}
        for name, a in self.arrays.items():
            b = other.arrays[name]
            if a.shape[1:] != b.shape[1:]:
                raise ValueError(
                    f"statistics {name!r} differ in shape ({a.shape[1:]} vs {b.shape[1:]}): "
                    "were the two systems scored against the same references?"
                )
            out[name] = np.concatenate([a, b], axis=0)
        return SegmentStats(out, self.n + other.n, self.meta)


def counts_matrix(indices: np.ndarray, n: int) -> np.ndarray:
    """For resampled index rows ``indices[b]`` return how often each segment was drawn: shape (B, n), float64."""
    indices = np.atleast_2d(np.asarray(indices, dtype=np.int64))
    n_rows = indices.shape[0]
    flat = (indices + (np.arange(n_rows, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_rows * n).reshape(n_rows, n).astype(np.float64)


def resampled_mean(stats: SegmentStats, key: str, indices: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """For each resampled index row, `scale` times the mean of the per-segment statistic `key`: the resampled
    score of a metric that averages one number per segment."""
    return scale * (counts_matrix(indices, stats.n) @ stats[key].astype(np.float64)) / stats.n
