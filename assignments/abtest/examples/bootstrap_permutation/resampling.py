"""Resampling helpers: a stratified percentile bootstrap and a two-sided permutation test.

Both work on a matrix with one row per user and one column per metric, so that one resample of
the users serves every metric at once.
"""

from __future__ import annotations

import numpy as np

N_BOOT = 1000
N_PERM = 1000


def bootstrap_means(values: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT) -> np.ndarray:
    """Column means of `n_boot` resamples of the rows (users), with replacement: n_boot x columns."""
    out = np.empty((n_boot, values.shape[1]))
    for b in range(n_boot):
        out[b] = values[rng.integers(0, len(values), len(values))].mean(axis=0)
    return out


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> list[float]:
    """The percentile interval of bootstrap samples."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return [float(low), float(high)]


def bootstrap_lifts(control: np.ndarray, treatment: np.ndarray, rng: np.random.Generator,
                    n_boot: int = N_BOOT) -> list[dict]:
    """Per column: absolute and relative lift with percentile CIs; each arm resampled on its own."""
    mean_c, mean_t = bootstrap_means(control, rng, n_boot), bootstrap_means(treatment, rng, n_boot)
    out = []
    for j in range(control.shape[1]):
        c, t = control[:, j].mean(), treatment[:, j].mean()
        out.append({"lift_abs": float(t - c), "lift_rel": float(t / c - 1),
                    "ci_abs": percentile_ci(mean_t[:, j] - mean_c[:, j]),
                    "ci_rel": percentile_ci(mean_t[:, j] / mean_c[:, j] - 1)})
    return out


def permutation_p_values(control: np.ndarray, treatment: np.ndarray, rng: np.random.Generator,
                         n_perm: int = N_PERM) -> list[float]:
    """Per column, the two-sided permutation p-value of the difference in means (labels shuffled)."""
    pooled = np.concatenate([control, treatment])
    n_t = len(treatment)
    total = pooled.sum(axis=0)
    observed = np.abs(treatment.mean(axis=0) - control.mean(axis=0))
    hits = np.zeros(pooled.shape[1])
    for _ in range(n_perm):
        t_sum = pooled[rng.permutation(len(pooled))[:n_t]].sum(axis=0)
        diff = t_sum / n_t - (total - t_sum) / len(control)
        hits += np.abs(diff) >= observed - 1e-12
    return [float(p) for p in (hits + 1) / (n_perm + 1)]  # counts the observed split: never 0
