"""The endpoint probe (sandbox/runners/probe.py and siblings) against loopback servers, no Docker.

Servers: the toy model server of tests/runner_stubs.py (well-behaved or misbehaving on purpose)
and raw asyncio servers that answer garbage. Everything stays on 127.0.0.1. Expected predictions
come from an independent numpy softmax, not from the probe's code.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graders.endpoint._probe_report import ProbeReport
from tests.runner_stubs import MAX_BATCH, N_CLASSES, N_FEATURES, RUNNERS_DIR, Behaviour, model_server

# isort: split
import http11
import probe
from probe_checks import Target, robustness_cases, run_robustness, wait_healthy
from probe_correctness import run_correctness

CASES = [case.name for case in robustness_cases(max_batch=MAX_BATCH, n_features=N_FEATURES)]
VALIDATION_CASES = [c for c in CASES if c not in ("unknown_route", "wrong_method")]
FAST = ["--timeout", "0.5", "--rate", "50", "--duration", "0.4", "--warmup", "0.1", "--connections", "4",
        "--capacity-low", "50", "--capacity-high", "100", "--capacity-factor", "2", "--capacity-refine", "0",
        "--capacity-duration", "0.3", "--capacity-warmup", "0.1", "--settle", "0.05"]


def _inputs(n: int = 40, seed: int = 0) -> list[list[float]]:
    return np.random.default_rng(seed).normal(0, 2, (n, N_FEATURES)).round(4).tolist()


def _expected(inputs: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Reference for the toy model: numpy softmax over the first three features, label = argmax."""
    logits = np.asarray(inputs)[:, :N_CLASSES]
    exps = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = exps / exps.sum(axis=1, keepdims=True)
    return probabilities.argmax(axis=1), probabilities


def _files(tmp_path: Path, port: int, inputs: list[list[float]] | None = None) -> list[str]:
    (tmp_path / "serve.json").write_text(json.dumps({"command": ["python", "server.py"], "port": port}))
    (tmp_path / "inputs.json").write_text(json.dumps(inputs if inputs is not None else _inputs()))
    return ["--manifest", str(tmp_path / "serve.json"), "--inputs", str(tmp_path / "inputs.json"),
            "--out", str(tmp_path / "probe.json")]


def _main(argv: list[str]) -> int:
    """The probe in this process, its cold start counted from now (as from its start when run alone)."""
    return probe.main(argv, origin=time.monotonic())


def _report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "probe.json").read_text())


# --- cold start ------------------------------------------------------------------------------------

def test_health_wait_polls_until_the_first_200():
    started = time.monotonic()
    with model_server(Behaviour(healthy_after_s=1.0)) as port:
        target = Target("127.0.0.1", port)
        health = asyncio.run(wait_healthy(target, deadline=time.monotonic() + 10, timeout_s=1))
    assert health.healthy and health.problem == ""
    assert health.at - started >= 1.0
    assert health.attempts > 1  # 503s first, every 50 ms


def test_never_healthy_server_skips_the_later_phases_and_still_writes_the_report(tmp_path):
    with model_server(Behaviour(never_healthy=True)) as port:
        code = _main(_files(tmp_path, port) + ["--health-timeout", "0.5", *FAST])
    report = _report(tmp_path)
    assert code == 0
    cold = report["cold_start"]
    assert cold["healthy"] is False and cold["seconds"] is None and cold["attempts"] > 1
    assert "HTTP 503" in cold["problem"] and "0.5 s" in cold["problem"]
    assert [line.split(":")[0] for line in report["skipped"]] == ["correctness", "robustness", "latency",
                                                                 "capacity"]
    assert report["correctness"] is None and report["latency"] is None and report["robustness"] == []
    ProbeReport.model_validate(report)


def test_nothing_listening_is_not_healthy_with_the_reason(tmp_path):
    with model_server() as port:
        pass  # the port is closed now
    assert _main(_files(tmp_path, port) + ["--health-timeout", "0.3", *FAST]) == 0
    assert "connection refused" in _report(tmp_path)["cold_start"]["problem"]


def test_bad_manifest_is_reported_and_nothing_is_sent(tmp_path):
    args = _files(tmp_path, 8000)
    (tmp_path / "serve.json").write_text('{"command": "python server.py", "port": 8000}')
    assert _main(args + FAST) == 0
    report = _report(tmp_path)
    assert "non-empty list of strings" in report["manifest"]["problem"] and report["manifest"]["port"] is None
    assert report["cold_start"] is None and len(report["skipped"]) == 5
    ProbeReport.model_validate(report)


def test_unusable_inputs_are_the_harness_failure_but_the_report_is_written(tmp_path):
    args = _files(tmp_path, 8000, inputs=[[1.0, 2.0]])
    assert _main(args + FAST) == 1
    assert all("probe inputs unusable" in line for line in _report(tmp_path)["skipped"])


@pytest.mark.parametrize("host", ["10.0.0.1", "8.8.8.8", "example.com", "0.0.0.0"])
def test_only_loopback_targets(tmp_path, host):
    with pytest.raises(SystemExit) as exit_info:
        _main(_files(tmp_path, 8000) + ["--host", host])
    assert exit_info.value.code == 2
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(http11.fetch(host, 80, "GET", "/", timeout_s=0.1))


# --- correctness -----------------------------------------------------------------------------------

def _correctness(behaviour: Behaviour, inputs: list[list[float]], *, batch_size: int = 8,
                 timeout_s: float = 2.0) -> dict:
    with model_server(behaviour) as port:
        return asyncio.run(run_correctness(Target("127.0.0.1", port), inputs, batch_size=batch_size,
                                           n_classes=N_CLASSES, timeout_s=timeout_s))


def test_correct_answers_are_recorded_in_order():
    inputs = _inputs(37)  # not a multiple of the batch size
    section = _correctness(Behaviour(), inputs)
    labels, probabilities = _expected(inputs)
    assert section["sent"] == section["answered"] == 37 and section["problems"] == []
    assert [p["label"] for p in section["predictions"]] == labels.tolist()
    np.testing.assert_allclose([p["probabilities"] for p in section["predictions"]], probabilities, atol=1e-9)


def test_wrongly_shaped_predictions_become_null_with_a_problem_each():
    def predict(instances):
        answers = [{"label": 0, "probabilities": [0.5, 0.25, 0.25]} for _ in instances]
        answers[0] = {"label": 7, "probabilities": [0.5, 0.25, 0.25]}  # label out of range
        answers[1] = {"label": 1, "probabilities": [0.5, 0.5]}  # too few probabilities
        answers[2] = "cat"
        answers[3] = {"label": True, "probabilities": [0.5, 0.25, 0.25]}  # a bool is not a label
        return {"predictions": answers}

    section = _correctness(Behaviour(predict=predict), _inputs(8), batch_size=8)
    assert [p is None for p in section["predictions"]] == [True] * 4 + [False] * 4
    assert section["answered"] == 4 and len(section["problems"]) == 4
    assert "item 0: label 7" in section["problems"][0] and "item 2: a str" in section["problems"][2]


@pytest.mark.parametrize(("predict", "problem"), [
    (lambda rows: {"predictions": [{"label": 0, "probabilities": [1, 0, 0]}] * (len(rows) - 1)},
     "7 predictions for 8 instances"),
    (lambda rows: {"answers": []}, 'answer has no "predictions" list'),
    (lambda rows: [1, 2, 3], 'answer has no "predictions" list'),
])
def test_a_batch_answer_of_the_wrong_shape_nulls_the_batch(predict, problem):
    section = _correctness(Behaviour(predict=predict), _inputs(16), batch_size=8)
    assert section["answered"] == 0 and section["problems"] == [f"batch 0: {problem}", f"batch 1: {problem}"]


def test_a_batch_answered_500_is_null_and_the_others_are_kept():
    inputs = _inputs(24)
    inputs[10][5] = 999.0  # in batch 1 (instances 8..15)
    section = _correctness(Behaviour(fail_when=lambda rows: any(r[5] == 999.0 for r in rows)), inputs)
    labels, _ = _expected(inputs)
    got = section["predictions"]
    assert section["problems"] == ['batch 1: HTTP 500: {"error": "internal"}'] and section["answered"] == 16
    assert all(p is None for p in got[8:16])
    assert [p["label"] for p in got[:8] + got[16:]] == labels[:8].tolist() + labels[16:].tolist()


def test_a_hanging_server_is_given_up_on_after_three_silent_batches():
    section = _correctness(Behaviour(service_s=30.0), _inputs(40), timeout_s=0.2)
    assert section["answered"] == 0 and section["sent"] == 24  # 3 batches of 8
    assert section["problems"][:3] == [f"batch {i}: no complete answer within 0.2 s" for i in range(3)]
    assert "batches 3..4 not sent" in section["problems"][3]


# --- robustness ------------------------------------------------------------------------------------

def _robustness(behaviour: Behaviour, timeout_s: float = 1.0) -> dict[str, dict]:
    with model_server(behaviour) as port:
        cases = asyncio.run(run_robustness(Target("127.0.0.1", port), max_batch=MAX_BATCH,
                                           n_features=N_FEATURES, timeout_s=timeout_s))
    assert [c["case"] for c in cases] == CASES
    return {c["case"]: c for c in cases}


def test_a_well_behaved_server_passes_every_case():
    cases = _robustness(Behaviour())
    failed = {name: c["problem"] for name, c in cases.items() if not c["passed"]}
    assert failed == {}
    assert all(400 <= c["status"] < 500 and c["healthy_after"] for c in cases.values())
    assert cases["unknown_route"]["status"] == 404 and cases["wrong_method"]["status"] == 405
    assert cases["huge_body"]["status"] == 413  # answered before the 8 MB were read, then closed
    assert cases["wrong_content_type"]["status"] == 415
    assert all(cases[name]["json_body"] for name in VALIDATION_CASES)


def test_500s_on_bad_input_fail_those_cases_only():
    cases = _robustness(Behaviour(on_bad_input="500"))
    assert {name for name, c in cases.items() if not c["passed"]} == set(VALIDATION_CASES)
    assert all(cases[name]["problem"] == "HTTP 500, expected 4xx" for name in VALIDATION_CASES)
    assert all(c["healthy_after"] for c in cases.values())


@pytest.mark.slow
def test_a_hang_fails_the_case_and_the_server_is_still_healthy():
    cases = _robustness(Behaviour(on_bad_input="hang"), timeout_s=0.3)
    assert {name for name, c in cases.items() if not c["passed"]} == set(VALIDATION_CASES)
    for name in VALIDATION_CASES:
        assert cases[name]["status"] is None and cases[name]["healthy_after"]
        assert cases[name]["problem"].startswith("no complete answer within"), cases[name]
    assert cases["huge_body"]["problem"].startswith("no complete answer within 0.9 s")  # 3 timeouts


def test_a_server_that_dies_fails_that_case_and_every_later_one():
    cases = _robustness(Behaviour(on_bad_input="die"), timeout_s=0.2)
    assert all(not c["passed"] and c["healthy_after"] is False for c in cases.values())
    first = cases["invalid_json"]["problem"]
    assert first.startswith("connection closed before a complete answer")
    assert "not healthy afterwards" in first
    assert cases["wrong_method"]["problem"].startswith("connection refused")


# --- the HTTP client against hostile answers -------------------------------------------------------

async def _endless(writer: asyncio.StreamWriter, head: bytes, chunk: bytes) -> None:
    writer.write(head)
    while True:
        writer.write(chunk)
        await writer.drain()


async def _drip(writer: asyncio.StreamWriter) -> None:
    for byte in b"HTTP/1.1 200 OK\r\n":
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.05)


RAW = {  # what a raw server does after reading the request head
    "garbage": lambda w: w.write(b"SSH-2.0-OpenSSH_9.6\r\n"),
    "endless_body": lambda w: _endless(w, b"HTTP/1.1 200 OK\r\n\r\n", b"x" * 65536),
    "endless_head": lambda w: _endless(w, b"HTTP/1.1 200 OK\r\n", b"X-Filler: yes\r\n" * 1000),
    "endless_chunks": lambda w: _endless(w, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                         b"8000\r\n" + b"x" * 0x8000 + b"\r\n"),
    "huge_length": lambda w: w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"),
    "half_answer": lambda w: w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"),
    "close": lambda w: None,
    "drip": _drip,
    "silent": lambda w: asyncio.sleep(30),
    "chunked": lambda w: w.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
                                 b"\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"),
    "http10": lambda w: w.write(b"HTTP/1.0 201 Created\r\n\r\n{\"a\":1}"),
    # byte 0xB2 is "²" in latin-1: str.isdigit() says yes, int() says no
    "superscript_status": lambda w: w.write(b"HTTP/1.1 \xb200 OK\r\nContent-Length: 0\r\n\r\n"),
    "superscript_length": lambda w: w.write(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n"),
    "arabic_digit_length": lambda w: w.write("HTTP/1.1 200 OK\r\nContent-Length: ٣\r\n\r\n".encode()),
    "superscript_chunk": lambda w: w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\xb2\r\n"),
    "signed_chunk": lambda w: w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n"),
    "no_reason": lambda w: w.write(b"HTTP/1.1 204\r\n\r\n"),
}


async def _fetch_from_raw(behave: Callable[[asyncio.StreamWriter], Awaitable | None]) -> http11.Response:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            outcome = behave(writer)
            if outcome is not None:
                await outcome
            if behave is not RAW["close"]:
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        return await http11.fetch("127.0.0.1", server.sockets[0].getsockname()[1], "GET", "/health",
                                  timeout_s=0.5)


@pytest.mark.parametrize(("name", "problem"), [
    ("garbage", "bad HTTP answer: not an HTTP/1.x response: b'SSH-2.0"),
    ("endless_body", "bad HTTP answer: response body over the 1048576-byte bound"),
    ("endless_head", "bad HTTP answer: response head longer than 65536 bytes"),
    ("endless_chunks", "bad HTTP answer: chunked body over the 1048576-byte bound"),
    ("huge_length", "bad HTTP answer: Content-Length 99999999999 is over the 1048576-byte bound"),
    ("half_answer", "connection closed before a complete answer (after 43 bytes"),
    ("close", "connection closed before a complete answer"),
    ("drip", "no complete answer within 0.5 s (got "),
    ("silent", "no complete answer within 0.5 s"),
    ("superscript_status", "bad HTTP answer: not an HTTP/1.x status line: 'HTTP/1.1 ²00 OK'"),
    ("superscript_length", "bad HTTP answer: bad Content-Length '²'"),
    ("arabic_digit_length", "bad HTTP answer: bad Content-Length"),
    ("superscript_chunk", "bad HTTP answer: bad chunk size b'\\xb2'"),
    ("signed_chunk", "bad HTTP answer: bad chunk size b'-1'"),
])
def test_hostile_answers_become_one_line_problems(name, problem):
    started = time.monotonic()
    with pytest.raises(http11.FetchError) as error:
        asyncio.run(_fetch_from_raw(RAW[name]))
    assert str(error.value).startswith(problem), str(error.value)
    assert error.value.timed_out == (name in ("drip", "silent"))
    assert time.monotonic() - started < 10  # bounded by the 0.5 s timeout, not by the server


@pytest.mark.parametrize(("name", "status", "keep_alive", "body"), [
    ("chunked", 200, True, b'{"a":1}'), ("http10", 201, False, b'{"a":1}'), ("no_reason", 204, False, b"")])
def test_valid_framings_are_read(name, status, keep_alive, body):
    response = asyncio.run(_fetch_from_raw(RAW[name]))
    assert (response.status, response.body) == (status, body)
    if name != "no_reason":  # fetch always asks for Connection: close; the server's answer says
        assert response.keep_alive == keep_alive


# Any bytes at all from the server: a response, "need more", or ProtocolError, never another
# exception (the class of the "²00" crash). Generated from pieces of real responses, so that most
# examples get past the first checks, plus raw noise.
_PIECES = st.sampled_from([b"HTTP/1.1 ", b"HTTP/1.0 ", b"200", b"\xb200", b"\xd9\xa3", b"404 Not Found", b" ",
                           b"\r\n", b"\r\n\r\n", b"Content-Length: ", b"Transfer-Encoding: chunked", b"0",
                           b"-1", b"1_0", b"+5", b"ff", b"99999999999999999999", b"\x00", b"\xff", b";ext",
                           b"Connection: close", b"100 Continue", b":", b"{}"])
_RESPONSES = st.one_of(st.binary(max_size=300), st.lists(_PIECES, max_size=30).map(b"".join))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_RESPONSES, eof=st.booleans(), head_request=st.booleans())
def test_any_bytes_parse_or_raise_protocol_error_only(raw, eof, head_request):
    try:
        parsed = http11.parse_response(raw, eof=eof, max_body=1000, head_request=head_request)
    except http11.ProtocolError:
        return
    if parsed is not None:
        response, used = parsed
        assert 100 <= response.status <= 599 and 0 < used <= len(raw) and len(response.body) <= 1000


# --- the whole probe, as the harness runs it -------------------------------------------------------

def test_probe_runs_as_a_subprocess_and_writes_a_valid_report(tmp_path):
    inputs = _inputs(24)
    with model_server() as port:
        command = [sys.executable, "-s", "-E", str(RUNNERS_DIR / "probe.py"), *_files(tmp_path, port, inputs),
                   "--correctness-batch", "10", *FAST]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = _report(tmp_path)
    ProbeReport.model_validate(report)  # the host's reader accepts it
    assert report["skipped"] == [] and report["manifest"] == {"port": port, "problem": ""}
    assert report["cold_start"]["healthy"] and report["cold_start"]["seconds"] > 0
    labels, _ = _expected(inputs)
    assert [p["label"] for p in report["correctness"]["predictions"]] == labels.tolist()
    assert [c["case"] for c in report["robustness"]] == CASES
    assert all(c["passed"] for c in report["robustness"])
    latency = report["latency"]
    assert latency["scheduled"] == latency["completed"] == 20 and latency["error_rate"] == 0  # 50/s for 0.4 s
    assert HdrHistogram.decode(latency["histogram"]).get_total_count() == latency["completed"]
    low, high = latency["p99_ci_ms"]
    assert low <= latency["p99_ms"] * 1.001 and latency["p99_ms"] <= high * 1.001  # hdrh rounds up 0.1%
    capacity = report["capacity"]
    steps = capacity["steps"]
    # the grid is 50, 100; the latency run met the objective at 50/s, so it is the step at 50
    assert [(s["rate"], s["phase"]) for s in steps] == [(50, "latency"), (100, "capacity")] and steps[0]["ok"]
    assert steps[0]["window"] == latency["window"]
    assert capacity["capacity_rps"] == capacity["capacity_low_rps"]
    assert capacity["capacity_rps"] == max(s["rate"] for s in steps if s["ok"])
    assert capacity["capped"] == all(s["ok"] for s in steps)
    assert capacity["capacity_high_rps"] == (None if capacity["capped"] else 100)
    # each phase's run on the monotonic clock, in order, and each load window inside its phase
    phases = report["phases"]
    assert list(phases) == ["cold_start", "correctness", "robustness", "latency", "capacity"]
    bounds = [t for phase in phases.values() for t in phase]
    assert bounds == sorted(bounds)
    assert phases["latency"][0] < latency["window"][0] < latency["window"][1] <= phases["latency"][1]
    assert phases["capacity"][0] < steps[1]["window"][0] < steps[1]["window"][1] <= phases["capacity"][1]
    assert "probe: healthy after" in done.stderr


def test_a_server_that_dies_on_bad_input_gets_no_load_phases(tmp_path):
    with model_server(Behaviour(on_bad_input="die")) as port:
        assert _main(_files(tmp_path, port) + [*FAST, "--timeout", "0.2"]) == 0  # the last --timeout wins
    report = _report(tmp_path)
    assert report["correctness"]["answered"] == 40
    assert not any(c["passed"] for c in report["robustness"])
    assert report["latency"] is None and report["capacity"] is None
    assert [line.split(" (")[0] for line in report["skipped"]] == [
        "latency: server not healthy after the robustness checks",
        "capacity: server not healthy after the robustness checks"]


def test_the_command_line_documents_itself():
    command = [sys.executable, "-I", str(RUNNERS_DIR / "probe.py"), "--help"]  # -I: no script dir on sys.path
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--capacity-high CAPACITY_HIGH" in done.stdout and "(default 1600.0)" in done.stdout


def test_the_probe_run_alone_counts_its_cold_start_from_the_time_it_is_given(tmp_path):
    # The probe as the sandbox starts it: a server up at once, and the backend saying it started
    # 3 s ago. The cold start must count those 3 s (a lower bound the value sets, not a timing).
    from sandbox import SERVICE_STARTED_ENV

    assert probe.SERVICE_STARTED_ENV == SERVICE_STARTED_ENV  # the probe runs alone: its own copy
    with model_server(Behaviour()) as port:
        env = {**os.environ, SERVICE_STARTED_ENV: f"{time.time() - 3:.6f}"}
        proc = subprocess.run([sys.executable, str(RUNNERS_DIR / "probe.py"), *_files(tmp_path, port), *FAST],
                              env=env, cwd=RUNNERS_DIR, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = _report(tmp_path)
    assert report["cold_start"]["healthy"] and report["cold_start"]["seconds"] >= 3
    assert report["probe_seconds"] < report["cold_start"]["seconds"] + 60  # its own run, from its start


def test_cold_start_counts_from_the_service_start_the_backend_passes() -> None:
    # hand-computed: the service started 0.3 s (wall clock) before the probe's clocks were read
    assert probe._service_start(100.0, 5000.0, "4999.7") == pytest.approx(99.7)
    assert probe._service_start(100.0, 5000.0, None) == 100.0  # not told: the probe's own start
    assert probe._service_start(100.0, 5000.0, "soon") == 100.0
    assert probe._service_start(100.0, 5000.0, "5001") == 100.0  # in the future: ignored
    assert probe._service_start(100.0, 5000.0, "4000") == 100.0  # more than 60 s back: ignored


def test_a_probe_told_that_its_server_exited_stops_waiting_and_says_so(tmp_path):
    # Nothing listens (a server that exited at start): the probe would poll /health for its whole
    # timeout (here 600 s). The backend's SIGHUP must end the wait with that cause in the report.
    from sandbox._service import SERVICE_EXITED_SIGNAL

    assert probe.SERVICE_EXITED_SIGNAL == SERVICE_EXITED_SIGNAL  # the probe runs alone: its own copy
    with model_server() as port:
        pass  # the port is closed now
    command = [sys.executable, "-s", "-E", str(RUNNERS_DIR / "probe.py"), *_files(tmp_path, port),
               "--health-timeout", "600", *FAST]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(400):  # until it handles the signal (before that, the signal ends it)
            if proc.poll() is not None or _catches(proc.pid, SERVICE_EXITED_SIGNAL):
                break
            time.sleep(0.05)
        proc.send_signal(SERVICE_EXITED_SIGNAL)
        _, stderr = proc.communicate(timeout=120)  # a hang guard, not a timing: 600 s would trip it
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    report = _report(tmp_path)
    ProbeReport.model_validate(report)
    cold = report["cold_start"]
    assert cold["healthy"] is False and cold["exited"] is True
    assert cold["problem"].startswith("the server exited") and "connection refused" in cold["problem"]
    assert report["service_exited_s"] is not None
    assert report["skipped"] == [f"{phase}: the server exited" for phase in
                                 ("correctness", "robustness", "latency", "capacity")]


def _catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for `signum` (the SigCgt mask of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    return False


def test_one_stall_does_not_end_the_capacity_sweep():
    # A server within the objective up to 80/s that stalled once at 40/s (a garbage collection, a
    # busy neighbour): the FastAPI example lost its capacity to one such step (p99 115 ms at 100/s
    # between 3.9 ms at 92/s and 7.1 ms in the 100/s latency run). The failing rate is measured
    # again, and only a rate that fails twice ends the sweep.
    from capacity import capacity_search
    from loadgen import LoadResult

    calls = []

    def result(rate: float, p99_ms: float) -> LoadResult:
        nan = float("nan")
        return LoadResult(rate=rate, duration_s=1, scheduled=10, sent=10, completed=10, errors=0, timeouts=0,
                          p50_ms=1.0, p90_ms=nan, p99_ms=p99_ms, p999_ms=nan, max_ms=nan, mean_ms=nan,
                          achieved_rate=rate, lag_p99_ms=0.0, uncorrected_p50_ms=nan, uncorrected_p99_ms=nan,
                          histogram="")

    async def measure(rate: float) -> LoadResult:
        calls.append(rate)
        stalled = rate == 40 and calls.count(40) == 1
        return result(rate, 100.0 if stalled or rate > 80 else 5.0)

    found = asyncio.run(capacity_search(measure, low=10, high=160, p99_ms=50, factor=2.0, refine=0, retry=1))
    assert calls == [10, 20, 40, 40, 80, 160, 160]  # 40 passes the second time; 160 fails twice
    assert found.capacity == 80 and not found.capped
    assert probe.parse_args(["--manifest", "m", "--inputs", "i", "--out", "o"]).capacity_retry == 1
