"""Synthetic checkout A/B-test data for the `abtest` assignment.

Trusted code, run by the harness on the host: `materialize(root, hidden_dir)` writes

    root/public/{experiment.csv,history.csv,design.json}       public seed, a modest true lift
    root/hidden_runs/<run>/{experiment.csv,...}                 runs `no_effect`, `clear_win`, `srm`
    root/truth/<run>/truth.json                                 true effects, for public and hidden runs

The hidden runs' seeds and effects derive from the integer in `hidden_dir/seed.txt`; when that
file is missing it is created with a fresh 128-bit random seed (mode 0600), so every install
draws its own hidden runs. The generative model is described in README.md next to this file;
numpy is the only dependency. Raises ValueError when an existing seed file does not hold one
integer, or holds one that is public or too small to stay secret
(below `harness.secret_seed.MIN_SECRET_SEED`).
"""

# No `from __future__ import annotations`: the harness may load this file without registering it
# in sys.modules, and dataclasses then cannot resolve string annotations.
import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from harness.secret_seed import secret_seed

PUBLIC_SEED = 20260302
N_USERS = 140_000  # 14 days at DAILY_USERS
DAILY_USERS = 10_000
EXPERIMENT_DAYS = 14
HISTORY_DAYS = 56
START_DATE = "2026-03-02"  # a Monday
PUBLIC_LIFT_CONV, PUBLIC_LIFT_REVENUE = 0.04, 0.05
CONCENTRATION = 0.6  # Beta(a + b): small = users differ a lot in how often they buy
USER_VALUE_SIGMA = 0.8  # log-sd of a user's typical order value
ORDER_SIGMA = 0.3  # log-sd of one order around the user's typical value
PRE_PERIODS = 4  # the pre-period is 8 weeks, four experiment-length windows
WEEKDAY_FACTOR = (1.00, 1.02, 1.00, 0.98, 0.94, 1.02, 1.04)  # Monday..Sunday
MDE_CHOICES, ALPHA_CHOICES, POWER_CHOICES = (0.05, 0.08, 0.10), (0.05, 0.01), (0.8, 0.9)
RUNS = ("no_effect", "clear_win", "srm")
CLEAR_WIN_TREATMENT_SHARE = 0.4  # a cautious 60/40 rollout, planned (no mismatch)
SRM_RULE = "treatment users who did not convert are lost from the log (a logging bug)"


@dataclass(frozen=True)
class Truth:
    """What produced one run; written only to the hidden truth folder."""

    n_assigned: int  # users assigned before any were lost
    baseline_conversion: float  # population conversion rate in control
    baseline_revenue_per_user: float  # population revenue per user in control
    true_lift_conv: float  # relative lift of the conversion rate
    true_diff_conv: float  # absolute lift of the conversion rate
    true_lift_revenue: float  # relative lift of revenue per user
    srm: float  # share of treatment users dropped
    dropped: int
    srm_rule: str
    treatment_share: float = 0.5  # the planned share of users in treatment (written to design.json)


@dataclass(frozen=True)
class Experiment:
    """One experiment log, a row per user, sorted by exposure date then user id."""

    user_id: np.ndarray  # str
    variant: np.ndarray  # "control" / "treatment"
    exposure_date: np.ndarray  # ISO date str
    pre_metric: np.ndarray  # pre-period revenue
    converted: np.ndarray  # 0/1
    revenue: np.ndarray  # 0 unless converted
    truth: Truth


@dataclass(frozen=True)
class Design:
    """Inputs of the design questions (all visible to the candidate)."""

    baseline_conversion: float
    baseline_revenue_per_user: float
    revenue_std: float  # per user, over one experiment-length window
    mde_relative: float
    alpha: float
    power: float
    daily_traffic_eligible: int
    arms: int = 2
    allocation: float = 1.0
    two_sided: bool = True


@dataclass(frozen=True)
class History:
    """Daily traffic and outcomes before the experiment, and the design inputs drawn from them."""

    date: np.ndarray  # ISO date str
    visitors: np.ndarray
    conversions: np.ndarray
    revenue: np.ndarray
    design: Design


@dataclass(frozen=True)
class _Population:
    baseline_conversion: float
    mean_order: float

    @property
    def revenue_per_user(self) -> float:
        return self.baseline_conversion * self.mean_order

    @property
    def revenue_std(self) -> float:
        # y = B * m * e with E[m] = mean_order, log-sd USER_VALUE_SIGMA; E[e] = 1, log-sd ORDER_SIGMA
        second = self.revenue_per_user * self.mean_order * np.exp(USER_VALUE_SIGMA**2 + ORDER_SIGMA**2)
        return float(np.sqrt(second - self.revenue_per_user**2))


def _population(seed: int) -> _Population:
    """The seed's site: its baseline conversion and mean order value (shared by history and log)."""
    rng = np.random.default_rng([seed, 1])
    return _Population(round(float(rng.uniform(0.04, 0.06)), 4), round(float(rng.uniform(40, 80)), 2))


def _dates(start: str, days: int) -> np.ndarray:
    first = dt.date.fromisoformat(start)
    return np.array([(first + dt.timedelta(days=i)).isoformat() for i in range(days)])


def _weekday_weights(dates: np.ndarray) -> np.ndarray:
    return np.array([WEEKDAY_FACTOR[dt.date.fromisoformat(d).weekday()] for d in dates])


def _orders(rng: np.random.Generator, typical: np.ndarray) -> np.ndarray:
    """One order per entry of `typical`: lognormal noise with mean 1 around it."""
    return typical * np.exp(rng.normal(-ORDER_SIGMA**2 / 2, ORDER_SIGMA, typical.size))


def _treated_rate(p: np.ndarray, p0: float, lift: float) -> np.ndarray:
    """Per-user conversion under treatment, whose population mean is exactly p0 * (1 + lift)."""
    if lift <= 0:
        return p * (1 + lift)
    # a positive lift converts a share c of each user's non-conversions: stays below 1
    return 1 - (1 - p) * (1 - p0 * lift / (1 - p0))


def _check_args(n_users: int, lift_conv: float, lift_revenue: float, srm: float, p0: float) -> None:
    if n_users < 100:
        raise ValueError(f"n_users must be at least 100, not {n_users}")
    if not (-1 < lift_conv and p0 * (1 + lift_conv) < 1 and lift_revenue > -1):
        raise ValueError(f"lifts out of range: conversion {lift_conv}, revenue {lift_revenue}")
    if not 0 <= srm < 0.5:
        raise ValueError(f"srm must lie in [0, 0.5), not {srm}")


def _drop(rng: np.random.Generator, treated: np.ndarray, converted: np.ndarray, srm: float) -> np.ndarray:
    """Mask of users kept: `srm` of the treatment arm is lost, only among non-converters."""
    lost = round(srm * int(treated.sum()))
    candidates = np.flatnonzero(treated & (converted == 0))
    keep = np.ones(treated.size, dtype=bool)
    keep[rng.choice(candidates, size=lost, replace=False)] = False
    return keep


def simulate(*, seed: int, n_users: int, true_lift_conv: float, true_lift_revenue: float,
             srm: float = 0.0, treatment_share: float = 0.5, start_date: str = START_DATE,
             days: int = EXPERIMENT_DAYS) -> Experiment:
    """Draw one experiment log (see README.md for the model); `treatment_share` is the planned split.

    Raises ValueError if n_users < 100, a lift leaves the rates outside (0, 1) or revenue
    negative, srm lies outside [0, 0.5), treatment_share outside [0.1, 0.9], or start_date is not
    an ISO date.
    """
    pop = _population(seed)
    p0 = pop.baseline_conversion
    _check_args(n_users, true_lift_conv, true_lift_revenue, srm, p0)
    if not 0.1 <= treatment_share <= 0.9:
        raise ValueError(f"treatment_share must lie in [0.1, 0.9], not {treatment_share}")
    rng = np.random.default_rng([seed, 0])
    dates = _dates(start_date, days)
    weights = _weekday_weights(dates)
    day = rng.choice(days, size=n_users, p=weights / weights.sum())
    p = rng.beta(p0 * CONCENTRATION, (1 - p0) * CONCENTRATION, n_users)
    typical = np.exp(rng.normal(np.log(pop.mean_order) - USER_VALUE_SIGMA**2 / 2, USER_VALUE_SIGMA, n_users))
    pre = np.zeros(n_users)
    for _ in range(PRE_PERIODS):
        pre += (rng.random(n_users) < p) * _orders(rng, typical)
    treated = rng.random(n_users) < treatment_share
    rate = np.where(treated, _treated_rate(p, p0, true_lift_conv), p)
    converted = (rng.random(n_users) < rate).astype(int)
    # the order value carries the part of the revenue lift the conversion lift does not explain
    value_lift = np.where(treated, (1 + true_lift_revenue) / (1 + true_lift_conv), 1.0)
    revenue = converted * _orders(rng, typical * value_lift)
    keep = _drop(rng, treated, converted, srm)
    # random ids, so neither gaps nor order reveal who was lost or which arm a user is in
    ids = np.char.mod("u%09d", rng.choice(10**9, size=n_users, replace=False))
    order = np.lexsort((ids[keep], day[keep]))
    truth = Truth(n_assigned=n_users, baseline_conversion=p0,
                  baseline_revenue_per_user=round(pop.revenue_per_user, 6), true_lift_conv=true_lift_conv,
                  true_diff_conv=round(p0 * true_lift_conv, 8), true_lift_revenue=true_lift_revenue,
                  srm=srm, dropped=int((~keep).sum()), srm_rule=SRM_RULE if srm > 0 else "",
                  treatment_share=treatment_share)
    return Experiment(user_id=ids[keep][order],
                      variant=np.where(treated, "treatment", "control")[keep][order],
                      exposure_date=dates[day][keep][order], pre_metric=np.round(pre[keep][order], 2),
                      converted=converted[keep][order], revenue=np.round(revenue[keep][order], 2),
                      truth=truth)


def history(*, seed: int, days: int = HISTORY_DAYS, end_date: str = "2026-03-01",
            daily_users: int = DAILY_USERS) -> History:
    """Daily visitors, conversions and revenue for the `days` up to `end_date`, and design inputs.

    Raises ValueError if days < 7, daily_users < 100 or end_date is not an ISO date.
    """
    if days < 7 or daily_users < 100:
        raise ValueError(f"need days >= 7 and daily_users >= 100, not {days} and {daily_users}")
    pop = _population(seed)
    rng = np.random.default_rng([seed, 2])
    start = dt.date.fromisoformat(end_date) - dt.timedelta(days=days - 1)
    dates = _dates(start.isoformat(), days)
    mean = daily_users * _weekday_weights(dates) * np.exp(rng.normal(0, 0.04, days))
    visitors = rng.poisson(mean)
    conversions = rng.binomial(visitors, pop.baseline_conversion)
    typical = np.exp(rng.normal(np.log(pop.mean_order) - USER_VALUE_SIGMA**2 / 2, USER_VALUE_SIGMA,
                                int(conversions.sum())))
    per_order = _orders(rng, typical)
    day_of_order = np.repeat(np.arange(days), conversions)
    revenue = np.round(np.bincount(day_of_order, weights=per_order, minlength=days), 2)
    design = Design(
        baseline_conversion=round(float(conversions.sum() / visitors.sum()), 4),
        baseline_revenue_per_user=round(float(revenue.sum() / visitors.sum()), 2),
        revenue_std=round(pop.revenue_std, 2),
        mde_relative=float(rng.choice(MDE_CHOICES)), alpha=float(rng.choice(ALPHA_CHOICES)),
        power=float(rng.choice(POWER_CHOICES)), daily_traffic_eligible=round(float(visitors.mean())),
    )
    return History(date=dates, visitors=visitors, conversions=conversions, revenue=revenue, design=design)


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    """Write equal-length string columns as a CSV with a header line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = map(",".join, zip(*columns.values(), strict=True))
    path.write_text(",".join(columns) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def write_dataset(root: Path, experiment: Experiment, history: History, *,
                  truth_dir: Path | None = None) -> None:
    """Write experiment.csv, history.csv and design.json under `root` (no true effects there),
    and the truth to `truth_dir/truth.json` when given. Raises OSError if a file cannot be written.
    """
    e = experiment
    write_csv(root / "experiment.csv", {
        "user_id": e.user_id, "variant": e.variant, "exposure_date": e.exposure_date,
        "pre_metric": np.char.mod("%.2f", e.pre_metric), "converted": np.char.mod("%d", e.converted),
        "revenue": np.char.mod("%.2f", e.revenue)})
    h = history
    write_csv(root / "history.csv", {
        "date": h.date, "visitors": np.char.mod("%d", h.visitors),
        "conversions": np.char.mod("%d", h.conversions), "revenue": np.char.mod("%.2f", h.revenue)})
    share = e.truth.treatment_share  # the plan, not an effect: the candidate needs it for the SRM check
    _write_json(root / "design.json", {**asdict(h.design), "planned_split": planned_split(share)})
    if truth_dir is not None:
        _write_json(truth_dir / "truth.json", asdict(e.truth))


def planned_split(treatment_share: float) -> dict[str, float]:
    """design.json's `planned_split`: each arm's planned share of the experiment's users."""
    return {"control": round(1 - treatment_share, 6), "treatment": round(treatment_share, 6)}


def read_seed(hidden_dir: Path) -> int:
    """This install's secret seed (see harness.secret_seed); ValueError if public, weak or malformed."""
    return secret_seed(hidden_dir, public={PUBLIC_SEED}, what="the hidden runs")


def prepare(hidden_dir: Path) -> None:
    """Create this install's secret seed if there is none (before the harness fingerprints it)."""
    read_seed(hidden_dir)


def run_seed(secret: int, name: str) -> int:
    """A 128-bit seed for hidden run `name`, derived from the secret (one-way)."""
    return int.from_bytes(hashlib.sha256(f"abtest:{secret}:{name}".encode()).digest()[:16], "big")


def hidden_effects(seed: int, name: str) -> dict[str, float]:
    """The true effects of hidden run `name` (one of RUNS), drawn from its seed.

    Raises ValueError for an unknown run name.
    """
    rng = np.random.default_rng([seed, 3])
    if name == "no_effect":
        return {"true_lift_conv": 0.0, "true_lift_revenue": 0.0, "srm": 0.0}
    if name == "clear_win":  # planned 60/40: a check against 50/50 would cry SRM and miss the win
        return {"true_lift_conv": round(float(rng.uniform(0.12, 0.18)), 3),
                "true_lift_revenue": round(float(rng.uniform(0.10, 0.18)), 3), "srm": 0.0,
                "treatment_share": CLEAR_WIN_TREATMENT_SHARE}
    if name == "srm":  # no real effect: the lost non-converters fake a win
        return {"true_lift_conv": 0.0, "true_lift_revenue": 0.0,
                "srm": round(float(rng.uniform(0.08, 0.10)), 3)}
    raise ValueError(f"unknown hidden run {name!r}; expected one of {RUNS}")


def materialize(root: Path, hidden_dir: Path) -> None:
    """Write the public dataset, the hidden runs and their truth under `root` (see module docstring).

    Raises ValueError (see `read_seed`) for a malformed, public or weak secret seed; OSError if a
    file cannot be written.
    """
    secret = read_seed(hidden_dir)  # refuses a bad seed before anything is written
    public = simulate(seed=PUBLIC_SEED, n_users=N_USERS, true_lift_conv=PUBLIC_LIFT_CONV,
                      true_lift_revenue=PUBLIC_LIFT_REVENUE)
    write_dataset(root / "public", public, history(seed=PUBLIC_SEED), truth_dir=root / "truth" / "public")
    unlike = signature(public, history(seed=PUBLIC_SEED).design)
    for name in RUNS:
        seed, run = clear_cut_run(secret, name, unlike=unlike)
        write_dataset(root / "hidden_runs" / name, run, history(seed=seed), truth_dir=root / "truth" / name)


@dataclass(frozen=True)
class Signature:
    """What a hard-coded answer could match: a run's design choices, estimates and p-values."""

    design: tuple[tuple[float, float], ...]  # (lowest, highest) accepted value per design answer
    diffs: tuple[float, float, float]  # conversion, revenue, CUPED revenue: treatment - control
    p_values: tuple[float, float, float, float]  # conversion, revenue, CUPED, SRM


# How far a hidden run's answers must lie from the public run's: twice the partial-credit band of
# assignment.yaml (sample sizes 3% -> 7%, durations 1 day -> 2) or four times the tolerance
# (lifts). Two p-values are apart when the p-value rule's log10 or absolute bound is exceeded twice.
SIZE_APART, DAYS_APART = 1.07, 2.0
DESIGN_FIELDS = tuple(f"design.{m}.{a}" for m in ("conversion", "revenue")
                      for a in ("sample_size_per_arm", "duration_days"))
DIFF_APART = (2e-4, 0.02, 0.02)
P_APART_LOG10, P_APART_ABS, P_FLOOR, SRM_P_FLOOR = 0.4, 0.04, 1e-3, 1e-6
# a p-value's resampling rule (no partial credit) is missed by a margin: 1.25 x its band at 1,000 draws
P_APART_RESAMPLES, P_APART_BAND = 1000, 1.25


def signature(run: Experiment, design: Design) -> Signature:
    """The run's `Signature` (reference statistics from graders.abtest.stats)."""
    from graders.abtest.reference import design_reference
    from graders.abtest.stats import cuped, srm_test, two_proportion_test, welch_test

    answers = design_reference(asdict(design))
    ranges = [(min(v for _, v in answers[f].values), max(v for _, v in answers[f].values))
              for f in DESIGN_FIELDS]
    treated = run.variant == "treatment"
    counts = [int((~treated).sum()), int(treated.sum())]
    conv = two_proportion_test(int(run.converted[~treated].sum()), counts[0],
                               int(run.converted[treated].sum()), counts[1])
    revenue = welch_test(run.revenue[~treated], run.revenue[treated])
    adjusted = cuped(run.revenue, run.pre_metric, treated.astype(int)).adjusted
    return Signature(design=tuple(ranges),
                     diffs=(conv.diff, revenue.diff, adjusted.diff),
                     p_values=(conv.p_value, revenue.p_value, adjusted.p_value,
                               srm_test(counts, [1 - run.truth.treatment_share,
                                                 run.truth.treatment_share]).p_value))


def clear_cut_run(secret: int, name: str, *, unlike: Signature | None = None,
                  attempts: int = 100) -> tuple[int, Experiment]:
    """Draw hidden run `name` until it tests what it is meant to, no p-value sits near alpha, and
    no answer could be pasted from the run `unlike` (the public one).

    Each attempt derives a new seed from the secret (`<name>`, then `<name>#1`, ...), so the
    result stays a function of the secret. A run is clear-cut when none of its conversion,
    revenue and CUPED p-values lies within a factor 2 of 0.05 (a sound method may land on either
    side of alpha there), and no_effect and clear_win do not trip the SRM check while srm trips
    it at p < 1e-6. It is unlike `unlike` when every sample size and duration any accepted formula
    gives lies outside twice the grading band of the other run's (`_range_apart`), each estimate
    lies `DIFF_APART` away and each p-value is apart (`_p_apart`).
    Raises ValueError if no attempt qualifies (not seen in practice).
    """
    for attempt in range(attempts):
        seed = run_seed(secret, name if attempt == 0 else f"{name}#{attempt}")
        run = simulate(seed=seed, n_users=N_USERS, **hidden_effects(seed, name))
        sig = signature(run, history(seed=seed).design)
        if _clear_cut(sig, srm_planted=name == "srm") and (unlike is None or _apart(sig, unlike)):
            return seed, run
    raise ValueError(f"no clear-cut draw of hidden run {name!r} in {attempts} attempts")


def _apart(a: Signature, b: Signature) -> bool:
    design = all(_range_apart(x, y, days=field.endswith("days"))
                 for x, y, field in zip(a.design, b.design, DESIGN_FIELDS, strict=True))
    return (design
            and all(abs(x - y) > gap for x, y, gap in zip(a.diffs, b.diffs, DIFF_APART, strict=True))
            and all(_p_apart(x, y) for x, y in zip(a.p_values[:3], b.p_values[:3], strict=True))
            and _p_apart(a.p_values[3], b.p_values[3], floor=SRM_P_FLOOR, resampled=False))


def _range_apart(a: tuple[float, float], b: tuple[float, float], *, days: bool) -> bool:
    """Whether no accepted value of `a` is within the partial-credit band of any of `b`."""
    if days:
        return a[0] > b[1] + DAYS_APART or a[1] + DAYS_APART < b[0]
    return a[0] > b[1] * SIZE_APART or a[1] * SIZE_APART < b[0]


def _p_apart(p: float, q: float, *, floor: float = P_FLOOR, resampled: bool = True) -> bool:
    """Whether `q` pasted where `p` is the reference misses twice each p-value rule's tolerance."""
    from graders.abtest.scoring import resampling_band

    band = P_APART_BAND * resampling_band(p, P_APART_RESAMPLES)
    p, q = max(p, floor), max(q, floor)
    analytic = abs(np.log10(p) - np.log10(q)) > P_APART_LOG10 or abs(p - q) > P_APART_ABS
    return bool(analytic and (not resampled or abs(p - q) > band))


def _clear_cut(sig: Signature, *, srm_planted: bool) -> bool:
    *tests, srm_p = sig.p_values
    if (srm_p < 1e-6) != srm_planted or (not srm_planted and srm_p < 0.01):
        return False
    return all(not 0.025 < p < 0.1 for p in tests)
