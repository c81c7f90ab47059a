"""Resampling methods graded on many hidden runs: percentile bootstrap CIs and permutation p-values
with 1,000 resamples each earn full credit on at least 95% of runs on every field they answer,
while the classic mistakes (a 90% interval labelled 95%, a one-sided p-value) still lose it.

The runs are the assignment's own hidden runs (`clear_cut_run`) for 10 secrets, 30 runs (CI time). The
resampling is exact but vectorised through sufficient statistics, so it stays cheap: resampling n
users of whom k have a non-baseline value (a purchase, a pre-period purchase) is the same as
drawing how many of the k are drawn (binomial with replacement, hypergeometric for a
permutation) and then which. The reference values come from graders.abtest.stats (checked against
statsmodels and scipy in tests/test_abstats.py); the tolerances are read from assignment.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import stats

from graders.abtest.grader import AbAnswerGrader
from graders.abtest.reference import Bounds, PValue
from graders.abtest.scoring import compare
from graders.abtest.stats import cuped, two_proportion_test, welch_test
from tests.abtest_runs import generate

ASSIGNMENT = Path(__file__).resolve().parents[1] / "assignments" / "abtest"
B = 1000
SECRETS = [2**100 + 7919 * i for i in range(10)]  # arbitrary distinct secrets, each 101 bits
INTERVALS = ("conversion.ci_abs", "conversion.ci_rel", "revenue.ci_abs", "revenue.ci_rel",
             "revenue_cuped.ci_abs")
P_VALUES = ("conversion.p_value", "revenue.p_value", "revenue_cuped.p_value")


def tolerances() -> dict[str, AbAnswerGrader.Args]:
    raw = yaml.safe_load((ASSIGNMENT / "assignment.yaml").read_text())
    return {g["args"]["field"].removeprefix("analysis."): AbAnswerGrader.Args(**g["args"])
            for g in raw["graders"] if g["grader"] == "ab_answer"}


@dataclass(frozen=True)
class Arm:
    n: int
    values: np.ndarray  # the users whose value differs from `base`
    base: float  # the value every other user has

    @property
    def mean(self) -> float:
        return (self.values.sum() + self.base * (self.n - self.values.size)) / self.n


def arm(y: np.ndarray) -> Arm:
    values, counts = np.unique(y, return_counts=True)
    mode = float(values[counts.argmax()])  # 0 for conversion and revenue, theta x mean(x) for CUPED
    return Arm(y.size, y[y != mode], mode)


def bootstrap_means(rng: np.random.Generator, a: Arm) -> np.ndarray:
    """B means of n users drawn with replacement from the arm."""
    drawn = rng.binomial(a.n, a.values.size / a.n, B)
    if np.all(a.values == a.values[0]):  # a 0/1 metric: the count drawn is all there is
        sums = drawn * a.values[0]
    else:
        picks = a.values[rng.integers(0, a.values.size, int(drawn.sum()))]
        sums = np.add.reduceat(picks, np.concatenate([[0], np.cumsum(drawn)[:-1]]))
    return (sums + a.base * (a.n - drawn)) / a.n


def percentile(x: np.ndarray) -> list[float]:
    return [float(v) for v in np.percentile(x, [2.5, 97.5])]


def permutation_p(rng: np.random.Generator, control: Arm, treatment: Arm) -> float:
    """Two-sided permutation p-value of the difference in means, (1 + hits) / (B + 1)."""
    assert control.base == treatment.base  # noqa: S101 - the same baseline value in both arms
    pool, n, n_t = np.concatenate([control.values, treatment.values]), control.n + treatment.n, treatment.n
    total = pool.sum() + control.base * (n - pool.size)
    observed = treatment.mean - control.mean
    drawn = rng.hypergeometric(pool.size, n - pool.size, n_t, B)
    if np.all(pool == pool[0]):  # a 0/1 metric: the count drawn is all there is
        sums = drawn * pool[0]
    else:
        sums = np.array([pool[rng.choice(pool.size, size=h, replace=False, shuffle=False)].sum()
                         for h in drawn])
    t_sums = sums + control.base * (n_t - drawn)
    diffs = t_sums / n_t - (total - t_sums) / (n - n_t)
    hits = int((np.abs(diffs) >= abs(observed) - 1e-12).sum())
    return (1 + hits) / (B + 1)


def answers_and_reference(seed: int, run: generate.Experiment) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng([seed, 99])
    t = run.variant == "treatment"
    conv, y, x = run.converted.astype(float), run.revenue, run.pre_metric
    adjusted = cuped(y, x, t.astype(int))
    theta = adjusted.theta
    y_adj = y - theta * (x - x.mean())
    prop = two_proportion_test(int(conv[~t].sum()), int((~t).sum()), int(conv[t].sum()), int(t.sum()))
    welch = welch_test(y[~t], y[t])
    ref = {"conversion.ci_abs": prop.ci, "conversion.ci_rel": prop.relative_ci,
           "conversion.p_value": prop.p_value, "revenue.ci_abs": welch.ci,
           "revenue.ci_rel": welch.relative_ci, "revenue.p_value": welch.p_value,
           "revenue_cuped.ci_abs": adjusted.adjusted.ci, "revenue_cuped.p_value": adjusted.adjusted.p_value}
    good: dict[str, Any] = {}
    z90 = stats.norm.ppf(0.95)
    mistakes: dict[str, Any] = {}
    for name, values in (("conversion", conv), ("revenue", y), ("revenue_cuped", y_adj)):
        c, tr = arm(values[~t]), arm(values[t])
        mc, mt = bootstrap_means(rng, c), bootstrap_means(rng, tr)
        good[f"{name}.ci_abs"] = percentile(mt - mc)
        if name != "revenue_cuped":
            good[f"{name}.ci_rel"] = percentile(mt / mc - 1)
        good[f"{name}.p_value"] = permutation_p(rng, c, tr)
        one_sided = ref[f"{name}.p_value"] / 2 if tr.mean > c.mean else 1 - ref[f"{name}.p_value"] / 2
        mistakes[f"{name}.p_value"] = one_sided
        se = np.sqrt(values[~t].var(ddof=1) / c.n + values[t].var(ddof=1) / tr.n)
        diff = tr.mean - c.mean
        mistakes[f"{name}.ci_abs"] = [diff - z90 * se, diff + z90 * se]  # "95%" with z = 1.645
    return {"good": good, "mistakes": mistakes, "ref": ref}


@pytest.fixture(scope="module")
def graded() -> dict[str, dict[str, list[float]]]:
    """Per answer set and field, the score on each of the 30 runs."""
    tol = tolerances()
    scores: dict[str, dict[str, list[float]]] = {"good": {}, "mistakes": {}}
    for secret in SECRETS:
        for name in generate.RUNS:
            seed, run = generate.clear_cut_run(secret, name)
            out = answers_and_reference(seed, run)
            for field, ref in out["ref"].items():
                expected = Bounds(ref.low, ref.high) if "ci" in field else PValue(ref)
                for kind in ("good", "mistakes"):
                    if field in out[kind]:
                        got = out[kind][field]
                        scores[kind].setdefault(field, []).append(compare(got, expected, tol[field]).score)
    return scores


def full_credit(scores: list[float]) -> float:
    return sum(s == 1 for s in scores) / len(scores)


@pytest.mark.parametrize("field", INTERVALS + P_VALUES)
def test_bootstrap_and_permutation_earn_full_credit_on_95_percent_of_runs(graded, field: str) -> None:
    scores = graded["good"][field]
    assert len(scores) == 3 * len(SECRETS)
    assert full_credit(scores) >= 0.95, (field, full_credit(scores))


@pytest.mark.parametrize("field", ("conversion.ci_abs", "revenue.ci_abs", "revenue_cuped.ci_abs"))
def test_a_90_percent_interval_labelled_95_earns_nothing(graded, field: str) -> None:
    # both bounds 1 - 1.645 / 1.96 = 16% of the half-width inwards: zero from 15%
    assert max(graded["mistakes"][field]) == 0


@pytest.mark.parametrize("field", P_VALUES)
def test_a_one_sided_p_value_loses_credit(graded, field: str) -> None:
    # caught wherever a 1,000-draw test could tell p from p / 2 (reference above 0.04): the
    # no_effect runs, about one in three (the other runs' references are far below 0.04)
    assert full_credit(graded["mistakes"][field]) <= 0.75, full_credit(graded["mistakes"][field])
