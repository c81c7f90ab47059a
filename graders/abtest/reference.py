"""Reference answers of the A/B-test assignment for one run, from the files that run's submission saw.

Computed outside the sandbox from `experiment.csv` and `design.json` (never from the hidden truth),
with graders/abtest/stats.py and, where a second standard formula is accepted, statsmodels:

* design (inputs from design.json; delta = mde_relative x baseline): the sample size per arm is
  accepted from any standard formula, since they differ by 3 to 6% and each is sound:
  conversion: Evan Miller's, the pooled-variance normal formula
  (z_a sqrt(2 pbar qbar) + z_b sqrt(p1 q1 + p2 q2))^2 / delta^2 with pbar = (p1 + p2) / 2, the
  unpooled (z_a + z_b)^2 (p1 q1 + p2 q2) / delta^2, and statsmodels NormalIndPower on Cohen's h;
  revenue (sigma = revenue_std): the normal formula 2 sigma^2 (z_a + z_b)^2 / delta^2 and
  statsmodels TTestIndPower. All round up. Duration: ceil(arms x n / (daily traffic x allocation))
  for each accepted n.
* analysis (95% CIs): conversion by the two-proportion z-test (Wald CI, delta-method relative
  CI), revenue per user by Welch's t-test, CUPED on pre_metric (its adjusted Welch comparison).
* SRM: chi-square goodness of fit of the two arm counts against design.json's `planned_split`
  (each arm's planned share), detected when p < 0.001.
* decision, the rule written in the candidate brief:
  if the SRM check fires, "inconclusive" and "dont_ship" are both accepted; otherwise "ship" when
  the conversion ci_abs lies entirely above 0 and the CUPED revenue ci_abs does not lie entirely
  below 0 (its upper bound >= 0); "dont_ship" when the conversion ci_abs lies entirely below 0;
  else "inconclusive".

Raises HarnessError when the run's files are missing or malformed: they are the harness's data.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import proportion_effectsize

from graders.abtest.stats import (
    cuped,
    runtime_days,
    sample_size_continuous,
    sample_size_two_proportions,
    srm_test,
    two_proportion_test,
    welch_test,
)
from harness.core import HarnessError

Kind = Literal["number", "interval", "p_value", "exact", "choice"]
ALPHA = 0.05  # the readout's level; design.json's alpha and power are for the design questions only
SRM_THRESHOLD = 0.001
DECISIONS = ("ship", "dont_ship", "inconclusive")
DESIGN_KEYS = ("baseline_conversion", "baseline_revenue_per_user", "revenue_std", "mde_relative", "alpha",
               "power", "daily_traffic_eligible", "arms", "allocation", "two_sided")


@dataclass(frozen=True)
class Numbers:
    """Accepted values of a number, each labelled with the formula that gives it."""

    kind: ClassVar[Kind] = "number"
    values: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Bounds:
    kind: ClassVar[Kind] = "interval"
    low: float
    high: float


@dataclass(frozen=True)
class PValue:
    kind: ClassVar[Kind] = "p_value"
    value: float


@dataclass(frozen=True)
class Exact:
    kind: ClassVar[Kind] = "exact"
    value: bool


@dataclass(frozen=True)
class Choice:
    kind: ClassVar[Kind] = "choice"
    values: frozenset[str]


Expected = Numbers | Bounds | PValue | Exact | Choice

_TEST_KINDS: tuple[tuple[str, Kind], ...] = (("lift_abs", "number"), ("lift_rel", "number"),
                                             ("ci_abs", "interval"), ("ci_rel", "interval"),
                                             ("p_value", "p_value"))
_TESTS = {f"analysis.{m}.{k}": kind for m in ("conversion", "revenue") for k, kind in _TEST_KINDS}
FIELDS: Mapping[str, Kind] = MappingProxyType({
    **{f"design.{m}.{k}": "number" for m in ("conversion", "revenue")
       for k in ("sample_size_per_arm", "duration_days")},
    **_TESTS,
    "analysis.revenue_cuped.lift_abs": "number", "analysis.revenue_cuped.ci_abs": "interval",
    "analysis.revenue_cuped.p_value": "p_value",
    "srm.p_value": "p_value", "srm.detected": "exact", "decision": "choice",
})


@dataclass(frozen=True)
class _Design:
    baseline_conversion: float
    baseline_revenue_per_user: float
    revenue_std: float
    mde_relative: float
    alpha: float
    power: float
    daily_traffic_eligible: float
    arms: int
    allocation: float
    two_sided: bool


def _read_design(path: Path) -> _Design:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        values = {k: raw[k] for k in DESIGN_KEYS}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HarnessError(f"{path}: not a design file with {', '.join(DESIGN_KEYS)} ({exc})") from None
    if not isinstance(values["two_sided"], bool) or not all(
            isinstance(v, int | float) and math.isfinite(v) for v in values.values()):
        raise HarnessError(f"{path}: design inputs must be finite numbers and two_sided a boolean")
    return _Design(**values)


def _read_split(path: Path) -> tuple[float, float]:
    """design.json's planned (control, treatment) shares of the experiment's users."""
    try:
        split = json.loads(path.read_text(encoding="utf-8"))["planned_split"]
        shares = (split["control"], split["treatment"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HarnessError(f"{path}: no planned_split with control and treatment shares ({exc})") from None
    if (set(split) != {"control", "treatment"} or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 1 for v in shares)
            or abs(sum(shares) - 1) > 1e-6):
        raise HarnessError(f"{path}: planned_split must give control and treatment shares in (0, 1) "
                           "summing to 1")
    return float(shares[0]), float(shares[1])


def _z(d: _Design) -> tuple[float, float]:
    z_alpha = stats.norm.ppf(1 - d.alpha / 2 if d.two_sided else 1 - d.alpha)
    return float(z_alpha), float(stats.norm.ppf(d.power))


def _merge(pairs: list[tuple[str, int]]) -> tuple[tuple[str, float], ...]:
    """Join the labels of formulas that agree, keeping the first formula's order."""
    merged: dict[int, list[str]] = {}
    for label, value in pairs:
        merged.setdefault(value, []).append(label)
    return tuple((" = ".join(labels), float(value)) for value, labels in merged.items())


def conversion_sizes(d: _Design) -> list[tuple[str, int]]:
    """Users per arm for the conversion design, by each accepted formula."""
    p1 = d.baseline_conversion
    delta = p1 * d.mde_relative
    p2 = p1 + delta
    z_a, z_b = _z(d)
    pbar = (p1 + p2) / 2
    var_alt = p1 * (1 - p1) + p2 * (1 - p2)
    alternative = "two-sided" if d.two_sided else "larger"
    cohen = NormalIndPower().solve_power(effect_size=abs(float(proportion_effectsize(p2, p1))),
                                         alpha=d.alpha, power=d.power, ratio=1.0, alternative=alternative)
    return [
        ("Evan Miller", sample_size_two_proportions(baseline=p1, mde=d.mde_relative, relative=True,
                                                    alpha=d.alpha, power=d.power, two_sided=d.two_sided)),
        ("pooled", math.ceil((z_a * math.sqrt(2 * pbar * (1 - pbar)) + z_b * math.sqrt(var_alt)) ** 2
                             / delta**2)),
        ("unpooled", math.ceil((z_a + z_b) ** 2 * var_alt / delta**2)),
        ("Cohen's h", math.ceil(float(cohen))),
    ]


def revenue_sizes(d: _Design) -> list[tuple[str, int]]:
    """Users per arm for the revenue design, by each accepted formula."""
    delta = d.mde_relative * d.baseline_revenue_per_user
    t_based = TTestIndPower().solve_power(effect_size=delta / d.revenue_std, alpha=d.alpha, power=d.power,
                                          ratio=1.0, alternative="two-sided" if d.two_sided else "larger")
    return [
        ("normal", sample_size_continuous(std=d.revenue_std, mde=delta, alpha=d.alpha, power=d.power,
                                          two_sided=d.two_sided)),
        ("t-test", math.ceil(float(t_based))),
    ]


def design_reference(inputs: dict[str, Any]) -> dict[str, Expected]:
    """The design answers (sample sizes, durations) for design.json's values; TypeError if keys differ."""
    return _design_fields(_Design(**inputs))


def _design_fields(d: _Design) -> dict[str, Expected]:
    out: dict[str, Expected] = {}
    for metric, sizes in (("conversion", conversion_sizes(d)), ("revenue", revenue_sizes(d))):
        days = [(label, runtime_days(per_arm=n, arms=d.arms, daily_traffic=d.daily_traffic_eligible,
                                     allocation=d.allocation)) for label, n in sizes]
        out[f"design.{metric}.sample_size_per_arm"] = Numbers(_merge(sizes))
        out[f"design.{metric}.duration_days"] = Numbers(_merge(days))
    return out


def _read_log(path: Path) -> dict[str, np.ndarray]:
    try:
        frame = pd.read_csv(path, usecols=["variant", "pre_metric", "converted", "revenue"],
                            dtype={"variant": str, "pre_metric": float, "converted": float, "revenue": float})
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path}: not an experiment log ({exc})") from None
    variant = frame["variant"].to_numpy()
    log = {"treated": variant == "treatment", "pre": frame["pre_metric"].to_numpy(),
           "converted": frame["converted"].to_numpy(), "revenue": frame["revenue"].to_numpy()}
    if (not np.all((variant == "control") | log["treated"]) or not np.all(np.isin(log["converted"], (0, 1)))
            or not np.all(np.isfinite(log["pre"])) or not np.all(np.isfinite(log["revenue"]))):
        raise HarnessError(f"{path}: variant must be control/treatment, converted 0/1, numbers finite")
    return log


def decide(srm_flagged: bool, conversion_ci: tuple[float, float],
           cuped_ci: tuple[float, float]) -> frozenset[str]:
    """The accepted decisions under the brief's rule (see the module docstring)."""
    if srm_flagged:
        return frozenset({"inconclusive", "dont_ship"})
    if conversion_ci[0] > 0 and cuped_ci[1] >= 0:
        return frozenset({"ship"})
    if conversion_ci[1] < 0:
        return frozenset({"dont_ship"})
    return frozenset({"inconclusive"})


def _analysis_fields(log: dict[str, np.ndarray], split: tuple[float, float]) -> dict[str, Expected]:
    t, conv, rev = log["treated"], log["converted"], log["revenue"]
    prop = two_proportion_test(int(conv[~t].sum()), int((~t).sum()), int(conv[t].sum()), int(t.sum()),
                               alpha=ALPHA)
    welch = welch_test(rev[~t], rev[t], alpha=ALPHA)
    adjusted = cuped(rev, log["pre"], t.astype(int), alpha=ALPHA).adjusted
    srm = srm_test([int((~t).sum()), int(t.sum())], list(split), threshold=SRM_THRESHOLD)
    out: dict[str, Expected] = {}
    for metric, lift_abs, lift_rel, ci, ci_rel, p in (
            ("conversion", prop.diff, prop.relative_lift, prop.ci, prop.relative_ci, prop.p_value),
            ("revenue", welch.diff, welch.relative_lift, welch.ci, welch.relative_ci, welch.p_value)):
        out.update({f"analysis.{metric}.lift_abs": Numbers((("reference", lift_abs),)),
                    f"analysis.{metric}.lift_rel": Numbers((("reference", lift_rel),)),
                    f"analysis.{metric}.ci_abs": Bounds(ci.low, ci.high),
                    f"analysis.{metric}.ci_rel": Bounds(ci_rel.low, ci_rel.high),
                    f"analysis.{metric}.p_value": PValue(p)})
    out.update({"analysis.revenue_cuped.lift_abs": Numbers((("reference", adjusted.diff),)),
                "analysis.revenue_cuped.ci_abs": Bounds(adjusted.ci.low, adjusted.ci.high),
                "analysis.revenue_cuped.p_value": PValue(adjusted.p_value),
                "srm.p_value": PValue(srm.p_value), "srm.detected": Exact(srm.flagged),
                "decision": Choice(decide(srm.flagged, (prop.ci.low, prop.ci.high),
                                          (adjusted.ci.low, adjusted.ci.high)))})
    return out


@functools.lru_cache(maxsize=8)
def _cached(run_dir: str, stamp: tuple[int, ...]) -> Mapping[str, Expected]:
    folder = Path(run_dir)
    return MappingProxyType({**_design_fields(_read_design(folder / "design.json")),
                             **_analysis_fields(_read_log(folder / "experiment.csv"),
                                                _read_split(folder / "design.json"))})


def reference(run_dir: Path) -> Mapping[str, Expected]:
    """Every field's accepted answer for the run whose files are in `run_dir` (see module docstring).

    Cached by the files' paths, modification times and sizes. Raises HarnessError if a file is
    missing or malformed.
    """
    stamp: list[int] = []
    for name in ("design.json", "experiment.csv"):
        try:
            st = (run_dir / name).stat()
        except OSError:
            raise HarnessError(f"{run_dir}: the run's {name} is missing") from None
        stamp += [st.st_mtime_ns, st.st_size]
    return _cached(str(run_dir.resolve()), tuple(stamp))
