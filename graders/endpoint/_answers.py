"""The endpoint graders' answer checks: a server's predictions against the reference predictions
kept on the host, for the correctness inputs and for the sampled answers of the load phases.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graders.endpoint._probe_report import ProbeReport
from harness.core import DeterministicInfraError


def mismatches(report: ProbeReport, reference_file, atol: float) -> tuple[list, list[dict[str, Any]]]:
    """The reference predictions, and each hidden input the server got wrong (index, problem)."""
    reference = json.loads(reference_file.read_text())
    got = report.correctness.predictions if report.correctness else []
    wrong = []
    for index, expected in enumerate(reference):
        problem = mismatch(expected, got[index] if index < len(got) else None, atol)
        if problem:
            wrong.append({"index": index, "problem": problem})
    return reference, wrong


def mismatch(expected: dict, answer, atol: float) -> str:
    if answer is None:
        return "no usable prediction"
    if answer.label != expected["label"]:
        return f"label {answer.label}, expected {expected['label']}"
    want = expected["probabilities"]
    if len(answer.probabilities) != len(want):
        return f"{len(answer.probabilities)} probabilities, expected {len(want)}"
    worst = max(abs(a - b) for a, b in zip(answer.probabilities, want, strict=True))
    return "" if worst <= atol else f"a probability is off by {worst:.4f} (tolerance {atol:g})"


@dataclass(frozen=True)
class LoadSamples:
    """One phase's sampled load answers (2xx only: errors count in the error rate), each with its
    problem ("" when it matches the reference)."""

    phase: str
    rows: list[dict[str, Any]]
    reused_note: str = ""

    @property
    def share(self) -> float:
        return sum(not row["problem"] for row in self.rows) / len(self.rows) if self.rows else 0.0

    def wrong(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["problem"]]

    def step_correct(self, rate: float) -> bool:
        """Some sampled answer of the step at `rate` was checked, and none was wrong."""
        rows = [row for row in self.rows if abs(row["rate"] - rate) <= 1e-6 * max(rate, 1)]
        return bool(rows) and not any(row["problem"] for row in rows)

    def summary(self) -> str:
        if not self.rows:
            return f"No sampled answer of the {self.phase} requests came back"
        text = (f"{len(self.rows) - len(self.wrong())}/{len(self.rows)} sampled answers of the {self.phase} "
                f"requests correct")
        if self.wrong():
            first = self.wrong()[0]
            text += f" (first wrong: input {first['input']} at {first['rate']:g}/s: {first['problem']})"
        return text + self.reused_note

    def metrics(self) -> dict[str, float]:
        return {"load_answers_checked": len(self.rows), "load_answers_correct_share": self.share}


def check_load_samples(report: ProbeReport, hidden: Path, *, phase: str, atol: float, load_file: str,
                       file: str) -> LoadSamples:
    """The sampled 2xx answers of one load phase against the reference answers of their inputs.

    Raises DeterministicInfraError when the reference file is missing or unreadable: that is the
    harness's data (re-run `harness prepare`), and grading without it would leave speed unchecked.
    """
    check = report.load_check
    assert check is not None  # noqa: S101 - callers check
    path = hidden / (load_file if check.distinct else file)
    try:
        reference = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DeterministicInfraError(f"the load phases' reference {path} is unusable "
                                      f"({type(exc).__name__}): re-run `harness prepare`") from None
    rows = []
    for sample in check.samples:
        if sample.phase != phase or sample.status is None or not 200 <= sample.status < 300:
            continue
        expected = reference[sample.input] if sample.input < len(reference) else None
        problem = sample.problem or (mismatch(expected, sample.prediction, atol) if expected else
                                     f"input {sample.input} is not a load input")
        rows.append({"input": sample.input, "rate": sample.rate, "status": sample.status, "problem": problem})
    reused = f"; {check.requests} load requests for {check.pool} load inputs, so some repeated" \
        if check.reused else ""
    return LoadSamples(phase, rows, reused)
