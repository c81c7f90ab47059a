"""Percentile bootstrap confidence intervals over queries (seeded, so results reproduce)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHUNK_CELLS = 4_000_000  # resampled indices held in memory at once (32 MB of int64)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def bootstrap_means(values: np.ndarray, *, resamples: int, seed: int) -> np.ndarray:
    """Means of `resamples` samples of `values` drawn with replacement. Raises ValueError if empty."""
    values = np.asarray(values, dtype=float)
    n = values.size
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // n)
    chunks = []
    for start in range(0, resamples, rows):
        size = min(rows, resamples - start)
        chunks.append(values[rng.integers(0, n, size=(size, n))].mean(axis=1))
    return np.concatenate(chunks)


def bootstrap_ci(values: np.ndarray, *, resamples: int, seed: int, level: float = 0.95) -> Interval:
    """Percentile bootstrap interval of the mean of `values` (one value per query)."""
    means = bootstrap_means(values, resamples=resamples, seed=seed)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(low), float(high))


def paired_bootstrap_ci(a: np.ndarray, b: np.ndarray, *, resamples: int, seed: int,
                        level: float = 0.95) -> Interval:
    """Interval of mean(a) - mean(b) when both are measured on the same queries.

    Resampling queries and keeping each query's pair together is the same as bootstrapping the
    per-query differences. Raises ValueError if the arrays differ in length or are empty.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} and {b.shape}")
    return bootstrap_ci(a - b, resamples=resamples, seed=seed, level=level)
