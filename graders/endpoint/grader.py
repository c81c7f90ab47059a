"""Endpoint graders: score what the probe (sandbox/runners/probe.py) measured of a candidate's server.

One criterion each: `endpoint_cold_start` (seconds to the first healthy answer),
`endpoint_correctness` (predictions on hidden inputs against reference predictions kept on the
host), `endpoint_robustness` (bad requests answered 4xx, server still healthy), `endpoint_latency`
(p99 at the stated rate, open loop) and `endpoint_capacity` (highest rate meeting the objective).
Scores map a measure linearly between a value that scores 0 and one that scores 1, both in the
spec. A missing or unusable probe report scores 0 with the reason.

The gating rule: no criterion rewards a service that does not serve valid requests. Latency and
capacity are scaled by the correct share of the hidden inputs and of sampled load answers
(`scale_by_correctness`); cold start and robustness, with `serving`, score 0 unless at least
`min_share` of the hidden inputs were answered right (refusing bad requests is no feat for a
server that refuses good ones too, such as a 404 for a missing route or a 422 for another schema).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from graders.endpoint._answers import LoadSamples, check_load_samples, mismatches
from graders.endpoint._plots import (
    decode_histogram,
    plot_capacity,
    plot_latency,
    write_histogram_files,
)
from graders.endpoint._probe_report import ProbeReport, finite, read_probe_report
from harness.core import SpecError
from harness.core.grading import CriterionResult, Grader, GradingContext, grader, linear_score
from harness.core.text import one_line

if TYPE_CHECKING:
    from harness.spec import AssignmentSpec

_SHOWN = 20  # mismatches listed in the report


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")
    probe: str = "probe.json"  # the probe's output file


class _Linear(_Args):
    """A measure scored linearly: `zero` scores 0, `full` scores 1 (either may be the larger).

    With `scale_by_correctness` (a hidden data set of reference predictions), the score is also
    multiplied by the share of hidden inputs answered correctly: speed serving wrong answers is
    worth that much less.
    """

    zero: float
    full: float
    scale_by_correctness: str | None = None
    reference_file: str = "predictions.json"
    load_reference_file: str = "load_predictions.json"  # the load inputs' answers, same hidden set
    atol: float = Field(0.02, gt=0, le=1)

    @model_validator(mode="after")
    def _apart(self):
        if self.zero == self.full:
            raise ValueError("zero and full must differ")
        return self


class ServingGate(BaseModel):
    """The evidence a criterion needs that the service serves valid requests: at least `min_share`
    of the hidden inputs answered right (label equal, every probability within `atol`)."""

    model_config = ConfigDict(extra="forbid")
    reference: str  # hidden data set with the reference predictions
    reference_file: str = "predictions.json"
    atol: float = Field(0.02, gt=0, le=1)
    min_share: float = Field(0.5, gt=0, le=1)


class _EndpointGrader(Grader):
    Args: ClassVar[type[BaseModel]] = _Args
    args: _Args
    version = "2"  # 2: load-phase answers checked; extreme reports scored, never raised
    #: why the criterion means nothing from a service that does not serve valid requests
    gate_reason: ClassVar[str] = ""

    def check_spec(self, spec: AssignmentSpec) -> None:
        keys = {key for stage in spec.stages for key in stage.output_keys()}
        if self.args.probe not in keys:
            raise SpecError(f"probe: {self.args.probe!r} is not an output of any stage or probe "
                            f"(outputs: {sorted(keys)})")
        gate = getattr(self.args, "serving", None)
        if gate is not None and gate.reference not in spec.data.hidden:
            raise SpecError(f"serving.reference: {gate.reference!r} is not a hidden data set "
                            f"({sorted(spec.data.hidden)})")

    def grade(self, ctx: GradingContext) -> CriterionResult:
        read = read_probe_report(ctx.outputs.get(self.args.probe))
        if read.report is None:
            failed = [f"stage {name} ended {status}" for name, status in ctx.stage_statuses.items()
                      if status != "ok"]
            why = f" ({'; '.join(failed)}: see the result's message)" if failed else ""
            return self.criterion(score=0.0, metrics={}, explanation=f"No measurement: {read.problem}{why}.")
        result = self.score(read.report, ctx)
        gate = getattr(self.args, "serving", None)
        return result if gate is None or result.score == 0 else self.gated(result, read.report, ctx, gate)

    def gated(self, result: CriterionResult, report: ProbeReport, ctx: GradingContext,
              gate: ServingGate) -> CriterionResult:
        """`result` if the service served valid requests (see ServingGate); else 0, saying why and
        what was measured."""
        reference, wrong = mismatches(report, ctx.hidden[gate.reference] / gate.reference_file, gate.atol)
        total = len(reference)
        correct, need = total - len(wrong), math.ceil(gate.min_share * total - 1e-9)
        if total and correct >= need:
            return result
        problems = report.correctness.problems if report.correctness else list(report.skipped)
        answers = f" (first problem: {one_line(problems[0], 300)})" if problems else ""
        explanation = (f"No credit: the service does not serve valid requests: {correct}/{total} hidden "
                       f"inputs answered right{answers}, and {self.name} counts only from {need} "
                       f"({gate.min_share:.0%}) on: {self.gate_reason}. Measured: {result.explanation}")
        metrics = result.metrics | {"served": 0.0, "measured_score": result.score}
        return self.criterion(score=0.0, metrics=metrics, explanation=explanation, details=result.details)

    def score(self, report: ProbeReport, ctx: GradingContext) -> CriterionResult:
        raise NotImplementedError

    def skipped(self, what: str, report: ProbeReport) -> CriterionResult:
        why = "; ".join(report.skipped) or "the probe did not get that far"
        return self.criterion(score=0.0, metrics={}, explanation=f"No {what} measured: {why}.",
                              details={"skipped": list(report.skipped)})

    def drawn(self, draw, *args, **kwargs) -> tuple[list[str], str]:
        """A plot's file name (or none, with the reason): a plot that cannot be drawn never costs a grade."""
        try:
            name = draw(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - matplotlib's errors are many; the figures stand without it
            return [], f" No plot: {type(exc).__name__}: {one_line(str(exc), 120)}."
        return ([name], "") if name else ([], " No plot: no step had an answered request.")


class _LinearGrader(_EndpointGrader):
    """A measure scored linearly (the arguments of _Linear), optionally scaled by correctness."""

    args: _Linear

    def linear(self, value: float) -> float:
        return linear_score(value, baseline=self.args.zero, target=self.args.full)

    def correct_share(self, report: ProbeReport, ctx: GradingContext) -> tuple[float, str]:
        """The correct share of the hidden inputs when the spec gates on it (else 1), and a note."""
        gate = getattr(self.args, "scale_by_correctness", None)
        if not gate:
            return 1.0, ""
        reference, wrong = mismatches(report, ctx.hidden[gate] / self.args.reference_file, self.args.atol)
        share = (len(reference) - len(wrong)) / len(reference) if reference else 0.0
        return share, f" Scaled by the correct share of the hidden inputs ({share:.0%})."

    def load_samples(self, report: ProbeReport, ctx: GradingContext, phase: str) -> LoadSamples | None:
        """This phase's sampled load answers checked against the reference (None when the spec does
        not gate on correctness, or the probe kept no sample)."""
        gate = getattr(self.args, "scale_by_correctness", None)
        if not gate or report.load_check is None:
            return None
        return check_load_samples(report, ctx.hidden[gate], phase=phase, atol=self.args.atol,
                                  load_file=self.args.load_reference_file, file=self.args.reference_file)


class ColdStartArgs(_Linear):
    serving: ServingGate | None = None  # counts only from a service that serves valid requests


@grader("endpoint_cold_start")
class ColdStartGrader(_LinearGrader):
    """Seconds from the server's start to its first 200 on GET /health."""

    Args = ColdStartArgs
    args: ColdStartArgs
    version = "3"  # 3: gated on serving valid requests; a server that exits says so
    gate_reason = "being up quickly means nothing if what is up does not answer"

    def score(self, report, ctx):
        cold = report.cold_start
        if cold is None or not cold.healthy or not finite(cold.seconds):
            problem = (cold.problem if cold else "") or report.manifest.problem or "never answered 200"
            exited = {"exited_s": report.service_exited_s} if cold and cold.exited and \
                finite(report.service_exited_s) else {}
            return self.criterion(score=0.0, metrics={"healthy": 0.0} | exited,
                                  explanation=f"The server never became healthy: {problem}.")
        return self.criterion(score=self.linear(cold.seconds),
                              metrics={"seconds": cold.seconds, "healthy": 1.0},
                              explanation=f"Healthy after {cold.seconds:.2f} s (full marks at "
                                          f"{self.args.full:g} s, none at {self.args.zero:g} s).")


class CorrectnessArgs(_Args):
    reference: str  # hidden data set with the reference predictions
    reference_file: str = "predictions.json"
    atol: float = Field(0.02, gt=0, le=1)  # per probability


@grader("endpoint_correctness")
class CorrectnessGrader(_EndpointGrader):
    """Share of hidden inputs whose label matches and whose probabilities are all within atol."""

    Args = CorrectnessArgs
    args: CorrectnessArgs

    def check_spec(self, spec):
        super().check_spec(spec)
        if self.args.reference not in spec.data.hidden:
            raise SpecError(f"reference: {self.args.reference!r} is not a hidden data set "
                            f"({sorted(spec.data.hidden)})")

    def score(self, report, ctx):
        if report.correctness is None:
            return self.skipped("correctness", report)
        reference, wrong = mismatches(report, ctx.hidden[self.args.reference] / self.args.reference_file,
                                       self.args.atol)
        got = report.correctness.predictions
        total = len(reference)
        correct = total - len(wrong)
        answered = sum(p is not None for p in got[:total])
        explanation = (f"{correct}/{total} hidden inputs correct (label equal, every probability within "
                       f"{self.args.atol:g}); {answered} answered.")
        problems = report.correctness.problems
        if problems:
            explanation += f" First problem: {problems[0]}"
        cut = [line for line in problems[1:] if "time budget ran out" in line]
        if cut:  # the server was too slow for every batch to be sent: say so, not only the first problem
            explanation += f" Also: {cut[0]}"
        return self.criterion(score=correct / total if total else 0.0,
                              metrics={"accuracy_vs_reference": correct / total if total else 0.0,
                                       "answered": answered, "inputs": total},
                              explanation=explanation,
                              details={"mismatches": wrong[:_SHOWN], "mismatch_count": len(wrong),
                                       "problems": report.correctness.problems[:_SHOWN]})


class RobustnessArgs(_Args):
    cases: list[str] = Field(min_length=1)  # every case the probe must have run
    serving: ServingGate | None = None  # counts only from a service that serves valid requests


@grader("endpoint_robustness")
class RobustnessGrader(_EndpointGrader):
    """Share of bad requests answered with a 4xx (JSON error) while the server stays healthy."""

    Args = RobustnessArgs
    args: RobustnessArgs
    version = "3"  # 3: gated on serving valid requests
    gate_reason = "refusing bad requests is no feat for a server that refuses or mis-answers good ones"

    def score(self, report, ctx):
        ran = {case.case: case for case in report.robustness}
        rows: list[dict[str, Any]] = []
        passed = 0
        for name in self.args.cases:
            case = ran.get(name)
            ok = bool(case and case.passed)
            passed += ok
            rows.append({"case": name, "passed": ok, "status": case.status if case else None,
                         "healthy_after": case.healthy_after if case else None,
                         "problem": (case.problem if case else "not run: " + ("; ".join(report.skipped)
                                                                            or "missing from the report"))})
        failed = [r["case"] for r in rows if not r["passed"]]
        explanation = f"{passed}/{len(rows)} bad requests handled (4xx, still healthy)."
        if failed:
            explanation += f" Failed: {', '.join(failed)}."
        return self.criterion(score=passed / len(rows), metrics={"passed": passed, "cases": len(rows)},
                              explanation=explanation, details={"cases": rows})


class LatencyArgs(_Linear):
    max_error_rate: float = Field(0.01, ge=0, le=1)


@grader("endpoint_latency")
class LatencyGrader(_LinearGrader):
    """p99 (open loop, from the scheduled send) at the spec's rate; too many errors score 0. The
    score is the point estimate's; its 95% interval is shown beside it."""

    Args = LatencyArgs
    args: LatencyArgs
    version = "3"  # 3: the p99's 95% interval in the metrics and the explanation

    def score(self, report, ctx):
        lat = report.latency
        if lat is None:
            return self.skipped("latency", report)
        if not finite(lat.p99_ms):
            return self.criterion(score=0.0, metrics={"error_rate": lat.error_rate, "rate": lat.rate},
                                  explanation=f"No latency measured: {_none_answered(lat, report)}.")
        low, high = lat.p99_ci_ms or (None, None)
        metrics = {"p50_ms": lat.p50_ms, "p90_ms": lat.p90_ms, "p99_ms": lat.p99_ms, "p999_ms": lat.p999_ms,
                   "p99_ci_low_ms": low, "p99_ci_high_ms": high, "error_rate": lat.error_rate,
                   "rate": lat.rate, "achieved_rate": lat.achieved_rate}
        artifacts, plot_note = self._artifacts(lat, ctx)
        if lat.error_rate > self.args.max_error_rate:
            return self.criterion(score=0.0, metrics={k: v for k, v in metrics.items() if finite(v)},
                                  explanation=f"{lat.error_rate:.1%} of requests failed or timed out at "
                                              f"{lat.rate:g}/s (allowed {self.args.max_error_rate:.0%})."
                                              f"{plot_note}",
                                  details={"artifacts": artifacts})
        share, note = self.correct_share(report, ctx)
        samples = self.load_samples(report, ctx, "latency")
        if samples is not None:
            share *= samples.share
            note += f" {samples.summary()}, so scaled by {samples.share:.0%}."
        return self.criterion(
            score=self.linear(lat.p99_ms) * share,
            metrics={k: v for k, v in metrics.items() if finite(v)} | (samples.metrics() if samples else {}),
            explanation=f"p99 {lat.p99_ms:.1f} ms{_interval(lat.p99_ci_ms)} at {lat.rate:g} requests/s (p50 "
                        f"{_ms(lat.p50_ms)}); full "
                        f"marks at {self.args.full:g} ms, none at {self.args.zero:g} ms.{note}{plot_note}",
            details={"artifacts": artifacts, "load_answers": samples.wrong()[:_SHOWN] if samples else []})

    @classmethod
    def score_bounds(cls, result: CriterionResult) -> tuple[float, float] | None:
        """The score at the ends of the p99's 95% interval, scaled as the score was (correct share,
        sampled answers); an interval without a top (nothing bounds p99) reaches 0."""
        try:
            a = LatencyArgs.model_validate(result.spec)
        except ValueError:
            return None
        m = result.metrics
        if "p99_ms" not in m or "p99_ci_low_ms" not in m or m.get("served") == 0.0:
            return None
        full = linear_score(m["p99_ms"], baseline=a.zero, target=a.full)
        if full <= 0:  # the scaling is not recoverable from a zero
            return None
        share = result.score / full
        high = m.get("p99_ci_high_ms")
        best = linear_score(m["p99_ci_low_ms"], baseline=a.zero, target=a.full) * share
        worst = 0.0 if high is None else linear_score(high, baseline=a.zero, target=a.full) * share
        return min(best, worst), max(best, worst)

    def _artifacts(self, lat, ctx) -> tuple[list[str], str]:
        if not lat.histogram:
            return [], ""
        try:
            histogram = decode_histogram(lat.histogram)
        except ValueError as exc:
            return [], f" No plot: {exc}."
        files = write_histogram_files(histogram, ctx.artifacts_dir)
        plot, note = self.drawn(plot_latency, histogram, ctx.artifacts_dir, objective_ms=self.args.full,
                                rate=lat.rate)
        return [*files, *plot], note


def _ms(value: float | None) -> str:
    return f"{value:.1f} ms" if finite(value) else "not measured"


def _interval(ci: tuple[float | None, float | None] | None) -> str:
    """" (95% CI 2.1-2.9)", " (95% CI 2.1 or more)" for an unbounded top; "" without an interval."""
    if not ci or not finite(ci[0]):
        return ""
    return f" (95% CI {ci[0]:.1f}-{ci[1]:.1f})" if finite(ci[1]) else f" (95% CI {ci[0]:.1f} or more)"


def _none_answered(lat, report: ProbeReport) -> str:
    """Why a latency run has no percentiles: what became of its requests."""
    if lat.scheduled == 0:
        return "no request was scheduled"
    after = f" after {report.settings.timeout:g} s" if report.settings.timeout else ""
    parts = [f"{lat.timeouts} timed out{after}"] if lat.timeouts else []
    parts += [f"{lat.errors} failed (connection or protocol errors)"] if lat.errors else []
    return (f"none of the {lat.scheduled} requests at {lat.rate:g}/s got an answer "
            f"({', '.join(parts) or 'none completed'})")


class CapacityArgs(_Linear):
    objective_ms: float = Field(gt=0)  # shown on the curve


@grader("endpoint_capacity")
class CapacityGrader(_LinearGrader):
    """Highest offered rate at which p99 met the objective with few errors (the probe's search),
    with its bracket: the true boundary lies between it and the lowest rate above it that failed.
    The score is the capacity's; the bracket is shown beside it."""

    Args = CapacityArgs
    args: CapacityArgs
    version = "3"  # 3: the bracket in the metrics and the explanation; the latency run counts as a step

    def score(self, report, ctx):
        cap = report.capacity
        if cap is None:
            return self.skipped("capacity", report)
        found = cap.capacity_rps or 0.0
        artifacts: list[str] = []
        plot_note = ""
        if cap.steps:
            artifacts, plot_note = self.drawn(plot_capacity, cap, ctx.artifacts_dir,
                                              objective_ms=self.args.objective_ms)
        share, note = self.correct_share(report, ctx)
        samples = self.load_samples(report, ctx, "capacity")
        counted = [s for s in cap.steps if s.ok]
        if samples is not None:  # a step counts only if its sampled answers are right
            latency = self.load_samples(report, ctx, "latency")
            assert latency is not None  # the conditions under which samples is not None
            counted = [s for s in counted
                       if (latency if s.phase == "latency" else samples).step_correct(s.rate)]
            verified = max((s.rate for s in counted), default=0.0)
            if verified < found:
                note += (f" Steps whose sampled answers were wrong do not count: capacity {verified:.0f}/s, "
                         f"not {found:.0f}/s.")
            found = verified
            note += f" {samples.summary()}."
        above = min((s.rate for s in cap.steps if s.rate > found and s not in counted), default=math.inf)
        explanation = (f"Capacity {found:.0f} requests/s{_bracket(cap, found, above)} (full marks at "
                       f"{self.args.full:g}, none at {self.args.zero:g}).{note}{plot_note}")
        return self.criterion(score=self.linear(found) * share,
                              metrics={"capacity_rps": found, "capacity_low_rps": found,
                                       "capacity_high_rps": above, "steps": len(cap.steps)}
                              | (samples.metrics() if samples else {}), explanation=explanation,
                              details={"steps": [s.model_dump() for s in cap.steps], "artifacts": artifacts,
                                       "bracket_rps": [found, above if math.isfinite(above) else None],
                                       "load_answers": samples.wrong()[:_SHOWN] if samples else []})


def _bracket(cap, found: float, above: float) -> str:
    """How far the capacity is known: between it and the lowest failing rate above, or a lower bound."""
    if found == 0 and cap.steps and not any(s.ok for s in cap.steps):
        return f" (even the lowest rate, {min(s.rate for s in cap.steps):g}/s, missed the objective)"
    if cap.cut_short:
        return " (a lower bound: the probe's time budget ended the search)"
    if cap.capped and found == max((s.rate for s in cap.steps), default=None):
        return " or more (every rate of the search passed)"
    if math.isfinite(above):
        return (f" (between {found:.0f} and {above:.0f}: the lowest rate above it missed the objective, "
                f"or its answers were wrong)")
    return ""
