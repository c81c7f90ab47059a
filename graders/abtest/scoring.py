"""Scoring rules of the `ab_answer` grader: one run's value against the reference, and across runs.

* number: tolerance = max(abs, rel x |reference|); full credit within it, falling linearly to 0 at
  `partial` x tolerance. With several accepted references (formulas), the best one counts.
* interval: the mean of the two bounds' absolute errors within `halfwidth` x the reference
  interval's half-width; same linear band. Bounds are compared in the order given. The mean (not
  the larger) error: a resampled interval's two bounds err independently, while a wrong level or
  standard error moves both, so the mean separates the two far better (assignment.yaml derives it).
* p_value: 1 iff on the same side of alpha as the reference and close to it, with p' = max(p,
  floor) and r' = max(ref, floor): either |log10 p' - log10 r'| <= `log10` and, when `abs` is
  given, |p' - r'| <= `abs` (analytic tests agree this closely), or, when `resamples` = B is given,
  |p' - r'| <= MC_Z sqrt(ref (1 - ref) / B) + 2 / B: the Monte-Carlo error of a resampling test with
  B draws (a binomial count), plus 2 / B for the add-one estimator's bias ((1 + c) / (B + 1)) and
  the Poisson tail of small counts; at most 0.3% of such tests miss, for any reference. The log
  scale judges small p-values; the absolute bound judges large ones, where a factor of 1.6 spans
  most of [0, 1] and a value pasted from another data set would often land inside it.
* exact / choice: 1 iff accepted. Across runs they are chance-corrected (see `chance_corrected`),
  and so are p-values (`p_value_constant_runs`): a constant 0 is right wherever p is tiny.

A relative slack of 1e-9 keeps a value written at the tolerance's edge from failing on float
rounding. Nothing here raises for a candidate's value: it arrives already validated.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from graders.abtest.reference import Bounds, Choice, Exact, Expected, Numbers, PValue

SLACK = 1e-9
MC_Z = 3.0  # standard errors of a resampled p-value that still earn full credit


class Tolerances(Protocol):
    """The grader arguments the rules read (graders/abtest/grader.py's Args)."""

    rel: float | None
    abs: float | None
    halfwidth: float | None
    alpha: float | None
    log10: float | None
    floor: float
    partial: float
    resamples: int | None


@dataclass(frozen=True)
class Comparison:
    """One run's verdict. `error_ratio` is error / tolerance (NaN when not measured)."""

    score: float
    error_ratio: float = math.nan
    tolerance: float = math.nan
    label: str = ""  # which accepted reference matched best (numbers)
    expected: float | tuple[float, float] | None = None  # that reference's value
    note: str = ""  # why a value that parsed still misses, when not obvious


def band(ratio: float, partial: float) -> float:
    """1 up to ratio 1, linear down to 0 at `partial`, 0 beyond (partial 1: no partial credit)."""
    if ratio <= 1 + SLACK:
        return 1.0
    if ratio >= partial:
        return 0.0
    return (partial - ratio) / (partial - 1)


def _ratio(error: float, tolerance: float) -> float:
    if tolerance > 0:
        return error / tolerance
    return 0.0 if error == 0 else math.inf


def compare_number(got: float, expected: Numbers, *, rel: float | None, abs_: float | None,
                   partial: float) -> Comparison:
    """Score `got` against the best of the accepted values."""
    best: Comparison | None = None
    for label, ref in expected.values:
        tolerance = max(abs_ or 0.0, (rel or 0.0) * abs(ref))
        ratio = _ratio(abs(got - ref), tolerance)
        here = Comparison(band(ratio, partial), ratio, tolerance, label, ref)
        if best is None or (here.score, -here.error_ratio) > (best.score, -best.error_ratio):
            best = here
    assert best is not None  # noqa: S101 - a reference always holds at least one value
    return best


def compare_interval(got: Sequence[float], expected: Bounds, *, halfwidth: float,
                     partial: float) -> Comparison:
    """Score a [low, high] pair bound by bound against the reference interval."""
    tolerance = halfwidth * (expected.high - expected.low) / 2
    error = (abs(got[0] - expected.low) + abs(got[1] - expected.high)) / 2
    ratio = _ratio(error, tolerance)
    note = "the bounds are in descending order; write [low, high]" if got[0] > got[1] else ""
    return Comparison(band(ratio, partial), ratio, tolerance, expected=(expected.low, expected.high),
                      note=note)


def resampling_band(reference: float, resamples: int) -> float:
    """How far a p-value from `resamples` random draws may lie from `reference` (binomial error)."""
    return MC_Z * math.sqrt(reference * (1 - reference) / resamples) + 2 / resamples


def compare_p_value(got: float, expected: PValue, *, alpha: float, log10: float,
                    floor: float, abs_: float | None = None, resamples: int | None = None) -> Comparison:
    """1 iff the same side of alpha as the reference and close by the analytic or resampling rule."""
    p, ref = max(got, floor), max(expected.value, floor)
    ratio = abs(math.log10(p) - math.log10(ref)) / log10
    if abs_ is not None:
        ratio = max(ratio, abs(p - ref) / abs_)
    if resamples is not None:
        # the band at the reference itself: a tiny p-value is resampled as a count of 0 to 2
        ratio = min(ratio, abs(p - ref) / resampling_band(expected.value, resamples))
    same_side = (got < alpha) == (expected.value < alpha)
    ok = same_side and ratio <= 1 + SLACK
    note = "" if same_side else f"on the other side of alpha = {alpha:g} from the reference"
    return Comparison(1.0 if ok else 0.0, ratio, log10, expected=expected.value, note=note)


def accepted(expected: Exact | Choice) -> frozenset[Hashable]:
    """The values accepted for an exact or choice field."""
    return frozenset({expected.value}) if isinstance(expected, Exact) else expected.values


def compare_accepted(got: Hashable, expected: Exact | Choice) -> Comparison:
    # bool is an int in Python: 1 must not match True, so compare types as well
    hit = any(type(got) is type(v) and got == v for v in accepted(expected))
    return Comparison(1.0 if hit else 0.0)


def chance_corrected(correct: int, runs: int, best_constant: int) -> float:
    """max(0, (correct - c) / (runs - c)) with c what the best constant answer gets right.

    A submission that writes one hard-coded value everywhere then earns nothing. When one value
    is right on every run (c == runs), a constant cannot be told from a computed answer, so the
    plain share correct / runs is used.
    """
    if best_constant >= runs:
        return correct / runs
    return max(0.0, (correct - best_constant) / (runs - best_constant))


def best_constant(accepted_sets: Sequence[frozenset[Hashable]], answers: Sequence[Hashable]) -> int:
    """The most runs one single value would be accepted on, among accepted values and the answers."""
    values = set().union(*accepted_sets) | set(answers)
    return max((sum(1 for s in accepted_sets if any(type(v) is type(a) and v == a for a in s))
                for v in values), default=0)


# Constant p-values tried for the chance baseline: 0 and a log grid (every 0.02 in log10) from 1e-9
P_GRID = (0.0, *(10 ** (-k / 50) for k in range(451)))


def p_value_constant_runs(expected: Sequence[PValue], answers: Sequence[float], args: Tolerances) -> int:
    """The most runs one constant p-value would be accepted on (0, a log grid, the references, the
    answers). On runs whose references all lie below a test's resolution a constant 0 is right on
    each: like a constant yes/no, it must not earn credit (see `chance_corrected`)."""
    values = {*P_GRID, *(e.value for e in expected), *answers}
    return max(sum(compare(v, e, args).score == 1 for e in expected) for v in values)


def compare(got: Any, expected: Expected, args: Tolerances) -> Comparison:
    """Dispatch on the reference's kind. Raises OverflowError if a number does not fit a float."""
    if isinstance(expected, Numbers):
        return compare_number(float(got), expected, rel=args.rel, abs_=args.abs, partial=args.partial)
    if isinstance(expected, Bounds):
        return compare_interval([float(x) for x in got], expected, halfwidth=args.halfwidth or 0.0,
                                partial=args.partial)
    if isinstance(expected, PValue):
        return compare_p_value(float(got), expected, alpha=args.alpha or 0.0, log10=args.log10 or 0.0,
                               floor=args.floor, abs_=args.abs, resamples=args.resamples)
    return compare_accepted(got, expected)


def floats(value: Any) -> float | list[float]:
    """A validated number or list of numbers as floats. Raises OverflowError for huge integers."""
    return [float(x) for x in value] if isinstance(value, list) else float(value)


def fmt(x: float) -> str:
    """A number for a reviewer: whole numbers with grouped thousands, others to 6 digits."""
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}".replace(",", "\u202f")  # narrow no-break space groups thousands
    return f"{x:.6g}"


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool | str):
        return repr(v).lower() if isinstance(v, bool) else repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    return fmt(v)


@dataclass(frozen=True)
class RunOutcome:
    """One run's outcome: the reference, the candidate's validated value, the verdict or problem."""

    expected: Expected
    got: Any = None  # None when the field could not be read
    verdict: Comparison | None = None
    problem: str = ""

    @property
    def score(self) -> float:
        return self.verdict.score if self.verdict is not None else 0.0

    def accepted_text(self) -> str:
        e = self.expected
        if isinstance(e, Numbers):
            ordered = sorted(e.values, key=lambda lv: lv[1])
            show = [ordered[0], ordered[-1]] if len(ordered) > 1 else ordered
            return " \u2026 ".join(fmt(v) if label == "reference" else f"{fmt(v)} ({label})"
                                   for label, v in show)
        if isinstance(e, Bounds):
            return _fmt_value((e.low, e.high))
        if isinstance(e, Exact | Choice):
            return " or ".join(sorted(_fmt_value(v) for v in accepted(e)))
        return fmt(e.value)

    def describe(self) -> str:
        if self.verdict is None:
            return self.problem
        v = self.verdict
        text = f"got {_fmt_value(self.got)}, expected {self.accepted_text()}"
        if not math.isnan(v.tolerance) and not isinstance(self.expected, Exact | Choice):
            ratio = (f"{v.error_ratio:.2g}" if v.error_ratio < 10 else f"{v.error_ratio:,.0f}"
                     if v.error_ratio < 1e6 else f"{v.error_ratio:.1e}")  # 1e300 off: not 300 digits
            text += f" (error {ratio}x the tolerance)"
        return text + (f", {v.note}" if v.note else "")

    def numeric(self) -> dict[str, float]:
        v, got = self.verdict, self.got
        if v is None or isinstance(got, bool | str):
            return {"correct": self.score} if v is not None else {}
        out = {"error_ratio": v.error_ratio}
        if isinstance(got, list) and isinstance(v.expected, tuple):
            out.update({"got_low": got[0], "got_high": got[1], "expected_low": v.expected[0],
                        "expected_high": v.expected[1]})
        elif isinstance(v.expected, float | int):
            out.update({"got": float(got), "expected": float(v.expected)})
        return out

    def detail(self) -> dict[str, Any]:
        e, v = self.expected, self.verdict
        accepted_values: Any
        if isinstance(e, Numbers):
            accepted_values = [{"label": label, "value": value} for label, value in e.values]
        elif isinstance(e, Bounds):
            accepted_values = [e.low, e.high]
        elif isinstance(e, Exact | Choice):
            accepted_values = sorted(accepted(e), key=str)
        else:
            accepted_values = e.value
        return {"expected": self.accepted_text(), "accepted": accepted_values, "got": self.got,
                "tolerance": None if v is None or math.isnan(v.tolerance) else v.tolerance,
                "closest": v.label if v is not None else "", "score": self.score, "problem": self.problem}
