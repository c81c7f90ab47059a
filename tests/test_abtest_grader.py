"""The `ab_answer` grader: reference answers, per-field scoring, malformed answers, chance correction.

The reference (graders/abtest/reference.py) is checked against computations it does not call, on
the generated data read here with the csv module: statsmodels `proportions_ztest`,
`confint_proportions_2indep` (Wald), `weightstats.ttest_ind(usevar="unequal")` and
`CompareMeans.tconfint_diff`, `samplesize_proportions_2indep_onetail` (the pooled formula) and
`normal_sample_size_one_tail`, `NormalIndPower`; scipy `chisquare` and `linregress` (the CUPED
slope, Deng, Xu, Kohavi and Walker, WSDM 2013). Scoring cases are computed by hand in comments.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from scipy import stats
from statsmodels.stats.power import NormalIndPower, normal_sample_size_one_tail
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportions_ztest,
    samplesize_proportions_2indep_onetail,
)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

from graders.abtest.grader import AbAnswerGrader
from graders.abtest.reference import FIELDS, Bounds, Choice, Exact, Numbers, PValue, reference
from graders.abtest.scoring import (
    best_constant,
    chance_corrected,
    compare_interval,
    compare_number,
    compare_p_value,
)
from harness.core.grading import GRADERS, CriterionResult, GradingContext, OutputFile
from harness.errors import SpecError
from tests.abtest_runs import materialize_runs, run_folder

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENT = REPO / "assignments" / "abtest"
HIDDEN = ["no_effect", "clear_win", "srm"]
ALL_RUNS = ["public", *HIDDEN]
NOT_PRODUCED = "not produced: stage analyze on run srm: error: exit 1"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize_runs(tmp_path_factory.mktemp("abtest"))


def good_answers(data: Path, run: str) -> dict[str, Any]:
    """An answers document built from the reference itself."""
    doc: dict[str, Any] = {}
    for field, expected in reference(run_folder(data, run)).items():
        value: Any
        if isinstance(expected, Numbers):
            value = expected.values[0][1]
            value = int(value) if field.startswith("design.") else value
        elif isinstance(expected, Bounds):
            value = [expected.low, expected.high]
        elif isinstance(expected, Choice):
            value = sorted(expected.values)[0]
        else:
            value = expected.value
        set_field(doc, field, value)
    return doc


def set_field(doc: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    *parents, last = field.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return doc


def make_grader(field: str, compare: str, runs: list[str] | None = None, **tol: Any) -> AbAnswerGrader:
    args = AbAnswerGrader.Args(field=field, compare=compare, runs=runs or HIDDEN, **tol)
    return AbAnswerGrader(name="crit", weight=1.0, args=args)


def context(data: Path, tmp: Path, answers: dict[str, Any]) -> GradingContext:
    """Outputs as the pipeline collects them: a dict is written as JSON, bytes as they are, a
    string means the file was not produced (the pipeline's problem text)."""
    outputs = {}
    for run, content in answers.items():
        key = f"{run}/answers.json"
        if isinstance(content, str):
            outputs[key] = OutputFile("answers.json", None, content)
            continue
        path = tmp / "collected" / run / "answers.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
        outputs[key] = OutputFile("answers.json", path)
    return GradingContext(submission_dir=tmp, outputs=outputs, hidden={"truth": data / "truth"},
                          visible={run: run_folder(data, run) for run in ALL_RUNS},
                          assignment_dir=ASSIGNMENT, artifacts_dir=tmp / "artifacts")


def yaml_graders() -> list[dict[str, Any]]:
    raw = yaml.safe_load((ASSIGNMENT / "assignment.yaml").read_text())  # resolves the << merges
    return [g for g in raw["graders"] if g["grader"] == "ab_answer"]


# --- reference against independent computations -------------------------------------------------

def read_log(data: Path, run: str) -> dict[str, np.ndarray]:
    with (run_folder(data, run) / "experiment.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {"t": np.array([r["variant"] == "treatment" for r in rows]),
            "conv": np.array([int(r["converted"]) for r in rows]),
            "rev": np.array([float(r["revenue"]) for r in rows]),
            "pre": np.array([float(r["pre_metric"]) for r in rows])}


def approx(x: float) -> Any:
    return pytest.approx(x, rel=1e-7, abs=1e-12)


@pytest.mark.parametrize("run", ALL_RUNS)
def test_analysis_reference_matches_statsmodels_and_scipy(data: Path, run: str) -> None:
    ref, log = reference(run_folder(data, run)), read_log(data, run)
    t, conv, rev = log["t"], log["conv"], log["rev"]
    ct, nt, cc, nc = int(conv[t].sum()), int(t.sum()), int(conv[~t].sum()), int((~t).sum())
    _, p = proportions_ztest([ct, cc], [nt, nc])  # pooled z-test
    low, high = confint_proportions_2indep(ct, nt, cc, nc, method="wald", compare="diff")
    assert ref["analysis.conversion.p_value"].value == approx(p)
    assert (ref["analysis.conversion.ci_abs"].low, ref["analysis.conversion.ci_abs"].high) == (approx(low),
                                                                                              approx(high))
    assert ref["analysis.conversion.lift_rel"].values[0][1] == approx((ct / nt) / (cc / nc) - 1)
    _, p, _ = ttest_ind(rev[t], rev[~t], usevar="unequal")
    low, high = CompareMeans(DescrStatsW(rev[t]), DescrStatsW(rev[~t])).tconfint_diff(usevar="unequal")
    assert ref["analysis.revenue.p_value"].value == approx(p)
    assert ref["analysis.revenue.ci_abs"] == Bounds(approx(low), approx(high))
    assert ref["analysis.revenue.lift_abs"].values[0][1] == approx(rev[t].mean() - rev[~t].mean())
    theta = stats.linregress(log["pre"], rev).slope  # CUPED's theta is the OLS slope of y on x
    adj = rev - theta * (log["pre"] - log["pre"].mean())
    _, p, _ = ttest_ind(adj[t], adj[~t], usevar="unequal")
    assert ref["analysis.revenue_cuped.p_value"].value == pytest.approx(p, rel=1e-6)
    assert ref["analysis.revenue_cuped.lift_abs"].values[0][1] == approx(adj[t].mean() - adj[~t].mean())
    split = json.loads((run_folder(data, run) / "design.json").read_text())["planned_split"]
    planned = [split["control"] * (nc + nt), split["treatment"] * (nc + nt)]
    srm_p = stats.chisquare([nc, nt], f_exp=planned).pvalue
    assert ref["srm.p_value"].value == pytest.approx(srm_p, rel=1e-6)
    assert ref["srm.detected"] == Exact(srm_p < 0.001)


def test_srm_reference_follows_the_planned_unequal_split(data: Path) -> None:
    # clear_win is planned 60/40 with no mismatch: scipy's chisquare against 50/50 cries SRM there,
    # against the plan it does not; the reference follows the plan.
    split = json.loads((run_folder(data, "clear_win") / "design.json").read_text())["planned_split"]
    assert split == {"control": 0.6, "treatment": 0.4}
    assert all(json.loads((run_folder(data, r) / "design.json").read_text())["planned_split"]
               == {"control": 0.5, "treatment": 0.5} for r in ("public", "no_effect", "srm"))
    t = read_log(data, "clear_win")["t"]
    counts = [int((~t).sum()), int(t.sum())]
    assert stats.chisquare(counts).pvalue < 1e-100  # a hard-coded 50/50 check
    ref = reference(run_folder(data, "clear_win"))
    assert ref["srm.detected"] == Exact(False) and ref["srm.p_value"].value > 0.01
    assert ref["decision"] == Choice(frozenset({"ship"}))


@pytest.mark.parametrize("run", ALL_RUNS)
def test_design_reference_accepts_each_standard_formula(data: Path, run: str) -> None:
    d = json.loads((run_folder(data, run) / "design.json").read_text())
    p1, alpha, power = d["baseline_conversion"], d["alpha"], d["power"]
    diff = p1 * d["mde_relative"]
    p2 = p1 + diff
    accepted = dict(reference(run_folder(data, run))["design.conversion.sample_size_per_arm"].values)
    by_value = {v: k for k, v in accepted.items()}
    pooled = samplesize_proportions_2indep_onetail(diff, p1, power, alpha=alpha)
    sd_alt = math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    unpooled = normal_sample_size_one_tail(diff, power, alpha / 2, std_null=sd_alt, std_alternative=sd_alt)
    miller = normal_sample_size_one_tail(diff, power, alpha / 2, std_null=math.sqrt(2 * p1 * (1 - p1)),
                                         std_alternative=sd_alt)
    for label, n in (("pooled", pooled), ("unpooled", unpooled), ("Evan Miller", miller)):
        assert label in by_value[math.ceil(n)], (label, accepted)
    h = 2 * math.asin(math.sqrt(p2)) - 2 * math.asin(math.sqrt(p1))  # Cohen's h, by hand
    closed = 2 * ((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) / h) ** 2  # Var(h) = 2 / n
    assert abs(next(v for k, v in accepted.items() if "Cohen" in k) - closed) <= 1
    revenue = dict(reference(run_folder(data, run))["design.revenue.sample_size_per_arm"].values)
    effect = d["mde_relative"] * d["baseline_revenue_per_user"] / d["revenue_std"]
    normal = NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power)
    assert abs(min(revenue.values()) - math.ceil(normal)) <= 1  # the z formula
    assert 0 <= max(revenue.values()) - math.ceil(normal) <= 3  # the t-based one adds a user or two
    days = reference(run_folder(data, run))["design.conversion.duration_days"].values
    assert {v for _, v in days} == {math.ceil(2 * n / d["daily_traffic_eligible"]) for n in accepted.values()}


def test_reference_decisions_follow_the_planted_effects(data: Path) -> None:
    # clear_win: true lift >= 12% (tests/test_abtest_data.py); srm: a mismatch planted in the log
    decisions = {run: reference(run_folder(data, run))["decision"].values for run in HIDDEN}
    assert decisions == {"no_effect": {"inconclusive"}, "clear_win": {"ship"},
                         "srm": {"inconclusive", "dont_ship"}}
    truth = {run: json.loads((data / "truth" / run / "truth.json").read_text()) for run in HIDDEN}
    assert all(reference(run_folder(data, r))["srm.detected"].value == (truth[r]["srm"] > 0) for r in HIDDEN)
    assert reference(run_folder(data, "srm")) is reference(run_folder(data, "srm"))  # cached
    assert all(set(reference(run_folder(data, run))) == set(FIELDS) for run in ALL_RUNS)


# --- per-run rules, by hand -----------------------------------------------------------------------

def test_number_takes_the_best_formula_with_linear_partial_credit() -> None:
    two = Numbers((("A", 100.0), ("B", 110.0)))
    assert compare_number(113.3, two, rel=0.03, abs_=None, partial=2).score == 1  # B: |3.3| <= 3.3
    c = compare_number(96.0, two, rel=0.03, abs_=None, partial=2)  # A: 4 / 3 = 1.333 -> 2 - 1.333
    assert (c.label, c.score) == ("A", pytest.approx(2 / 3))
    c = compare_number(105.0, two, rel=0.03, abs_=None, partial=2)  # B: 5 / 3.3 = 1.515 beats A: 5 / 3
    assert (c.label, c.score) == ("B", pytest.approx(2 - 5 / 3.3))
    assert compare_number(94.0, two, rel=0.03, abs_=None, partial=2).score == 0  # A: 6 / 3 = 2
    one = Numbers((("ref", 10.0),))
    assert compare_number(11.0, one, rel=0.03, abs_=1.0, partial=2).score == 1  # max(1, 0.3) = 1
    assert compare_number(11.01, one, rel=0.03, abs_=1.0, partial=2).score == pytest.approx(0.99)
    assert compare_number(11.01, one, rel=0.03, abs_=1.0, partial=1).score == 0  # no partial band


def test_interval_bounds_and_p_value_sides() -> None:
    ref = Bounds(0.0, 2.0)  # half-width 1, tolerance 0.05 on the mean of the two bound errors
    assert compare_interval([0.05, 1.95], ref, halfwidth=0.05, partial=2).score == 1  # (0.05 + 0.05) / 2
    assert compare_interval([0.1, 2.0], ref, halfwidth=0.05, partial=2).score == 1  # (0.1 + 0) / 2
    assert compare_interval([0.15, 2.0], ref, halfwidth=0.05, partial=2).score == pytest.approx(0.5)
    assert compare_interval([0.0, 2.2], ref, halfwidth=0.05, partial=2).score == 0  # 0.1 = 2 x 0.05
    assert compare_interval([0.13, 1.87], ref, halfwidth=0.1, partial=1.5).score == pytest.approx(0.4)
    flipped = compare_interval([2.0, 0.0], ref, halfwidth=0.05, partial=2)
    assert flipped.score == 0 and "descending" in flipped.note
    p = PValue(0.03)  # log10 distance 0.2 is the edge
    assert compare_p_value(0.03 * 10**0.2, p, alpha=0.05, log10=0.2, floor=1e-6).score == 1
    assert compare_p_value(0.03 * 10**0.21, p, alpha=0.05, log10=0.2, floor=1e-6).score == 0
    other_side = compare_p_value(0.055, PValue(0.045), alpha=0.05, log10=0.2, floor=1e-6)
    assert other_side.score == 0 and "other side" in other_side.note  # close (0.087) but not significant
    assert compare_p_value(1e-12, PValue(1e-8), alpha=0.05, log10=0.2, floor=1e-6).score == 1  # both floored


def test_p_value_absolute_bound_judges_large_p_values() -> None:
    # Hand-computed: 0.53 vs 0.556 is 0.021 in log10 (well inside 0.2) but 0.026 apart, beyond 0.02;
    # the log rule alone would accept any value in [0.351, 0.881], most of a uniform null p-value.
    large = PValue(0.556)
    assert compare_p_value(0.53, large, alpha=0.05, log10=0.2, floor=1e-6).score == 1
    assert compare_p_value(0.53, large, alpha=0.05, log10=0.2, floor=1e-6, abs_=0.02).score == 0
    assert compare_p_value(0.54, large, alpha=0.05, log10=0.2, floor=1e-6, abs_=0.02).score == 1
    # Small p-values are judged by the log rule: 0.001 vs 0.0013 is 0.0003 apart but 0.114 in log10.
    assert compare_p_value(0.0013, PValue(0.001), alpha=0.05, log10=0.2, floor=1e-6, abs_=0.02).score == 1
    assert compare_p_value(0.0017, PValue(0.001), alpha=0.05, log10=0.2, floor=1e-6, abs_=0.02).score == 0


def test_p_value_resampling_band_by_hand() -> None:
    # band = 3 sqrt(r (1 - r) / 1000) + 2 / 1000; at r = 0.3: 3 x 0.014491 + 0.002 = 0.045474
    kw = {"alpha": 0.05, "log10": 0.2, "floor": 1e-3, "abs_": 0.02}
    assert compare_p_value(0.345, PValue(0.3), **kw).score == 0  # 0.045 > 0.02: not analytic
    assert compare_p_value(0.345, PValue(0.3), **kw, resamples=1000).score == 1  # 0.045 <= 0.045474
    assert compare_p_value(0.346, PValue(0.3), **kw, resamples=1000).score == 0
    assert compare_p_value(0.15, PValue(0.3), **kw, resamples=1000).score == 0  # one-sided: p / 2
    # a tiny reference: band 2 / 1000 (+ 3 sqrt(1e-9 / 1000) = 3e-6); 1 / 1001 and 3 / 1001 floor or fit
    tiny = PValue(1e-9)
    assert compare_p_value(1 / 1001, tiny, **kw, resamples=1000).score == 1
    assert compare_p_value(0.0, tiny, **kw, resamples=1000).score == 1
    assert compare_p_value(3 / 1001, tiny, **kw, resamples=1000).score == 1  # 0.002997 - 0.001 <= 0.002003
    assert compare_p_value(4 / 1001, tiny, **kw, resamples=1000).score == 0
    assert compare_p_value(0.06, PValue(0.04), **kw, resamples=1000).score == 0  # other side of alpha


def test_chance_correction_by_hand() -> None:
    sets = [frozenset({"inconclusive"}), frozenset({"ship"}), frozenset({"inconclusive", "dont_ship"})]
    assert best_constant(sets, ["ship"]) == 2  # "inconclusive" is accepted on two runs
    assert chance_corrected(2, 3, 2) == 0 and chance_corrected(3, 3, 2) == 1
    assert chance_corrected(1, 4, 1) == 0 and chance_corrected(3, 4, 1) == pytest.approx(2 / 3)
    assert chance_corrected(1, 2, 2) == 0.5  # one value right everywhere: plain share
    assert best_constant([frozenset({False}), frozenset({True})], [1]) == 1  # 1 is not True


# --- the grader end to end ------------------------------------------------------------------------

def grade_all(data: Path, tmp: Path, answers: dict[str, Any]) -> dict[str, CriterionResult]:
    ctx = context(data, tmp, answers)
    out = {}
    for g in yaml_graders():
        grader = GRADERS.get(g["grader"])(name=g["name"], weight=g["weight"],
                                          args=AbAnswerGrader.Args(**g["args"]))
        out[g["name"]] = grader.grade(ctx)
    return out


def test_answers_from_the_reference_score_one_on_every_field(data: Path, tmp_path: Path) -> None:
    results = grade_all(data, tmp_path, {run: good_answers(data, run) for run in HIDDEN})
    assert len(results) == len(FIELDS) == 20
    for name, r in results.items():
        assert r.score == 1, (name, r.explanation)
        assert all(math.isfinite(v) for v in r.metrics.values()) and r.metrics["runs_graded"] == 3
        json.dumps(r.details)  # JSON-able
    assert results["srm_p_value"].spec["alpha"] == 0.001 and results["decision"].spec["schema"]


def test_public_answers_hard_coded_score_near_zero_on_hidden_runs(data: Path, tmp_path: Path) -> None:
    public = good_answers(data, "public")
    results = grade_all(data, tmp_path, dict.fromkeys(HIDDEN, public))
    total = sum(r.score for r in results.values())
    # by chance a copied p-value or day count may match one hidden run (1/3 of a field each)
    assert total <= 1.0, {k: r.score for k, r in results.items() if r.score}
    assert results["decision"].score == 0 and results["srm_detected"].score == 0


def test_number_field_tolerance_band_on_real_data(data: Path, tmp_path: Path) -> None:
    ref = reference(run_folder(data, "no_effect"))["analysis.conversion.lift_abs"].values[0][1]
    grader = make_grader("analysis.conversion.lift_abs", "number", ["no_effect"], abs=5e-5)
    for offset, expected in ((1.0, 1.0), (-1.0, 1.0), (1.5, 0.5), (2.0, 0.0), (3.0, 0.0)):
        doc = set_field({}, "analysis.conversion.lift_abs", ref + offset * 5e-5)
        r = grader.grade(context(data, tmp_path, {"no_effect": doc}))
        assert r.score == pytest.approx(expected, abs=1e-6), (offset, r.explanation)
        assert r.metrics["no_effect.error_ratio"] == pytest.approx(abs(offset), rel=1e-6)
    assert "no_effect: got" in r.explanation and "\u00b15e-05" in r.explanation


def test_sample_size_miss_names_the_formulas(data: Path, tmp_path: Path) -> None:
    field = "design.conversion.sample_size_per_arm"
    values = dict(reference(run_folder(data, "srm"))[field].values)
    top = max(values.values())
    grader = make_grader(field, "number", ["srm"], rel=0.03)
    at_edge = grader.grade(context(data, tmp_path, {"srm": set_field({}, field, math.floor(top * 1.03))}))
    assert at_edge.score == 1
    r = grader.grade(context(data, tmp_path, {"srm": set_field({}, field, round(top * 1.2))}))
    assert r.score == 0 and "Evan Miller" in r.explanation and "\u00b13%" in r.explanation
    assert r.details["runs"]["srm"]["accepted"][0]["label"] == "Evan Miller"


def doc_with(field: str, value: Any) -> bytes:
    return json.dumps(set_field({}, field, value)).encode()


P = "analysis.conversion.p_value"
CI = "analysis.conversion.ci_abs"
MALFORMED = [
    ("missing file", P, NOT_PRODUCED, NOT_PRODUCED),
    ("invalid JSON", P, b'{"analysis": {\n "conversion": }', "not valid JSON: Expecting value at line 2"),
    ("bad UTF-8", "decision", b'{"decision": "\xff"}', "not valid UTF-8 (byte 14"),
    ("NaN", P, b'{"analysis": {"conversion": {"p_value": NaN}}}', "p_value: NaN is not a JSON number"),
    ("Infinity", CI, b'{"analysis": {"conversion": {"ci_abs": [-Infinity, 1]}}}', "ci_abs[0]: -Infinity"),
    ("overflow", P, b'{"analysis": {"conversion": {"p_value": 1e999}}}', "inf is not a finite number"),
    ("string", P, doc_with(P, "0.03"), "analysis.conversion.p_value: '0.03' is a string, expected a number"),
    ("bool", P, doc_with(P, True), "p_value: True is a boolean, expected a number"),
    ("short CI", CI, doc_with(CI, [0.1]), "ci_abs: has 1 items, expected exactly 2"),
    ("long CI", CI, doc_with(CI, [0.1, 0.2, 0.3]), "ci_abs: has 3 items, expected exactly 2"),
    ("CI of strings", CI, doc_with(CI, [0.1, "x"]), "ci_abs[1]: 'x' is a string, expected a number"),
    ("missing key", "analysis.revenue_cuped.p_value", doc_with(P, 0.5),
     "missing key 'revenue_cuped' in analysis"),
    ("wrong container", P, doc_with("analysis.conversion", []),
     "analysis.conversion is a list, expected an object"),
    ("top-level list", P, b"[1, 2]", "the top level is a list, expected an object"),
    ("deep nesting", P, b'{"a": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", "nested too deeply"),
    ("nested 40 deep", P, b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", "nested more than 32 levels"),
    ("repeated key", "decision", b'{"decision": "ship", "decision": "inconclusive"}', "appears 2 times"),
    ("too big", P, b" " * (65 * 1024) + b"{}", "larger than 64 KiB"),
    ("huge integer", "design.conversion.sample_size_per_arm",
     doc_with("design.conversion.sample_size_per_arm", 10**400), "too large"),
    ("fraction", "design.conversion.sample_size_per_arm",
     doc_with("design.conversion.sample_size_per_arm", 1234.5), "1234.5 is not a whole number"),
    ("out of range", P, doc_with(P, 1.5), "outside the allowed range"),
    ("not a choice", "decision", doc_with("decision", "maybe"), "'maybe' is not one of 'ship'"),
]


@pytest.mark.parametrize(("case", "field", "content", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_answers_are_a_diagnosis(data: Path, tmp_path: Path, case: str, field: str,
                                           content: Any, message: str) -> None:
    grader = make_grader(field, FIELDS[field], ["srm"], **{
        "number": {"rel": 0.03}, "interval": {"halfwidth": 0.05},
        "p_value": {"alpha": 0.05, "log10": 0.2}}.get(FIELDS[field], {}))
    r = grader.grade(context(data, tmp_path, {"srm": content}))
    assert r.score == 0 and r.metrics["runs_answered"] == 0
    assert message in r.details["runs"]["srm"]["problem"], r.details["runs"]["srm"]["problem"]
    assert message[:30] in r.explanation and len(r.explanation) < 600


def test_hostile_text_is_shortened_and_printable(data: Path, tmp_path: Path) -> None:
    evil = "\x1b[31m\u202e" + "x" * 5000
    grader = make_grader("decision", "choice", ["srm"])
    r = grader.grade(context(data, tmp_path, {"srm": doc_with("decision", evil)}))
    problem = r.details["runs"]["srm"]["problem"]
    assert r.score == 0 and "\x1b" not in problem and "\u202e" not in problem and len(problem) < 200


def test_uncollected_run_scores_zero_and_uncollected_file_is_spec_error(data: Path, tmp_path: Path) -> None:
    grader = make_grader("analysis.conversion.lift_abs", "number", ["no_effect", "srm"], abs=5e-5)
    r = grader.grade(context(data, tmp_path, {"no_effect": good_answers(data, "no_effect")}))
    assert r.score == 0.5 and "no answers.json was collected from run srm" in r.explanation
    with pytest.raises(SpecError, match="no stage collects 'answers.json'"):
        grader.grade(context(data, tmp_path, {}))


def decisions(data: Path, tmp: Path, runs: list[str], answers: list[str], field: str = "decision") -> float:
    docs = {run: set_field({}, field, a) for run, a in zip(runs, answers, strict=True)}
    return make_grader(field, "choice" if field == "decision" else "exact", runs).grade(
        context(data, tmp, docs)).score


def test_decision_is_chance_corrected(data: Path, tmp_path: Path) -> None:
    # accepted: no_effect {inconclusive}, clear_win {ship}, srm {inconclusive, dont_ship}; the
    # constant "inconclusive" is right on 2 of 3, so c = 2 and anything short of 3/3 scores 0
    assert decisions(data, tmp_path, HIDDEN, ["inconclusive"] * 3) == 0
    assert decisions(data, tmp_path, HIDDEN, ["inconclusive", "ship", "dont_ship"]) == 1
    assert decisions(data, tmp_path, HIDDEN, ["inconclusive", "inconclusive", "dont_ship"]) == 0
    assert decisions(data, tmp_path, HIDDEN, ["ship"] * 3) == 0
    # public and no_effect are both "inconclusive": a constant is right everywhere, so plain share
    assert decisions(data, tmp_path, ["public", "no_effect"], ["inconclusive", "ship"]) == 0.5
    assert decisions(data, tmp_path, HIDDEN, [False, False, True], "srm.detected") == 1
    assert decisions(data, tmp_path, HIDDEN, [False, False, False], "srm.detected") == 0
    r = make_grader("decision", "choice").grade(context(data, tmp_path, {
        run: set_field({}, "decision", "inconclusive") for run in HIDDEN}))
    assert r.metrics["chance_level_runs"] == 2 and "Chance-corrected" in r.explanation


def test_a_constant_p_value_of_zero_earns_nothing(data: Path, tmp_path: Path) -> None:
    # p = 0 everywhere: below the 1,000-draw resolution wherever the reference is (clear_win, and
    # the spurious win of srm), wrong on no_effect. Chance-corrected like a constant yes/no.
    args = next(g["args"] for g in yaml_graders() if g["name"] == "conversion_p_value")
    grader = make_grader(**{k: v for k, v in args.items() if k not in ("answers", "runs")})
    refs = {run: reference(run_folder(data, run))[P].value for run in HIDDEN}
    assert refs["no_effect"] > 0.1 and refs["clear_win"] < 1e-3 and refs["srm"] < 0.01, refs
    zero = grader.grade(context(data, tmp_path, {run: set_field({}, P, 0.0) for run in HIDDEN}))
    assert zero.metrics["runs_correct"] == 2 and zero.metrics["chance_level_runs"] == 2
    assert zero.score == 0 and "Chance-corrected" in zero.explanation
    right = grader.grade(context(data, tmp_path, {run: good_answers(data, run) for run in HIDDEN}))
    assert right.score == 1


# --- arguments and the spec -----------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    ({"compare": "interval"}, "compare: interval needs halfwidth"),
    ({"compare": "p_value", "alpha": 0.05}, "needs alpha and log10"),
    ({"compare": "number"}, "needs rel or abs"),
    ({"compare": "number", "rel": 0.03, "halfwidth": 0.05}, "halfwidth do not apply to compare: number"),
    ({"compare": "exact", "alpha": 0.05}, "alpha do not apply"),
    ({"compare": "choice", "schema": "../x.json"}, "relative to the assignment folder"),
    ({"compare": "choice", "runs": []}, "at least 1"),
    ({"compare": "choice", "answers": "../a.json"}, "plain file name"),
])
def test_args_name_the_fix(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        AbAnswerGrader.Args(**{"field": "decision", "runs": ["srm"], **args})


def fake_spec(runs: tuple[str, ...] = tuple(ALL_RUNS), outputs: tuple[str, ...] = ("answers.json",)):
    stage = SimpleNamespace(name="analyze", outputs=dict.fromkeys(outputs, 65536), runs=runs)
    return SimpleNamespace(stages=(stage,), data=SimpleNamespace(visible=dict.fromkeys(ALL_RUNS, "x")))


def test_every_grader_in_the_assignment_passes_check_spec() -> None:
    raw = yaml.safe_load((ASSIGNMENT / "assignment.yaml").read_text())
    stage = raw["stages"][0]
    spec = SimpleNamespace(stages=(SimpleNamespace(name=stage["name"], outputs=stage["outputs"],
                                                   runs=tuple(stage["runs"])),),
                           data=SimpleNamespace(visible=raw["data"]["visible"]))
    for g in yaml_graders():
        AbAnswerGrader(name=g["name"], weight=1.0, args=AbAnswerGrader.Args(**g["args"])).check_spec(spec)


@pytest.mark.parametrize(("grader", "spec", "message"), [
    (make_grader("analysis.conversion.pvalue", "p_value", alpha=0.05, log10=0.2), fake_spec(),
     "did you mean 'analysis.conversion.p_value'"),
    (make_grader("srm.detected", "choice"), fake_spec(), "write compare: exact"),
    (make_grader("decision", "choice"), fake_spec(runs=("public", "srm")),
     "['no_effect', 'clear_win'] are not runs"),
    (make_grader("decision", "choice"), fake_spec(runs=()), "add them to the stage's runs"),
    (make_grader("decision", "choice"), fake_spec(outputs=("other.json",)), "no stage declares the output"),
    (make_grader("decision", "choice", ["public", "staging"]),
     fake_spec(runs=("public", "staging")), "['staging'] are not visible data sets"),
])
def test_check_spec_errors_name_the_fix(grader: AbAnswerGrader, spec: Any, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        grader.check_spec(spec)


def test_a_schema_without_the_field_is_a_spec_error(data: Path, tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"type": "object", "properties": {}}))
    grader = make_grader("decision", "choice", ["srm"], schema="s.json")
    ctx = context(data, tmp_path, {"srm": {"decision": "ship"}})
    ctx = GradingContext(**{**ctx.__dict__, "assignment_dir": tmp_path})
    with pytest.raises(SpecError, match="no property 'decision'"):
        grader.grade(ctx)
