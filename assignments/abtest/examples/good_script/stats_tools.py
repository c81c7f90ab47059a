"""Statistics for the checkout experiment, built on statsmodels and scipy."""

import math

import numpy as np
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

ALPHA = 0.05  # the analysis is always at 95%, two-sided


def users_per_arm_proportions(baseline: float, mde_relative: float, alpha: float, power: float,
                              two_sided: bool) -> int:
    """Evan Miller's normal approximation: null variance at the baseline, alternative unpooled."""
    treated = baseline * (1 + mde_relative)
    z_alpha = stats.norm.ppf(1 - alpha / 2 if two_sided else 1 - alpha)
    z_power = stats.norm.ppf(power)
    spread = (z_alpha * math.sqrt(2 * baseline * (1 - baseline))
              + z_power * math.sqrt(baseline * (1 - baseline) + treated * (1 - treated)))
    return math.ceil(spread**2 / (treated - baseline) ** 2)


def users_per_arm_means(delta: float, sd: float, alpha: float, power: float, two_sided: bool) -> int:
    """Two-sample z approximation, equal arms."""
    n = NormalIndPower().solve_power(effect_size=delta / sd, alpha=alpha, power=power, ratio=1.0,
                                     alternative="two-sided" if two_sided else "larger")
    return math.ceil(n)


def ratio_ci(mean_c: float, var_c: float, mean_t: float, var_t: float) -> tuple[float, list[float]]:
    """Relative lift t/c - 1 and its delta-method CI (var_* are variances of the means)."""
    ratio = mean_t / mean_c
    se = math.sqrt(var_t / mean_c**2 + mean_t**2 * var_c / mean_c**4)
    z = stats.norm.ppf(1 - ALPHA / 2)
    return ratio - 1, [ratio - 1 - z * se, ratio - 1 + z * se]


def compare_proportions(conv_c: int, n_c: int, conv_t: int, n_t: int) -> dict:
    """Pooled two-proportion z-test, Wald CI of the difference, delta-method relative CI."""
    _, p_value = proportions_ztest([conv_t, conv_c], [n_t, n_c])
    low, high = confint_proportions_2indep(conv_t, n_t, conv_c, n_c, method="wald", compare="diff",
                                           alpha=ALPHA)
    p_c, p_t = conv_c / n_c, conv_t / n_t
    lift_rel, ci_rel = ratio_ci(p_c, p_c * (1 - p_c) / n_c, p_t, p_t * (1 - p_t) / n_t)
    return {"lift_abs": p_t - p_c, "lift_rel": lift_rel, "ci_abs": [low, high], "ci_rel": ci_rel,
            "p_value": p_value}


def compare_means(control: np.ndarray, treatment: np.ndarray) -> dict:
    """Welch's t-test of treatment minus control, its t CI and the delta-method relative CI."""
    means = CompareMeans(DescrStatsW(treatment), DescrStatsW(control))
    _, p_value, _ = means.ttest_ind(usevar="unequal")
    low, high = means.tconfint_diff(alpha=ALPHA, usevar="unequal")
    lift_rel, ci_rel = ratio_ci(control.mean(), control.var(ddof=1) / control.size,
                                treatment.mean(), treatment.var(ddof=1) / treatment.size)
    return {"lift_abs": treatment.mean() - control.mean(), "lift_rel": lift_rel, "ci_abs": [low, high],
            "ci_rel": ci_rel, "p_value": p_value}


def cuped(y: np.ndarray, pre: np.ndarray, treated: np.ndarray) -> dict:
    """CUPED with theta = cov(pre, y) / var(pre) on both arms together, then Welch."""
    theta = np.cov(pre, y)[0, 1] / pre.var(ddof=1)
    adjusted = y - theta * (pre - pre.mean())
    result = compare_means(adjusted[~treated], adjusted[treated])
    return {"lift_abs": result["lift_abs"], "ci_abs": result["ci_abs"], "p_value": result["p_value"],
            "theta": theta}


def sample_ratio(n_c: int, n_t: int, planned: dict) -> dict:
    """Chi-square goodness of fit of the arm counts against the planned shares."""
    total = n_c + n_t
    expected = [total * planned["control"], total * planned["treatment"]]
    p_value = stats.chisquare([n_c, n_t], f_exp=expected).pvalue
    return {"p_value": p_value, "detected": bool(p_value < 0.001)}
