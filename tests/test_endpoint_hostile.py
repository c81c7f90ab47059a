"""Slow, broken and gaming servers against the whole probe and then the endpoint graders (no Docker).

Each case is one a real candidate can hit by accident or on purpose, and each once ended a
submission as `infra_error` or earned credit it should not have: a server hanging on /predict (the
capacity plot crashed on a search with no answered step), a probability sent as a 400-digit
integer (the probe crashed), a server slow in every phase (the probe outlasted its time limit),
load phases that replayed the correctness inputs (a cache by input row served them) and load
answers nobody checked (canned answers to single instances scored like a fast model).
Servers are tests/runner_stubs.py's toy model on 127.0.0.1; expected answers are its softmax.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.core import GRADERS, GradingContext, OutputFile
from tests.runner_stubs import N_FEATURES, Behaviour, model_server, toy_predict

# isort: split
import probe
from probe_correctness import check_prediction

FAST = ["--timeout", "0.5", "--correctness-timeout", "0.5", "--rate", "50", "--duration", "0.4",
        "--warmup", "0.1", "--connections", "4", "--capacity-low", "50", "--capacity-high", "100",
        "--capacity-factor", "2", "--capacity-refine", "0", "--capacity-duration", "0.3",
        "--capacity-warmup", "0.1", "--settle", "0.05", "--correctness-batch", "8"]
GRADER_ARGS = {
    "endpoint_cold_start": {"zero": 60, "full": 5},
    "endpoint_correctness": {"reference": "reference", "atol": 0.02},
    "endpoint_robustness": {"cases": ["invalid_json", "empty_batch", "huge_body"]},
    "endpoint_latency": {"zero": 250, "full": 50, "scale_by_correctness": "reference", "atol": 0.02},
    "endpoint_capacity": {"zero": 10, "full": 100, "objective_ms": 50, "scale_by_correctness": "reference",
                          "atol": 0.02},
}


def _rows(n: int, seed: int) -> list[list[float]]:
    return np.random.default_rng(seed).normal(0, 2, (n, N_FEATURES)).round(4).tolist()


def _probe(tmp_path: Path, port: int, *extra: str, inputs: int = 40, load: int = 2000) -> dict:
    """Run the probe in this process with distinct load inputs; its report. Writes the references
    the graders read to tmp_path/reference."""
    files = {"inputs": _rows(inputs, 0), "load_inputs": _rows(load, 1)}
    for name, rows in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(rows))
    reference = tmp_path / "reference"
    reference.mkdir(exist_ok=True)
    (reference / "predictions.json").write_text(json.dumps([toy_predict(r) for r in files["inputs"]]))
    load_reference = [toy_predict(r) for r in files["load_inputs"]]
    (reference / "load_predictions.json").write_text(json.dumps(load_reference))
    (tmp_path / "serve.json").write_text(json.dumps({"command": ["python", "server.py"], "port": port}))
    argv = ["--manifest", str(tmp_path / "serve.json"), "--inputs", str(tmp_path / "inputs.json"),
            "--load-inputs", str(tmp_path / "load_inputs.json"), "--out", str(tmp_path / "probe.json"),
            *FAST, *extra]
    now = time.monotonic()
    assert probe.main(argv, origin=now, started=now) == 0  # 0: the probe ran, whatever the server did
    return json.loads((tmp_path / "probe.json").read_text())


def _grade(tmp_path: Path, name: str):
    cls = GRADERS.get(name)
    grader = cls(name=name, weight=1.0, args=cls.Args.model_validate(GRADER_ARGS[name]))
    artifacts = tmp_path / "artifacts" / name
    artifacts.mkdir(parents=True, exist_ok=True)
    outputs = {"probe.json": OutputFile("probe.json", tmp_path / "probe.json")}
    ctx = GradingContext(submission_dir=tmp_path, outputs=outputs,
                         hidden={"reference": tmp_path / "reference"}, visible={}, assignment_dir=tmp_path,
                         artifacts_dir=artifacts)
    result = grader.grade(ctx)
    assert 0.0 <= result.score <= 1.0 and result.explanation
    return result


def _grade_all(tmp_path: Path) -> dict:
    return {name.removeprefix("endpoint_"): _grade(tmp_path, name) for name in GRADER_ARGS}


# --- crashes on plausible candidate behaviour ----------------------------------------------------

def test_a_server_hanging_on_predict_gets_zero_load_scores_with_the_reason(tmp_path):
    release = threading.Event()

    def hang(instances):
        release.wait(20)
        return {"predictions": [toy_predict(r) for r in instances]}

    try:
        with model_server(Behaviour(predict=hang)) as port:
            report = _probe(tmp_path, port)
    finally:
        release.set()
    assert report["latency"]["completed"] == 0 and report["capacity"]["capacity_rps"] == 0
    scores = _grade_all(tmp_path)  # a capacity search with no answered step crashed the plot once
    assert scores["latency"].score == 0 and scores["capacity"].score == 0
    assert "none of the 20 requests at 50/s got an answer (20 timed out after 0.5 s)" in \
        scores["latency"].explanation
    assert "even the lowest rate, 50/s, missed the objective" in scores["capacity"].explanation
    assert "No plot: no step had an answered request." in scores["capacity"].explanation
    assert scores["correctness"].score == 0 and scores["cold_start"].score > 0.9


def test_a_slow_honest_server_gets_low_load_scores_and_its_plots(tmp_path):
    with model_server(Behaviour(service_s=0.03)) as port:  # 30 ms, one request at a time: < 34/s
        report = _probe(tmp_path, port, "--rate", "40")
    scores = _grade_all(tmp_path)
    assert scores["correctness"].score == 1.0
    assert report["capacity"]["capacity_rps"] == 0 and scores["capacity"].score == 0
    assert scores["latency"].metrics["p99_ms"] > 30 and scores["latency"].score < 1  # 30 ms: a lower bound
    assert (tmp_path / "artifacts" / "endpoint_capacity" / "capacity.png").stat().st_size > 1000
    assert (tmp_path / "artifacts" / "endpoint_latency" / "latency.png").stat().st_size > 1000


@pytest.mark.parametrize("answer, problem", [
    ({"label": 0, "probabilities": [10**400, 0.0, 0.0]}, "not a finite number"),
    ({"label": 10**400, "probabilities": [1.0, 0.0, 0.0]}, "label (a 401-digit integer) is not an integer"),
    ({"label": 0, "probabilities": [1e308 * 10, 0.0, 0.0]}, "not a finite number"),
    ({"label": [[[0]]], "probabilities": [1.0, 0.0, 0.0]}, "label (a JSON list) is not an integer"),
    ({"label": True, "probabilities": [1.0, 0.0, 0.0]}, "label true is not an integer"),
])
def test_extreme_numbers_in_a_prediction_are_wrong_answers(answer, problem):
    kept, why = check_prediction(answer, 3)
    assert kept is None and problem in why


def test_a_400_digit_probability_is_counted_wrong_and_the_probe_goes_on(tmp_path):
    def huge(instances):
        answers = [toy_predict(r) for r in instances]
        answers[0]["probabilities"][0] = 10**400
        return {"predictions": answers}

    with model_server(Behaviour(predict=huge)) as port:
        report = _probe(tmp_path, port)
    assert report["skipped"] == [] and report["capacity"] is not None
    correctness = report["correctness"]
    assert correctness["answered"] == 40 - 5  # the first of each batch of 8
    assert "item 0: probabilities holds a value that is not a finite number" in correctness["problems"][0]
    assert _grade(tmp_path, "endpoint_correctness").score == pytest.approx(35 / 40)


def test_a_server_slow_in_every_phase_gets_every_phase_within_the_budget(tmp_path):
    # Healthy late, every answer just under the request timeout, bad requests hung: the phases'
    # own bounds add up to far more than the budget. The probe must plan to end within it.
    budget = 20.0
    behaviour = Behaviour(healthy_after_s=1.0, service_s=0.18, on_bad_input="hang")
    started = time.monotonic()
    with model_server(behaviour) as port:
        report = _probe(tmp_path, port, "--timeout", "0.2", "--correctness-timeout", "0.2",
                        "--correctness-batch", "1", "--budget", str(budget), inputs=200)
    took = time.monotonic() - started
    assert took < budget + 3  # the budget is the behaviour under test; 3 s for starting and writing
    assert report["budget_s"] == budget
    correctness = report["correctness"]
    assert 0 < correctness["answered"] < 200
    assert any("the probe's time budget ran out" in line for line in correctness["problems"])
    assert [c["case"] for c in report["robustness"]][:3] == ["invalid_json", "wrong_content_type",
                                                             "missing_field"]
    assert report["latency"] is not None and report["capacity"] is not None  # each got its least time
    _grade_all(tmp_path)


def test_the_budget_leaves_every_later_phase_its_least_time():
    args = probe.parse_args(["--manifest", "m", "--inputs", "i", "--out", "o", "--budget", "456"])
    plan = probe.Budget(1000.0, args)
    # hand-computed from the defaults: robustness 12 cases x (2 + 2 + 0.1) s + 2 x 2 s more for the
    # huge body + 2 s for the health check after it = 55.2 s; latency 2 (connecting) + 2 + 10 + 2
    # (the last timeout) + 2 = 18 s; a capacity step 2 + 1 + 4 + 2 + 0.5 + 2 = 11.5 s
    assert plan.robustness_s == pytest.approx(55.2)
    assert plan.latency_s == pytest.approx(18.0)
    assert plan.capacity_step_s == pytest.approx(11.5)
    assert plan.stop_at("correctness") == pytest.approx(1000 - 55.2 - 18 - 11.5)
    assert plan.stop_at("latency") == pytest.approx(1000 - 11.5)
    assert plan.stop_at("capacity") == 1000.0


def test_a_load_run_against_a_server_slow_to_accept_ends_within_its_reservation():
    # One connection at a time, a tiny backlog and 0.3 s an answer: opening the pool waits a whole
    # timeout and the last requests time out. The run must still end within what the budget keeps
    # for it (a bound the plan promises, not a performance figure).
    import asyncio
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(0.3)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    class OneAtATime(HTTPServer):
        request_queue_size = 1

    server = OneAtATime(("127.0.0.1", 0), Slow)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        args = probe.parse_args(["--manifest", "m", "--inputs", "i", "--out", "o", "--timeout", "2",
                                 "--warmup", "0.5", "--duration", "0.5", "--rate", "20"])
        started = time.monotonic()
        asyncio.run(probe.run_open_loop(host="127.0.0.1", port=server.server_address[1], path="/predict",
                                        bodies=[b"{}"], rate=args.rate, duration_s=args.duration,
                                        warmup_s=args.warmup, timeout_s=args.timeout,
                                        connections=args.connections))
        took = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert took <= probe.Budget(0.0, args).latency_s


def test_the_harness_gives_the_probe_a_budget_below_its_time_limit():
    from harness._stages import PROBE_BUDGET_ENV, probe_budget_s

    assert PROBE_BUDGET_ENV == probe.BUDGET_ENV
    assert probe_budget_s(480) == 456  # 5% of the limit
    assert probe_budget_s(10) == 8  # at least 2 s for start-up and the report
    assert probe_budget_s(3600) == 3570  # at most 30 s


# --- measurement that could be gamed --------------------------------------------------------------

def test_load_requests_never_repeat_an_input_the_server_has_seen(tmp_path):
    seen: list[tuple[int, tuple[float, ...]]] = []  # (batch size, row)
    lock = threading.Lock()

    def record(instances):
        with lock:
            seen.extend((len(instances), tuple(r)) for r in instances)
        return {"predictions": [toy_predict(r) for r in instances]}

    with model_server(Behaviour(predict=record)) as port:
        report = _probe(tmp_path, port)
    correctness = {row for size, row in seen if size == 8}
    load = [row for size, row in seen if size == 1]  # the robustness battery sends no valid single row
    assert len(correctness) == 40 and len(load) >= 20
    assert not correctness & set(load)  # a cache filled by the correctness phase never hits
    assert len(set(load)) == len(load)  # nor one filled earlier in the load phases
    assert report["load_check"]["distinct"] and not report["load_check"]["reused"]


def test_canned_answers_to_single_instances_earn_no_load_credit(tmp_path):
    honest_dir, gaming_dir = tmp_path / "honest", tmp_path / "gaming"
    for folder in (honest_dir, gaming_dir):
        folder.mkdir()

    def canned(instances):
        if len(instances) == 1:  # the load phases send one instance a request
            return {"predictions": [{"label": 0, "probabilities": [0.34, 0.33, 0.33]}]}
        return {"predictions": [toy_predict(r) for r in instances]}

    with model_server(Behaviour()) as port:
        _probe(honest_dir, port, "--load-sample", "20")
    with model_server(Behaviour(predict=canned)) as port:
        _probe(gaming_dir, port, "--load-sample", "20")
    honest, gaming = _grade(honest_dir, "endpoint_latency"), _grade(gaming_dir, "endpoint_latency")
    assert honest.score > 0.9
    assert "20/20 sampled answers of the latency requests correct" in honest.explanation
    assert _grade(gaming_dir, "endpoint_correctness").score == 1.0  # its batches are right
    assert gaming.score < 0.1 * honest.score
    assert gaming.metrics["load_answers_correct_share"] < 0.2
    assert "sampled answers of the latency requests correct" in gaming.explanation
    assert _grade(gaming_dir, "endpoint_capacity").score < 0.2


# --- every grader, any report the probe could write ------------------------------------------------

_MS = st.one_of(st.none(), st.just(0.0), st.floats(0, 3_600_000, allow_nan=False))
_COUNT = st.integers(0, 10**6)
_STEP = st.fixed_dictionaries({"rate": st.floats(0, 1e6), "p50_ms": _MS, "p99_ms": _MS,
                               "error_rate": st.floats(0, 1), "ok": st.booleans()})
_PREDICTION = st.one_of(st.none(), st.fixed_dictionaries({
    "label": st.integers(-5, 10**30), "probabilities": st.lists(st.floats(-1e300, 1e300), max_size=5)}))
_COLD = st.fixed_dictionaries({"healthy": st.booleans(), "seconds": st.one_of(st.none(), st.floats(0, 3600))})
_CORRECTNESS = st.fixed_dictionaries({"sent": st.integers(0, 100),
                                      "predictions": st.lists(_PREDICTION, max_size=6),
                                      "problems": st.lists(st.text(max_size=20), max_size=3)})
_CASE = st.fixed_dictionaries({"case": st.sampled_from(["invalid_json", "huge_body", "x"]),
                               "passed": st.booleans()})
_LATENCY = st.fixed_dictionaries({
    "rate": st.floats(0, 1e4), "duration_s": st.floats(0, 100), "scheduled": _COUNT, "completed": _COUNT,
    "errors": _COUNT, "timeouts": _COUNT, "p50_ms": _MS, "p99_ms": _MS,
    "histogram": st.sampled_from(["", "not base64 at all", "HISTFAAAAB"])})
_CAPACITY = st.fixed_dictionaries({"capacity_rps": st.one_of(st.none(), st.floats(0, 1e6)),
                                   "cut_short": st.booleans(), "steps": st.lists(_STEP, max_size=5)})
_SAMPLE = st.fixed_dictionaries({"input": _COUNT, "phase": st.sampled_from(["latency", "capacity"]),
                                 "status": st.one_of(st.none(), st.integers(100, 599)),
                                 "prediction": _PREDICTION})
_LOAD_CHECK = st.fixed_dictionaries({"pool": st.integers(0, 10), "distinct": st.booleans(),
                                     "reused": st.booleans(), "samples": st.lists(_SAMPLE, max_size=5)})
_REPORT = st.fixed_dictionaries({
    "cold_start": st.one_of(st.none(), _COLD), "correctness": st.one_of(st.none(), _CORRECTNESS),
    "robustness": st.lists(_CASE, max_size=4), "latency": st.one_of(st.none(), _LATENCY),
    "capacity": st.one_of(st.none(), _CAPACITY), "load_check": st.one_of(st.none(), _LOAD_CHECK),
    "settings": st.fixed_dictionaries({"timeout": st.one_of(st.none(), st.floats(0, 100))}),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(report=_REPORT)
def test_every_endpoint_grader_scores_any_report_without_raising(tmp_path, report):
    reference = tmp_path / "reference"
    reference.mkdir(exist_ok=True)
    answer = {"label": 1, "probabilities": [0.2, 0.7, 0.1]}
    for name in ("predictions.json", "load_predictions.json"):
        (reference / name).write_text(json.dumps([answer] * 3))
    (tmp_path / "probe.json").write_text(json.dumps(report))
    for name in GRADER_ARGS:
        result = _grade(tmp_path, name)  # asserts a score in [0, 1] and an explanation
        assert math.isfinite(result.score)


_JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**400, 10**400), st.floats(),
                               st.text(max_size=300)),
                     lambda inner: st.one_of(st.lists(inner, max_size=40),
                                             st.dictionaries(st.text(max_size=10), inner, max_size=5)),
                     max_leaves=60)
_FIELDS = st.fixed_dictionaries({"command": _JSON, "port": _JSON})
_DEEP = st.integers(1, 5000).map(lambda n: b'{"command": ["python"], "port": ' + b"[" * n + b"]" * n + b"}")
_MANIFESTS = st.one_of(st.binary(max_size=2000), _JSON.map(lambda v: json.dumps(v).encode()),
                       _FIELDS.map(lambda v: json.dumps(v).encode()), _DEEP)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=_MANIFESTS)
def test_any_serve_json_is_a_manifest_or_one_clear_error(tmp_path, raw):
    from manifest import Manifest, ManifestError, load_manifest

    path = tmp_path / "serve.json"
    path.write_bytes(raw)
    try:
        assert isinstance(load_manifest(str(path)), Manifest)
    except ManifestError as exc:
        assert "\n" not in str(exc) or len(str(exc)) < 2000


def test_kept_load_answers_become_checked_samples_whatever_they_are(tmp_path):
    report = probe.Report(str(tmp_path / "probe.json"), settings={})
    load = probe.LoadInputs([[0.0] * N_FEATURES] * 10, distinct=True, report=report, n_classes=3)
    bodies, keep, start = load.next_run(rate=4, seconds=2, sample=8)  # 8 requests, every one kept
    assert len(bodies) == 8 and keep == frozenset(range(8)) and start == 0
    good = json.dumps({"predictions": [{"label": 0, "probabilities": [1, 0, 0]}]}).encode()
    kept = [(0, 200, good), (1, 200, None), (2, 503, b"busy"), (3, 200, b"[" * 100_000),
            (4, 200, b'{"predictions": [{"label": 0, "probabilities": [1e999, 0, 0]}]}')]
    load.check(SimpleNamespace(kept=kept), start=7, phase="latency", rate=4.0)  # a fake LoadResult
    samples = report.data["load_check"]["samples"]
    assert [s["input"] for s in samples] == [7, 8, 9, 0, 1]  # request i used pool row (7 + i) % 10
    assert samples[0]["prediction"] == {"label": 0, "probabilities": [1.0, 0.0, 0.0]}
    assert samples[0]["problem"] == ""
    assert [s["problem"] for s in samples[1:]] == [
        "an answer over 65536 bytes for one instance", "HTTP 503", "answer is not JSON",
        "item 0: probabilities holds a value that is not a finite number"]
    assert load.next_run(rate=4, seconds=1, sample=2)[2] == 8  # the next run starts past the rows sent
    assert report.data["load_check"]["reused"]  # 12 requests for 10 rows


def test_the_backstop_keeps_the_capacity_steps_already_measured(tmp_path, monkeypatch):
    # If the plan were wrong and the budget's deadline struck mid-search, the steps measured so far
    # must stay in the report (cut short), not be thrown away with the phase.
    monkeypatch.setattr(probe.Budget, "stop_at", lambda self, phase: self.deadline)
    monkeypatch.setattr(probe.Budget, "fits", lambda self, phase, seconds: True)
    with model_server(Behaviour()) as port:
        report = _probe(tmp_path, port, "--capacity-high", "3200", "--capacity-duration", "1",
                        "--budget", "6")
    capacity = report["capacity"]
    assert capacity["cut_short"] and not capacity["capped"] and capacity["steps"]
    assert capacity["capacity_rps"] == max(s["rate"] for s in capacity["steps"] if s["ok"])


def _report_with_samples(tmp_path: Path, steps: list[dict], samples: list[dict], *, capacity: float) -> None:
    reference = tmp_path / "reference"
    reference.mkdir(exist_ok=True)
    right = {"label": 1, "probabilities": [0.2, 0.7, 0.1]}
    (reference / "predictions.json").write_text(json.dumps([right] * 4))
    (reference / "load_predictions.json").write_text(json.dumps([right] * 100))
    report = {"correctness": {"sent": 4, "predictions": [right] * 4},
              "latency": {"rate": 100, "duration_s": 10, "scheduled": 1000, "completed": 1000, "errors": 0,
                          "timeouts": 0, "p50_ms": 2, "p99_ms": 5},
              "capacity": {"capacity_rps": capacity, "steps": steps},
              "load_check": {"pool": 100, "distinct": True, "samples": samples}}
    (tmp_path / "probe.json").write_text(json.dumps(report))


def _sample(rate: float, *, right: bool = True, status: int = 200, phase: str = "capacity") -> dict:
    label = 1 if right else 0
    return {"input": 3, "phase": phase, "rate": rate, "status": status,
            "prediction": {"label": label, "probabilities": [0.2, 0.7, 0.1]} if status == 200 else None,
            "problem": "" if status == 200 else f"HTTP {status}"}


def test_capacity_counts_only_steps_whose_sampled_answers_are_right(tmp_path):
    # Honest up to 200/s, canned answers above: every step passes, but the steps over 200/s do not count.
    steps = [{"rate": r, "p50_ms": 1, "p99_ms": 5, "error_rate": 0, "ok": True} for r in (100, 200, 400, 800)]
    samples = [_sample(r, right=r <= 200) for r in (100, 200, 400, 800) for _ in range(3)]
    samples += [_sample(100, phase="latency")] * 5
    _report_with_samples(tmp_path, steps, samples, capacity=800)
    result = _grade(tmp_path, "endpoint_capacity")  # zero at 10/s, full at 100/s
    assert result.metrics["capacity_rps"] == 200 and result.score == 1.0
    assert "wrong do not count: capacity 200/s, not 800/s." in result.explanation
    # every step right and every rate passed: the capacity is at least the highest rate
    right = [_sample(r) for r in (100, 200, 400, 800)]
    _report_with_samples(tmp_path, steps, right, capacity=800)
    report = json.loads((tmp_path / "probe.json").read_text())
    report["capacity"]["capped"] = True
    (tmp_path / "probe.json").write_text(json.dumps(report))
    assert "Capacity 800 requests/s or more (every rate of the search passed)" in \
        _grade(tmp_path, "endpoint_capacity").explanation
    # and with every step wrong, nothing counts
    wrong = [_sample(r, right=False) for r in (100, 200, 400, 800)]
    _report_with_samples(tmp_path, steps, wrong, capacity=800)
    assert _grade(tmp_path, "endpoint_capacity").score == 0


def test_error_answers_in_the_sample_are_left_to_the_error_rate(tmp_path):
    # A server shedding load answers 503 to some sampled requests: not wrong answers (the error rate
    # already counts them); its 200s are all right, so no scaling.
    samples = [_sample(100, phase="latency")] * 17 + [_sample(100, phase="latency", status=503)] * 3
    _report_with_samples(tmp_path, [], samples, capacity=0)
    result = _grade(tmp_path, "endpoint_latency")
    assert result.score == 1.0 and result.metrics["load_answers_checked"] == 17
    assert "17/17 sampled answers of the latency requests correct" in result.explanation


def test_a_missing_load_reference_is_the_harness_failure_not_an_unchecked_pass(tmp_path):
    from harness.errors import DeterministicInfraError

    _report_with_samples(tmp_path, [], [_sample(100, phase="latency")], capacity=0)
    (tmp_path / "reference" / "load_predictions.json").unlink()
    with pytest.raises(DeterministicInfraError, match="load_predictions.json is unusable"):
        _grade(tmp_path, "endpoint_latency")
