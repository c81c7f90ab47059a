"""The probe's health wait and robustness battery against a candidate's HTTP server on loopback.

Every request has its own timeout and a bounded response (http11), so a server that hangs,
closes early, answers garbage or streams forever yields a problem line, never an exception.
Runs inside the sandbox: standard library only.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import http11

ROBUSTNESS_MAX_BODY = 16 << 20  # error answers may echo the input (FastAPI's 422 does): read more
HUGE_BODY_BYTES = 8 << 20
SLOW_CASE_FACTOR = 3  # the huge body gets this many request timeouts to be sent and answered
_PROBLEM_CHARS = 300


@dataclass(frozen=True)
class Target:
    """The server under test: a loopback address and port."""

    host: str
    port: int

    async def fetch(self, method: str, path: str, *, body: bytes = b"",
                    content_type: str | None = "application/json", timeout_s: float,
                    max_body: int = http11.MAX_BODY) -> http11.Response:
        """One request on a fresh connection. Raises http11.FetchError."""
        return await http11.fetch(self.host, self.port, method, path, body=body, content_type=content_type,
                                  timeout_s=timeout_s, max_body=max_body)


@dataclass(frozen=True)
class Health:
    healthy: bool
    attempts: int
    at: float  # time.monotonic() of the 200, or of giving up
    problem: str = ""  # the last failure when not healthy
    exited: bool = False  # gave up because the server had exited


async def wait_healthy(target: Target, *, deadline: float, timeout_s: float, interval_s: float = 0.05,
                       exited: Callable[[], bool] = lambda: False) -> Health:
    """GET /health every `interval_s` (from one attempt's start to the next) until a 200, `deadline`,
    or `exited()` says the server is gone (then at once: nothing will answer).

    `deadline` is a time.monotonic() value; each attempt waits at most `timeout_s` (and not much
    past the deadline). At least one attempt is made.
    """
    attempts, problem = 0, ""
    while True:
        if attempts and exited():
            return Health(False, attempts, time.monotonic(), problem, exited=True)
        started = time.monotonic()
        attempts += 1
        try:
            wait_s = min(timeout_s, max(deadline - started, 0.05))
            response = await target.fetch("GET", "/health", timeout_s=wait_s)
        except http11.FetchError as exc:
            problem = str(exc)
        else:
            if response.status == 200:
                return Health(True, attempts, time.monotonic())
            problem = f"HTTP {response.status}"
        next_at = started + interval_s
        if next_at >= deadline:
            return Health(False, attempts, time.monotonic(), problem)
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


@dataclass(frozen=True)
class Case:
    """One bad request; passed iff a 4xx (with a JSON object body if `json_error`), no hang, healthy after."""

    name: str
    method: str
    path: str
    body: bytes = b""
    content_type: str | None = "application/json"
    json_error: bool = True
    slow: bool = False


def _instances(rows: Sequence[object]) -> bytes:
    return json.dumps({"instances": list(rows)}).encode()


def _huge_body(n_features: int) -> bytes:
    row = json.dumps([0.123456789] * n_features).encode()
    count = HUGE_BODY_BYTES // (len(row) + 2) + 1
    return b'{"instances": [' + b", ".join([row] * count) + b"]}"


def robustness_cases(*, max_batch: int, n_features: int) -> list[Case]:
    """The battery, in the order it runs. Valid parts use a plain instance of 0.5s."""
    good = [0.5] * n_features
    numbers = ", ".join(["0.5"] * (n_features - 2))
    return [
        Case("invalid_json", "POST", "/predict", b'{"instances": [[0.5, 0.5,'),
        Case("wrong_content_type", "POST", "/predict", _instances([good]), content_type="text/plain"),
        Case("missing_field", "POST", "/predict", json.dumps({"inputs": [good]}).encode()),
        Case("wrong_types", "POST", "/predict", _instances([["x"] * n_features])),
        Case("wrong_feature_count", "POST", "/predict", _instances([good[:-1]])),
        Case("empty_batch", "POST", "/predict", _instances([])),
        Case("batch_over_max", "POST", "/predict", _instances([good] * (max_batch + 1))),
        Case("huge_body", "POST", "/predict", _huge_body(n_features), slow=True),
        Case("nan_values", "POST", "/predict", f'{{"instances": [[NaN, 0.5, {numbers}]]}}'.encode()),
        Case("inf_values", "POST", "/predict", f'{{"instances": [[1e999, -Infinity, {numbers}]]}}'.encode()),
        Case("unknown_route", "POST", "/nope", _instances([good]), json_error=False),
        Case("wrong_method", "GET", "/predict", content_type=None, json_error=False),
    ]


def _json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return False


def _verdict(case: Case, status: int, json_body: bool) -> str:
    if not 400 <= status < 500:
        return f"HTTP {status}, expected 4xx"
    if case.json_error and not json_body:
        return f"HTTP {status} without a JSON object body"
    return ""


async def run_case(target: Target, case: Case, *, timeout_s: float) -> dict:
    """Send one bad request, then wait up to `timeout_s` for GET /health to answer 200. Never raises."""
    started = time.monotonic()
    status, json_body, problem = None, None, ""
    try:
        response = await target.fetch(case.method, case.path, body=case.body, content_type=case.content_type,
                                      timeout_s=timeout_s * (SLOW_CASE_FACTOR if case.slow else 1),
                                      max_body=ROBUSTNESS_MAX_BODY)
    except http11.FetchError as exc:
        problem = str(exc)
    else:
        status, json_body = response.status, _json_object(response.body)
        problem = _verdict(case, status, json_body)
    ms = (time.monotonic() - started) * 1000
    health = await wait_healthy(target, deadline=time.monotonic() + timeout_s, timeout_s=timeout_s)
    if not health.healthy:
        problem = "; ".join(filter(None, [problem, f"not healthy afterwards ({health.problem})"]))
    return {"case": case.name, "expected": "4xx", "status": status, "json_body": json_body,
            "ms": round(ms, 3), "healthy_after": health.healthy, "passed": not problem,
            "problem": problem[:_PROBLEM_CHARS]}


def case_worst_s(case: Case, timeout_s: float) -> float:
    """The longest one case can take: its request, then the health check after it."""
    return timeout_s * (SLOW_CASE_FACTOR if case.slow else 1) + timeout_s + 0.1


async def run_robustness(target: Target, *, max_batch: int, n_features: int, timeout_s: float,
                         stop_at: float = math.inf) -> list[dict]:
    """Every case of `robustness_cases`, one after the other; a case that could not end by `stop_at`
    (a time.monotonic() value: the probe's time budget) is not sent, and fails with that reason."""
    results = []
    for case in robustness_cases(max_batch=max_batch, n_features=n_features):
        if time.monotonic() + case_worst_s(case, timeout_s) > stop_at:
            results.append({"case": case.name, "expected": "4xx", "status": None, "json_body": None,
                            "ms": None, "healthy_after": None, "passed": False,
                            "problem": "not run: the probe's time budget ran out (earlier phases took it)"})
        else:
            results.append(await run_case(target, case, timeout_s=timeout_s))
    return results
