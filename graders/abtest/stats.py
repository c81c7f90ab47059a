"""Reference statistics for the A/B-test assignment, computed by the harness outside the sandbox.

The variants implemented, each checked in tests/test_abstats.py against an independent reference:

* sample size, two proportions: the normal approximation used by Evan Miller's online calculator,
  n = (z_a * sqrt(2 p1 q1) + z_b * sqrt(p1 q1 + p2 q2))^2 / delta^2 per arm, with the null
  variance taken at the baseline p1 and the alternative variance unpooled. statsmodels'
  NormalIndPower with Cohen's arcsine h is a different approximation and gives up to ~6% more.
* sample size, continuous: n = 2 sigma^2 (z_a + z_b)^2 / delta^2 per arm (two-sample z
  approximation; Kohavi's rule of thumb 16 sigma^2 / delta^2 rounds the constant 15.7 up).
* two-proportion test: z and p with the pooled standard error (as statsmodels proportions_ztest),
  the CI of the difference with the unpooled (Wald) standard error.
* relative lift CI (both tests): delta method on the ratio b / a,
  Var(b/a) ~ Var(b) / a^2 + b^2 Var(a) / a^4, then lift = ratio - 1 +- z * se.
* Welch t-test with the Welch-Satterthwaite degrees of freedom; SRM: chi-square goodness of fit;
  CUPED: theta = cov(x, y) / var(x) on the pooled data, then Welch on y - theta (x - mean x).

Invalid inputs raise ValueError: these functions see the harness's own data and specs, never
candidate output, so a bad input is a harness bug or a bad spec.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval."""

    low: float
    high: float


@dataclass(frozen=True)
class ProportionResult:
    """Two-proportion comparison of arm b against arm a (control)."""

    rate_a: float
    rate_b: float
    diff: float  # rate_b - rate_a
    ci: Interval  # unpooled Wald CI of diff
    z: float  # pooled-SE z statistic
    p_value: float  # two-sided
    relative_lift: float  # rate_b / rate_a - 1
    relative_ci: Interval  # delta method


@dataclass(frozen=True)
class MeanResult:
    """Welch comparison of the mean of arm b against arm a (control)."""

    mean_a: float
    mean_b: float
    diff: float  # mean_b - mean_a
    ci: Interval  # Welch CI of diff
    t: float
    df: float  # Welch-Satterthwaite
    p_value: float  # two-sided
    relative_lift: float  # mean_b / mean_a - 1
    relative_ci: Interval  # delta method, normal quantile


@dataclass(frozen=True)
class SrmResult:
    """Chi-square goodness-of-fit test of the arm counts against the planned split."""

    chi2: float
    p_value: float
    flagged: bool  # p_value < threshold
    expected: tuple[float, ...]


@dataclass(frozen=True)
class CupedResult:
    """CUPED-adjusted comparison: treatment (1) against control (0)."""

    theta: float
    adjusted: MeanResult  # Welch on the adjusted metric
    variance_reduction: float  # 1 - var(adjusted) / var(y), pooled


def _check_probability(name: str, value: float) -> None:
    if not 0 < value < 1:  # also refuses NaN
        raise ValueError(f"{name} must lie in (0, 1), not {value}")


def _z_quantiles(alpha: float, power: float, two_sided: bool) -> tuple[float, float]:
    _check_probability("alpha", alpha)
    _check_probability("power", power)
    z_alpha = stats.norm.ppf(1 - alpha / 2 if two_sided else 1 - alpha)
    return float(z_alpha), float(stats.norm.ppf(power))


def sample_size_two_proportions(
    *,
    baseline: float,
    mde: float,
    relative: bool,
    alpha: float = 0.05,
    power: float = 0.8,
    two_sided: bool = True,
) -> int:
    """Users per arm to detect baseline -> baseline + delta (Evan Miller's formula), rounded up.

    delta is `mde` itself, or `baseline * mde` when `relative`. Raises ValueError unless the
    baseline, alpha and power lie in (0, 1), mde is non-zero and the treated rate lies in (0, 1).
    """
    _check_probability("baseline", baseline)
    if mde == 0 or math.isnan(mde):
        raise ValueError("the minimum detectable effect must be non-zero")
    delta = baseline * mde if relative else mde
    treated = baseline + delta
    _check_probability("baseline + effect", treated)
    z_alpha, z_beta = _z_quantiles(alpha, power, two_sided)
    sd_null = math.sqrt(2 * baseline * (1 - baseline))
    sd_alt = math.sqrt(baseline * (1 - baseline) + treated * (1 - treated))
    return math.ceil((z_alpha * sd_null + z_beta * sd_alt) ** 2 / delta**2)


def sample_size_continuous(
    *, std: float, mde: float, alpha: float = 0.05, power: float = 0.8, two_sided: bool = True
) -> int:
    """Users per arm for a two-sample comparison of means, equal allocation, rounded up.

    n = 2 std^2 (z_alpha + z_beta)^2 / mde^2 (normal approximation; a t-based calculation adds
    about one user). Raises ValueError if std <= 0, mde == 0, or alpha/power lie outside (0, 1).
    """
    if not std > 0 or math.isinf(std):
        raise ValueError(f"the standard deviation must be positive and finite, not {std}")
    if mde == 0 or math.isnan(mde):
        raise ValueError("the minimum detectable effect must be non-zero")
    z_alpha, z_beta = _z_quantiles(alpha, power, two_sided)
    return math.ceil(2 * std**2 * (z_alpha + z_beta) ** 2 / mde**2)


def runtime_days(*, per_arm: int, arms: int, daily_traffic: float, allocation: float = 1.0) -> int:
    """Whole days until every arm has `per_arm` users, when `allocation` of the traffic enters.

    Raises ValueError if per_arm < 1, arms < 2, daily_traffic <= 0 or allocation not in (0, 1].
    """
    if per_arm < 1 or arms < 2:
        raise ValueError(f"need per_arm >= 1 and arms >= 2, not {per_arm} and {arms}")
    if not daily_traffic > 0 or not 0 < allocation <= 1:
        raise ValueError(f"need daily_traffic > 0 and allocation in (0, 1]: {daily_traffic}, {allocation}")
    return math.ceil(per_arm * arms / (daily_traffic * allocation))


def _ratio_lift_ci(a: float, var_a: float, b: float, var_b: float, z: float) -> tuple[float, Interval]:
    """b / a - 1 and its delta-method CI, from the two means and their sampling variances."""
    if a == 0:
        return math.nan, Interval(math.nan, math.nan)
    ratio = b / a
    se = math.sqrt(var_b / a**2 + b**2 * var_a / a**4)
    return ratio - 1, Interval(ratio - 1 - z * se, ratio - 1 + z * se)


def _check_alpha(alpha: float) -> float:
    _check_probability("alpha", alpha)
    return float(stats.norm.ppf(1 - alpha / 2))


def two_proportion_test(
    conv_a: int, n_a: int, conv_b: int, n_b: int, *, alpha: float = 0.05
) -> ProportionResult:
    """Two-sided two-proportion z-test of arm b against arm a, with Wald and delta-method CIs.

    Raises ValueError if a count is negative, an arm is empty, conversions exceed the arm size,
    or alpha lies outside (0, 1).
    """
    if min(conv_a, conv_b) < 0 or n_a < 1 or n_b < 1 or conv_a > n_a or conv_b > n_b:
        raise ValueError(f"invalid counts: {conv_a}/{n_a} and {conv_b}/{n_b}")
    z_crit = _check_alpha(alpha)
    p_a, p_b = conv_a / n_a, conv_b / n_b
    pooled = (conv_a + conv_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    diff = p_b - p_a
    if se_pooled > 0:
        z = diff / se_pooled
        p_value = float(2 * stats.norm.sf(abs(z)))
    else:  # both arms all-0 or all-1: no evidence of a difference
        z, p_value = 0.0, 1.0
    var_a, var_b = p_a * (1 - p_a) / n_a, p_b * (1 - p_b) / n_b
    se = math.sqrt(var_a + var_b)
    lift, lift_ci = _ratio_lift_ci(p_a, var_a, p_b, var_b, z_crit)
    return ProportionResult(
        rate_a=p_a, rate_b=p_b, diff=diff, ci=Interval(diff - z_crit * se, diff + z_crit * se),
        z=z, p_value=p_value, relative_lift=lift, relative_ci=lift_ci,
    )


def _as_sample(name: str, values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size < 2 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a 1-D array of at least 2 finite values")
    return arr


def welch_test(a: np.ndarray, b: np.ndarray, *, alpha: float = 0.05) -> MeanResult:
    """Welch's two-sided t-test of mean(b) - mean(a), with its t CI and a delta-method relative CI.

    Raises ValueError if a sample is not 1-D, has fewer than 2 values or a non-finite value, if
    both samples are constant, or if alpha lies outside (0, 1).
    """
    a, b = _as_sample("a", a), _as_sample("b", b)
    z_crit = _check_alpha(alpha)
    var_a, var_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(var_a + var_b)
    if se == 0:
        raise ValueError("both samples are constant: the Welch test is undefined")
    df = (var_a + var_b) ** 2 / (var_a**2 / (a.size - 1) + var_b**2 / (b.size - 1))
    mean_a, mean_b = float(a.mean()), float(b.mean())
    diff = mean_b - mean_a
    t = diff / se
    t_crit = float(stats.t.ppf(1 - alpha / 2, df))
    lift, lift_ci = _ratio_lift_ci(mean_a, var_a, mean_b, var_b, z_crit)
    return MeanResult(
        mean_a=mean_a, mean_b=mean_b, diff=diff,
        ci=Interval(diff - t_crit * se, diff + t_crit * se), t=t, df=float(df),
        p_value=float(2 * stats.t.sf(abs(t), df)), relative_lift=lift, relative_ci=lift_ci,
    )


def srm_test(
    counts: Sequence[int], expected_ratios: Sequence[float], *, threshold: float = 0.001
) -> SrmResult:
    """Chi-square goodness-of-fit test of arm counts against the planned ratios (normalised).

    Flagged iff p < threshold. Raises ValueError if fewer than 2 arms, the lengths differ, a count
    is negative, the counts sum to 0, a ratio is not positive, or threshold lies outside (0, 1).
    """
    observed = np.asarray(counts, dtype=float)
    ratios = np.asarray(expected_ratios, dtype=float)
    if observed.ndim != 1 or observed.size < 2 or observed.shape != ratios.shape:
        raise ValueError("need one count and one ratio per arm, for at least 2 arms")
    if np.any(observed < 0) or observed.sum() == 0 or not np.all(ratios > 0):
        raise ValueError("counts must be non-negative with a positive total, ratios positive")
    _check_probability("threshold", threshold)
    expected = observed.sum() * ratios / ratios.sum()
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    p_value = float(stats.chi2.sf(chi2, observed.size - 1))
    return SrmResult(chi2=chi2, p_value=p_value, flagged=p_value < threshold,
                     expected=tuple(float(e) for e in expected))


def cuped(y: np.ndarray, x: np.ndarray, treatment: np.ndarray, *, alpha: float = 0.05) -> CupedResult:
    """CUPED: adjust y by its pre-period covariate x, then Welch-compare treatment 1 against 0.

    theta = cov(x, y) / var(x) on the pooled data (the OLS slope of y on x). Raises ValueError if
    the arrays differ in length, treatment is not 0/1 with at least 2 users per arm, x is
    constant, or a value is not finite.
    """
    y, x = _as_sample("y", y), _as_sample("x", x)
    arm = np.asarray(treatment)
    if not (y.size == x.size == arm.size) or not np.all(np.isin(arm, (0, 1))):
        raise ValueError("y, x and treatment must have one entry per user, treatment in {0, 1}")
    is_b = arm.astype(bool)
    if min(is_b.sum(), (~is_b).sum()) < 2:
        raise ValueError("each arm needs at least 2 users")
    var_x = x.var(ddof=1)
    if var_x == 0:
        raise ValueError("the covariate is constant: theta is undefined")
    theta = float(np.cov(x, y, ddof=1)[0, 1] / var_x)
    adjusted = y - theta * (x - x.mean())
    var_y = y.var(ddof=1)
    reduction = 1 - adjusted.var(ddof=1) / var_y if var_y > 0 else 0.0
    return CupedResult(theta=theta, adjusted=welch_test(adjusted[~is_b], adjusted[is_b], alpha=alpha),
                       variance_reduction=float(reduction))
