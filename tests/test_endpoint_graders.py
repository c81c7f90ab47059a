"""The endpoint graders on fixed probe reports (hand-computed expectations; no server involved)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from harness.core import GRADERS, GradingContext, OutputFile
from harness.runtime import build_graders
from harness.spec import Assignment, AssignmentSpec

REFERENCE = [{"label": 0, "probabilities": [0.7, 0.2, 0.1]},
             {"label": 2, "probabilities": [0.1, 0.3, 0.6]},
             {"label": 1, "probabilities": [0.2, 0.5, 0.3]},
             {"label": 1, "probabilities": [0.3, 0.4, 0.3]}]
CASES = ["invalid_json", "empty_batch", "huge_body"]


def make(name: str, **args):
    cls = GRADERS.get(name)
    return cls(name=name, weight=1.0, args=cls.Args.model_validate(args))


def context(tmp_path: Path, report: dict | str | None) -> GradingContext:
    hidden = tmp_path / "reference"
    hidden.mkdir(exist_ok=True)
    (hidden / "predictions.json").write_text(json.dumps(REFERENCE))
    outputs = {}
    if report is not None:
        path = tmp_path / "probe.json"
        path.write_text(report if isinstance(report, str) else json.dumps(report))
        outputs["probe.json"] = OutputFile("probe.json", path)
    else:
        outputs["probe.json"] = OutputFile("probe.json", None, "not produced: stage serve: error: exit 1")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir(exist_ok=True)
    return GradingContext(submission_dir=tmp_path, outputs=outputs, hidden={"reference": hidden}, visible={},
                          assignment_dir=tmp_path, artifacts_dir=artifacts)


def latency(p99: float, *, errors: int = 0, histogram: str = "") -> dict:
    return {"rate": 100, "duration_s": 10, "scheduled": 1000, "completed": 1000 - errors, "errors": errors,
            "timeouts": 0, "p50_ms": 2.0, "p90_ms": 3.0, "p99_ms": p99, "p999_ms": p99 * 2, "max_ms": p99 * 3,
            "achieved_rate": 100.0, "histogram": histogram}


def test_cold_start_maps_seconds_linearly_and_never_healthy_scores_zero(tmp_path):
    grader = make("endpoint_cold_start", zero=60, full=5)
    # 16 s lies 44/55 of the way from 60 s (0) to 5 s (1): 0.8
    result = grader.grade(context(tmp_path, {"cold_start": {"healthy": True, "seconds": 16.0}}))
    assert result.score == pytest.approx(0.8)
    never = grader.grade(context(tmp_path, {"cold_start": {"healthy": False, "seconds": None,
                                                           "problem": "no 200 within 60 s"}}))
    assert never.score == 0 and "no 200 within 60 s" in never.explanation


def test_correctness_needs_the_label_and_every_probability_within_atol(tmp_path):
    grader = make("endpoint_correctness", reference="reference", atol=0.02)
    predictions = [
        {"label": 0, "probabilities": [0.715, 0.19, 0.095]},  # within 0.02: right
        {"label": 2, "probabilities": [0.1, 0.33, 0.57]},  # off by 0.03: wrong
        {"label": 0, "probabilities": [0.2, 0.5, 0.3]},  # wrong label
        None,  # no answer
    ]
    report = {"correctness": {"sent": 4, "answered": 3, "predictions": predictions,
                              "problems": ["batch 1: 500"]}}
    result = grader.grade(context(tmp_path, report))
    assert result.score == pytest.approx(0.25)
    problems = {m["index"]: m["problem"] for m in result.details["mismatches"]}
    assert problems[1].startswith("a probability is off by 0.03") and "label 0, expected 1" in problems[2]
    assert problems[3] == "no usable prediction" and result.metrics["answered"] == 3


def test_robustness_counts_cases_the_probe_never_ran_as_failed(tmp_path):
    grader = make("endpoint_robustness", cases=CASES)
    report = {"robustness": [
        {"case": "invalid_json", "status": 400, "json_body": True, "healthy_after": True, "passed": True},
        {"case": "empty_batch", "status": 500, "json_body": False, "healthy_after": True, "passed": False,
         "problem": "HTTP 500"}], "skipped": ["huge_body: server not healthy"]}
    result = grader.grade(context(tmp_path, report))
    assert result.score == pytest.approx(1 / 3)
    rows = {r["case"]: r for r in result.details["cases"]}
    assert not rows["huge_body"]["passed"] and "not run" in rows["huge_body"]["problem"]
    assert "empty_batch, huge_body" in result.explanation


def test_latency_scores_p99_between_thresholds_and_zero_when_errors_exceed_the_cap(tmp_path):
    grader = make("endpoint_latency", zero=200, full=50, max_error_rate=0.01)
    histogram = HdrHistogram(1, 60_000_000, 3)
    for value in range(1000, 101_000, 1000):  # 1 ms .. 100 ms, uniform
        histogram.record_value(value)
    encoded = histogram.encode().decode()
    # p99 = 125 ms lies half way from 200 (0) to 50 (1)
    result = grader.grade(context(tmp_path, {"latency": latency(125.0, histogram=encoded)}))
    assert result.score == pytest.approx(0.5)
    files = set(result.details["artifacts"])
    assert files == {"latency.png", "latency.hgrm", "latency.hdr"}
    assert (tmp_path / "artifacts" / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Percentile" in (tmp_path / "artifacts" / "latency.hgrm").read_text()
    busy = grader.grade(context(tmp_path, {"latency": latency(10.0, errors=20)}))  # 2% > 1%
    assert busy.score == 0 and "2.0% of requests failed" in busy.explanation


def test_capacity_maps_rate_linearly_and_draws_the_curve(tmp_path):
    grader = make("endpoint_capacity", zero=50, full=400, objective_ms=50)
    steps = [{"rate": r, "p50_ms": 2, "p99_ms": p99, "error_rate": 0.0, "ok": p99 <= 50}
             for r, p99 in ((50, 5), (100, 8), (200, 20), (400, 90))]
    result = grader.grade(context(tmp_path, {"capacity": {"capacity_rps": 200, "steps": steps}}))
    assert result.score == pytest.approx(150 / 350)
    assert (tmp_path / "artifacts" / "capacity.png").is_file()


@pytest.mark.parametrize(("report", "problem"), [
    (None, "not produced: stage serve"),
    ("{not json", "probe report unusable"),
    ('{"cold_start": {"healthy": "yes please"}}', "cold_start.healthy"),
    ('{"latency": {"rate": -1, "duration_s": 1, "scheduled": 1, "completed": 1, "errors": 0, "timeouts": 0}}',
     "latency.rate"),
    ("[" * 100_000, "probe report unusable"),
])
def test_a_missing_or_malformed_report_scores_zero_with_the_reason(tmp_path, report, problem):
    for name, args in (("endpoint_cold_start", {"zero": 60, "full": 5}),
                       ("endpoint_robustness", {"cases": CASES})):
        result = make(name, **args).grade(context(tmp_path, report))
        assert result.score == 0 and problem in result.explanation, result.explanation


def test_spec_checks_name_the_missing_output_and_data_set(tmp_path):
    spec = AssignmentSpec.model_validate({
        "schema_version": 1, "id": "e", "version": "1", "title": "e", "brief": "B.md",
        "data": {"visible": {"inputs": "inputs"}, "hidden": {"reference": "reference"}},
        "stages": [{"name": "serve", "command": ["x"], "timeout": 100,
                    "probe": {"command": ["p"], "timeout": 50, "data": ["inputs"],
                              "outputs": {"probe.json": "1m"}}}],
        "graders": [{"name": "c", "grader": "endpoint_correctness", "weight": 1,
                     "args": {"reference": "missing"}},
                    {"name": "l", "grader": "endpoint_latency", "weight": 1,
                     "args": {"probe": "other.json", "zero": 200, "full": 50}}]})
    from harness.errors import SpecError

    with pytest.raises(SpecError, match="'missing' is not a hidden data set"):
        build_graders(Assignment(spec, tmp_path))
    spec = spec.model_copy(update={"graders": spec.graders[1:]})
    with pytest.raises(SpecError, match="'other.json' is not an output"):
        build_graders(Assignment(spec, tmp_path))


def test_load_scores_can_be_scaled_by_the_correct_share(tmp_path):
    grader = make("endpoint_latency", zero=200, full=50, scale_by_correctness="reference")
    right = [dict(r) for r in REFERENCE]
    half = right[:2] + [None, None]  # 2 of 4 reference answers
    report = {"latency": latency(50.0), "correctness": {"sent": 4, "answered": 2, "predictions": half}}
    result = grader.grade(context(tmp_path, report))
    assert result.score == pytest.approx(0.5)
    assert "correct share of the hidden inputs (50%)" in result.explanation


# --- the gating rule: robustness and cold start count only from a service that serves ------------

SERVING = {"reference": "reference", "atol": 0.02, "min_share": 0.5}  # 2 of the 4 reference inputs
ALL_REFUSED = [{"case": c, "status": 404, "json_body": True, "healthy_after": True, "passed": True}
               for c in CASES]


def _served(correct: int, problems: list[str] = ()) -> dict:
    """A healthy server that got the first `correct` of the 4 reference inputs right, and every bad
    request refused."""
    answers = [dict(r) for r in REFERENCE[:correct]] + [None] * (len(REFERENCE) - correct)
    return {"cold_start": {"healthy": True, "seconds": 1.0}, "robustness": ALL_REFUSED,
            "correctness": {"sent": 4, "answered": correct, "predictions": answers,
                            "problems": list(problems)}}


def test_a_server_that_refuses_every_valid_request_gets_no_robustness_or_cold_start(tmp_path):
    # What a server without the /predict route does: a 404 to everything, the bad requests included,
    # so every robustness case "passes" and it is healthy at once.
    report = _served(0, ["batch 0: HTTP 404: {\"detail\":\"Not Found\"}"])
    robustness = make("endpoint_robustness", cases=CASES, serving=SERVING).grade(context(tmp_path, report))
    cold = make("endpoint_cold_start", zero=60, full=5, serving=SERVING).grade(context(tmp_path, report))
    for result in (robustness, cold):
        assert result.score == 0 and result.metrics["served"] == 0
        assert "does not serve valid requests: 0/4 hidden inputs answered right" in result.explanation
        assert 'HTTP 404: {"detail":"Not Found"}' in result.explanation  # why: what its answers were
        assert "counts only from 2 (50%) on" in result.explanation
    assert robustness.metrics["measured_score"] == 1
    assert "Measured: 3/3 bad requests" in robustness.explanation
    assert cold.metrics["measured_score"] == 1 and "Healthy after 1.00 s" in cold.explanation
    # without the gate (as before it), the same report earned full robustness and cold start
    assert make("endpoint_robustness", cases=CASES).grade(context(tmp_path, report)).score == 1


def test_the_gate_opens_at_the_floor_and_then_changes_nothing(tmp_path):
    below, at = _served(1), _served(2)  # 1/4 is under the 50% floor, 2/4 meets it
    grader = make("endpoint_robustness", cases=CASES, serving=SERVING)
    assert grader.grade(context(tmp_path, below)).score == 0
    opened = grader.grade(context(tmp_path, at))
    assert opened.score == 1 and "served" not in opened.metrics  # not scaled: a gate, not a weight
    # 16 s lies 44/55 of the way from 60 s (0) to 5 s (1): 0.8, as without the gate
    at["cold_start"]["seconds"] = 16.0
    cold = make("endpoint_cold_start", zero=60, full=5, serving=SERVING).grade(context(tmp_path, at))
    assert cold.score == pytest.approx(0.8)


def test_a_server_that_exited_at_start_is_told_apart_from_one_that_never_answered(tmp_path):
    report = {"cold_start": {"healthy": False, "exited": True, "attempts": 3,
                             "problem": "the server exited 1.2 s after its start, before it answered 200 "
                                        "on GET /health (3 attempts; last: connection refused)"},
              "service_exited_s": 1.25, "skipped": ["correctness: the server exited"]}
    result = make("endpoint_cold_start", zero=60, full=5, serving=SERVING).grade(context(tmp_path, report))
    assert result.score == 0 and result.metrics == {"healthy": 0.0, "exited_s": 1.25}
    assert result.explanation.startswith("The server never became healthy: the server exited 1.2 s")


def test_a_serving_gate_must_name_a_hidden_data_set(tmp_path):
    from harness.errors import SpecError

    spec = AssignmentSpec.model_validate({
        "schema_version": 1, "id": "e", "version": "1", "title": "e", "brief": "B.md",
        "data": {"visible": {"inputs": "inputs"}, "hidden": {"reference": "reference"}},
        "stages": [{"name": "serve", "command": ["x"], "timeout": 100,
                    "probe": {"command": ["p"], "timeout": 50, "data": ["inputs"],
                              "outputs": {"probe.json": "1m"}}}],
        "graders": [{"name": "r", "grader": "endpoint_robustness", "weight": 1,
                     "args": {"cases": CASES, "serving": {"reference": "inputs"}}}]})
    with pytest.raises(SpecError, match="serving.reference: 'inputs' is not a hidden data set"):
        build_graders(Assignment(spec, tmp_path))


def test_the_shipped_spec_gates_robustness_and_cold_start():
    from harness.data import materialize
    from harness.spec import load_assignment
    from tests.conftest import REPO

    assignment = load_assignment(REPO / "assignments" / "endpoint")
    graders = {g.name: g for g in assignment.spec.graders}
    # The gate must be out of reach of a server without a model: one constant answer to every
    # input (the best one, chosen knowing the reference) gets 16-18% of the hidden inputs right.
    data = materialize(assignment, cache_root=REPO / "results" / ".cache")
    reference = json.loads((data.hidden["reference"] / "predictions.json").read_text())

    def same(a: dict, b: dict, atol: float) -> bool:
        return a["label"] == b["label"] and all(
            abs(x - y) <= atol for x, y in zip(a["probabilities"], b["probabilities"], strict=True))

    for name in ("robustness", "cold_start"):
        serving = graders[name].args["serving"]
        best = max(sum(same(c, r, serving["atol"]) for r in reference) for c in reference) / len(reference)
        assert serving["reference"] == "reference" and serving["min_share"] >= best + 0.2, best
    # and the engineering criteria need the same evidence that the service does the task
    assert all(graders[n].requires == {"correctness": serving["min_share"]}
               for n in ("own_tests", "coverage", "code_quality"))


# --- intervals: the p99's 95% interval, the capacity's bracket --------------------------------------

def test_latency_shows_the_p99_interval_and_scores_the_point_estimate(tmp_path):
    grader = make("endpoint_latency", zero=250, full=50)
    result = grader.grade(context(tmp_path, {"latency": latency(2.4) | {"p99_ci_ms": [2.1, 2.9]}}))
    assert "p99 2.4 ms (95% CI 2.1-2.9) at 100 requests/s" in result.explanation
    assert result.metrics["p99_ci_low_ms"] == 2.1 and result.metrics["p99_ci_high_ms"] == 2.9
    # 150 ms lies half way from 250 (0) to 50 (1), whatever the interval's ends
    wide = grader.grade(context(tmp_path, {"latency": latency(150.0) | {"p99_ci_ms": [40.0, None]}}))
    assert wide.score == pytest.approx(0.5)
    assert "p99 150.0 ms (95% CI 40.0 or more)" in wide.explanation and "p99_ci_high_ms" not in wide.metrics


def _sample(index: int, phase: str, rate: float) -> dict:
    return {"input": index, "phase": phase, "rate": rate, "status": 200, "prediction": REFERENCE[index]}


def test_capacity_counts_the_latency_run_as_a_step_and_shows_the_bracket(tmp_path):
    # The latency run met the objective at 100/s, so the search began above it: 200 passed, 400
    # failed. The latency run's step is checked against the latency phase's sampled answers.
    grader = make("endpoint_capacity", zero=100, full=800, objective_ms=50, scale_by_correctness="reference")
    steps = [{"rate": 100, "phase": "latency", "p99_ms": 3, "error_rate": 0, "ok": True},
             {"rate": 200, "p99_ms": 4, "p99_ci_ms": [3, 6], "error_rate": 0, "ok": True, "stopped": "pass"},
             {"rate": 400, "p99_ms": 90, "p99_ci_ms": [70, 120], "error_rate": 0, "ok": False,
              "stopped": "fail"}]
    samples = [_sample(0, "latency", 100), _sample(1, "capacity", 200), _sample(2, "capacity", 400)]
    report = {"capacity": {"capacity_rps": 200, "steps": steps},
              "correctness": {"sent": 4, "answered": 4, "predictions": REFERENCE},
              "load_check": {"pool": 4, "samples": samples}}
    result = grader.grade(context(tmp_path, report))
    assert result.score == pytest.approx(100 / 700)  # 200/s: 100/700 of the way from 100 to 800
    assert result.metrics["capacity_low_rps"] == 200 and result.metrics["capacity_high_rps"] == 400
    assert "Capacity 200 requests/s (between 200 and 400" in result.explanation
    # only the latency run passed: it is the capacity, verified by its own phase's samples
    first = report | {"capacity": {"capacity_rps": 100, "steps": [steps[0], steps[2] | {"rate": 200}]},
                      "load_check": {"pool": 4, "samples": [samples[0], _sample(1, "capacity", 200)]}}
    result = grader.grade(context(tmp_path, first))
    assert result.metrics["capacity_rps"] == 100 and result.metrics["capacity_high_rps"] == 200
    # every rate passed: a lower bound, no upper end
    capped = grader.grade(context(tmp_path, report | {"capacity": {"capacity_rps": 200, "capped": True,
                                                                    "steps": steps[:2]}}))
    assert "or more" in capped.explanation and "capacity_high_rps" not in capped.metrics
