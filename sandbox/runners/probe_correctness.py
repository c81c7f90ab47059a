"""The probe's correctness phase: send the hidden inputs in batches and keep each validated prediction.

A prediction is kept only as numbers: {"label": int in [0, n_classes), "probabilities": n_classes
finite floats}; anything else becomes null with a problem line. Comparing with the reference
happens on the host (the probe never sees the reference). Runs inside the sandbox: stdlib only.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

import http11
from probe_checks import Target

MAX_INPUT_BYTES = 64 << 20
MAX_PROBLEMS = 50  # lines kept in the report; the rest are counted
GIVE_UP_AFTER = 3  # consecutive batches without any HTTP answer: the server is gone or hung


class AnswerError(ValueError):
    """A whole batch's answer is unusable (the message is the problem line)."""


def load_inputs(path: str, *, n_features: int) -> list[list[float]]:
    """The probe inputs: a non-empty JSON list of instances of `n_features` finite numbers.

    Harness data, but read with a bound all the same. Raises ValueError (OSError when unreadable).
    """
    with open(path, "rb") as handle:
        raw = handle.read(MAX_INPUT_BYTES + 1)
    if len(raw) > MAX_INPUT_BYTES:
        raise ValueError(f"{path} is larger than {MAX_INPUT_BYTES} bytes")
    data = json.loads(raw)
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a non-empty JSON list of instances")
    for index, row in enumerate(data):
        if not (isinstance(row, list) and len(row) == n_features and all(_finite_number(v) for v in row)):
            raise ValueError(f"{path}: instance {index} is not a list of {n_features} finite numbers")
    return [[float(v) for v in row] for row in data]


def _finite_number(value: object) -> bool:
    """A JSON number that is a finite float: not a bool, NaN, an infinity or an integer too large for
    a float (math.isfinite raises OverflowError on a 400-digit integer)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_prediction(item: object, n_classes: int) -> tuple[dict | None, str]:
    """The prediction as plain numbers, or None and why it is unusable."""
    if not isinstance(item, dict):
        return None, f"a {type(item).__name__}, not an object"
    label, probabilities = item.get("label"), item.get("probabilities")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < n_classes:
        return None, f"label {_shown(label)} is not an integer in 0..{n_classes - 1}"
    if not isinstance(probabilities, list) or len(probabilities) != n_classes:
        return None, f"probabilities is not a list of {n_classes} numbers"
    if not all(_finite_number(p) for p in probabilities):
        return None, "probabilities holds a value that is not a finite number"
    return {"label": label, "probabilities": [float(p) for p in probabilities]}, ""


def _shown(value: object) -> str:
    """A short rendering of a JSON value from the server (never the whole of a huge one)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        return f"(a {len(str(abs(value)))}-digit integer)"
    text = json.dumps(value) if isinstance(value, str | int | float | bool) or value is None else \
        f"(a JSON {type(value).__name__})"
    return text[:30]


def check_answer(response: http11.Response, expected: int,
                 n_classes: int) -> tuple[list[dict | None], list[str]]:
    """Per-instance predictions of one batch's answer and their problems. Raises AnswerError."""
    if response.status != 200:
        raise AnswerError(f"HTTP {response.status}")
    try:
        data = json.loads(response.body)  # NaN/Infinity parse, then fail check_prediction
    except (ValueError, RecursionError):
        raise AnswerError("answer is not JSON") from None
    predictions = data.get("predictions") if isinstance(data, dict) else None
    if not isinstance(predictions, list):
        raise AnswerError('answer has no "predictions" list')
    if len(predictions) != expected:
        raise AnswerError(f"{len(predictions)} predictions for {expected} instances")
    kept, problems = [], []
    for index, item in enumerate(predictions):
        prediction, problem = check_prediction(item, n_classes)
        kept.append(prediction)
        if problem:
            problems.append(f"item {index}: {problem}")
    return kept, problems


def _snippet(body: bytes, limit: int = 160) -> str:
    """The start of an error answer as one printable line (it is the candidate's text)."""
    text = body[:limit].decode("utf-8", errors="replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return text + ("..." if len(body) > limit else "")


@dataclass
class _Problems:
    lines: list[str] = field(default_factory=list)
    dropped: int = 0

    def add(self, line: str) -> None:
        if len(self.lines) < MAX_PROBLEMS:
            self.lines.append(line[:300])
        else:
            self.dropped += 1

    def report(self) -> list[str]:
        return self.lines + ([f"... and {self.dropped} more problems"] if self.dropped else [])


async def run_correctness(target: Target, inputs: list[list[float]], *, batch_size: int, n_classes: int,
                          timeout_s: float, stop_at: float = math.inf) -> dict:
    """POST the inputs in batches of `batch_size`, in order; the phase's report section. Never raises.

    After GIVE_UP_AFTER consecutive batches without an HTTP answer (timeouts, refused or broken
    connections) the remaining batches are not sent: the server is gone or hung. Nor are those
    that could not be answered by `stop_at` (a time.monotonic() value: the probe's time budget).
    """
    predictions: list[dict | None] = [None] * len(inputs)
    problems, silent, sent = _Problems(), 0, 0
    starts, began = range(0, len(inputs), batch_size), time.monotonic()
    for number, start in enumerate(starts):
        if silent >= GIVE_UP_AFTER:
            problems.add(f"batches {number}..{len(starts) - 1} not sent: "
                         f"{silent} batches in a row got no answer")
            break
        if time.monotonic() + timeout_s > stop_at:
            problems.add(f"batches {number}..{len(starts) - 1} not sent: the probe's time budget ran out "
                         f"(the earlier batches took {time.monotonic() - began:.0f} s)")
            break
        batch = inputs[start:start + batch_size]
        body = json.dumps({"instances": batch}).encode()
        sent += len(batch)
        try:
            response = await target.fetch("POST", "/predict", body=body, timeout_s=timeout_s)
            kept, lines = check_answer(response, len(batch), n_classes)
        except http11.FetchError as exc:
            silent += 1
            problems.add(f"batch {number}: {exc}")
            continue
        except AnswerError as exc:
            silent = 0
            said = f": {_snippet(response.body)}" if response.status != 200 and response.body else ""
            problems.add(f"batch {number}: {exc}{said}")  # the error body says which route or field
            continue
        silent = 0
        predictions[start:start + len(batch)] = kept
        for line in lines:
            problems.add(f"batch {number} {line}")
    return {"inputs": len(inputs), "sent": sent, "answered": sum(p is not None for p in predictions),
            "batch_size": batch_size, "predictions": predictions, "problems": problems.report()}
