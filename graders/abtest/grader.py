"""The `ab_answer` grader: one field of the A/B-test answers.json, checked on several runs.

The submission runs once per data set (`runs`); each run's answers.json is read strictly
(graders/abtest/_answers.py: bad JSON, NaN, a missing key or a value against the schema is a diagnosis
and scores 0 on that run) and the field is compared with the reference computed here from the
files that run saw (graders/abtest/reference.py; the decision rule is in its docstring).

Per run (graders/abtest/scoring.py): a number scores 1 within max(abs, rel x |ref|) of any
accepted formula, falling linearly to 0 at `partial` x that tolerance; an interval likewise by
the mean of its two bound errors, with the tolerance `halfwidth` x the reference half-width; a
p-value scores 1 iff on the same side of alpha as the reference and within `log10` of it on the
log10 scale (and `abs` absolute), or within the Monte-Carlo error of a `resamples`-draw test
(both floored at `floor`); an exact or choice field scores 1 iff accepted.

The criterion is the mean over runs, except for exact, choice and p-value fields, which are
chance-corrected so that one hard-coded value earns nothing (a p-value of 0 is right on every run
whose reference is below a resampling test's resolution): with c the most runs any single
value is accepted on, the score is max(0, (correct - c) / (runs - c)); when one value is right
on every run (c = runs) it is correct / runs. For the decision on the three hidden runs
(inconclusive, ship, inconclusive-or-dont_ship) c = 2, so only all three right scores.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from graders.abtest._answers import Answers, load_schema, lookup, read_answers
from graders.abtest.reference import FIELDS, reference
from graders.abtest.scoring import (
    RunOutcome,
    accepted,
    best_constant,
    chance_corrected,
    compare,
    floats,
    fmt,
    p_value_constant_runs,
)
from harness.core import SpecError
from harness.core.grading import CriterionResult, Grader, GradingContext, grader
from harness.core.names import plain_file_name
from harness.core.text import one_line

if TYPE_CHECKING:
    from harness.spec import AssignmentSpec

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_RUN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_KIND_ARGS = {"number": {"rel", "abs", "partial"}, "interval": {"halfwidth", "partial"},
              "p_value": {"alpha", "log10", "floor", "abs", "resamples"}, "exact": set(), "choice": set()}


class AbAnswerArgs(BaseModel):
    """Arguments of `ab_answer`, as written under `args:` in assignment.yaml."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    answers: str = "answers.json"  # output file name, collected per run as "<run>/<answers>"
    runs: list[str] = Field(min_length=1)
    field: str  # dotted path in answers.json
    schema_file: str = Field("starter/answers.schema.json", alias="schema")  # relative to the assignment
    compare: Literal["number", "interval", "p_value", "exact", "choice"]
    rel: float | None = Field(None, gt=0)
    abs: float | None = Field(None, gt=0)
    halfwidth: float | None = Field(None, gt=0)
    alpha: float | None = Field(None, gt=0, lt=1)
    log10: float | None = Field(None, gt=0)
    floor: float = Field(1e-6, gt=0, lt=1)
    partial: float = Field(2.0, ge=1)
    resamples: int | None = Field(None, ge=100)  # p-values: the fewest draws a resampling test may use

    @field_validator("answers")
    @classmethod
    def _plain_file(cls, v: str) -> str:
        return plain_file_name(v)

    @field_validator("runs")
    @classmethod
    def _run_names(cls, v: list[str]) -> list[str]:
        bad = [r for r in v if not _RUN.match(r)]
        if bad or len(set(v)) != len(v):
            raise ValueError(f"runs must be distinct run names (lower-case letters, digits, _ -): {v}")
        return v

    @field_validator("field")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if not _FIELD.match(v):
            raise ValueError(f"{v!r} is not a dotted field path such as analysis.conversion.ci_abs")
        return v

    @field_validator("schema_file")
    @classmethod
    def _relative(cls, v: str) -> str:
        parts = v.split("/")
        if v.startswith("/") or "\\" in v or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{v!r} must be a plain path relative to the assignment folder")
        return v

    @model_validator(mode="after")
    def _fits_compare(self) -> AbAnswerArgs:
        given = self.model_fields_set & {"rel", "abs", "halfwidth", "alpha", "log10", "floor", "partial",
                                         "resamples"}
        extra = sorted(given - _KIND_ARGS[self.compare])
        if extra:
            raise ValueError(f"{', '.join(extra)} do not apply to compare: {self.compare}; remove them")
        needs = {"number": ("rel or abs", self.rel is None and self.abs is None),
                 "interval": ("halfwidth", self.halfwidth is None),
                 "p_value": ("alpha and log10", self.alpha is None or self.log10 is None)}
        what, missing = needs.get(self.compare, ("", False))
        if missing:
            raise ValueError(f"compare: {self.compare} needs {what}; add them to args")
        return self


@grader("ab_answer")
class AbAnswerGrader(Grader):
    """Scores one field of answers.json on each run against the reference computed from its data."""

    version = "1"
    Args = AbAnswerArgs
    args: AbAnswerArgs

    def check_spec(self, spec: AssignmentSpec) -> None:
        """Raise SpecError unless the field is known with a fitting compare and the runs are collected."""
        a, who = self.args, f"grader {self.name!r}"
        kind = FIELDS.get(a.field)
        if kind is None:
            close = difflib.get_close_matches(a.field, list(FIELDS), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SpecError(f"{who}: args.field: the reference has no field {a.field!r}; {hint}"
                            f"known fields: {', '.join(FIELDS)}")
        if kind != a.compare:
            raise SpecError(f"{who}: args.compare: {a.field} is compared as {kind!r}, not {a.compare!r}; "
                            f"write compare: {kind}")
        stages = [s for s in spec.stages if a.answers in s.outputs]
        if not stages:
            raise SpecError(f"{who}: args.answers: no stage declares the output {a.answers!r}; add it to "
                            "the outputs of the stage that writes it")
        runs = tuple(getattr(stages[0], "runs", ()) or ())
        missing = [r for r in a.runs if r not in runs]
        if missing:
            raise SpecError(f"{who}: args.runs: {missing} are not runs of stage {stages[0].name!r} "
                            f"(its runs: {list(runs)}); add them to the stage's runs or drop them here")
        unknown = [r for r in a.runs if r not in spec.data.visible]
        if unknown:
            raise SpecError(f"{who}: args.runs: {unknown} are not visible data sets, so there is no data "
                            f"to compute the reference from; visible: {sorted(spec.data.visible)}")

    def grade(self, ctx: GradingContext) -> CriterionResult:
        """Grade one submission. Raises SpecError for a spec fault (schema, data sets, outputs)."""
        a = self.args
        schema = load_schema(self._schema_path(ctx))
        if not any(k == a.answers or k.endswith("/" + a.answers) for k in ctx.outputs):
            raise SpecError(f"grader {self.name!r}: no stage collects {a.answers!r}; collected: "
                            f"{sorted(ctx.outputs)}")
        runs = {run: self._grade_run(ctx, run, schema) for run in a.runs}
        score, chance = self._combine(runs)
        return self.criterion(score=score, metrics=self._metrics(runs, chance),
                              explanation=self._explain(runs, score, chance),
                              details=self._details(runs, chance))

    def _schema_path(self, ctx: GradingContext) -> Path:
        path = (ctx.assignment_dir / self.args.schema_file).resolve()
        if ctx.assignment_dir.resolve() not in path.parents:
            raise SpecError(f"grader {self.name!r}: args.schema must lie inside the assignment folder")
        return path

    def _grade_run(self, ctx: GradingContext, run: str, schema: dict[str, Any]) -> RunOutcome:
        a = self.args
        if run not in ctx.visible:
            raise SpecError(f"grader {self.name!r}: no visible data set {run!r}; have {sorted(ctx.visible)}")
        expected = reference(ctx.visible[run])[a.field]
        output = ctx.outputs.get(f"{run}/{a.answers}")
        answers = (read_answers(output.path, one_line(output.problem, 300)) if output is not None
                   else Answers(None, f"no {a.answers} was collected from run {run}"))
        found = lookup(answers, a.field, schema)
        if not found.ok:
            return RunOutcome(expected, problem=found.problem)
        try:
            verdict = compare(found.value, expected, a)
        except OverflowError:
            return RunOutcome(expected, problem=f"{a.field}: the number is too large")
        got = found.value if isinstance(found.value, bool | str) else floats(found.value)
        note = verdict.note if verdict.score < 1 else ""
        return RunOutcome(expected, got=got, verdict=verdict, problem=note)

    def _combine(self, runs: dict[str, RunOutcome]) -> tuple[float, int | None]:
        """The criterion score, and for exact/choice/p-value fields the runs a constant gets right."""
        scores = [r.score for r in runs.values()]
        answers = [r.got for r in runs.values() if r.got is not None]
        if self.args.compare == "p_value":
            constant = p_value_constant_runs([r.expected for r in runs.values()],  # type: ignore[misc]
                                             answers, self.args)
        elif self.args.compare in ("exact", "choice"):
            sets = [accepted(r.expected) for r in runs.values()]  # type: ignore[arg-type]
            constant = best_constant(sets, answers)
        else:
            return sum(scores) / len(scores), None
        return chance_corrected(int(sum(scores)), len(scores), constant), constant

    def _metrics(self, runs: dict[str, RunOutcome], chance: int | None) -> dict[str, float]:
        hits = "runs_correct" if chance is not None else "runs_within_tolerance"
        out = {"runs_graded": float(len(runs)), hits: float(sum(r.score == 1 for r in runs.values())),
               "runs_answered": float(sum(r.got is not None for r in runs.values()))}
        if chance is not None:
            out["chance_level_runs"] = float(chance)
        for run, r in runs.items():
            out[f"{run}.score"] = r.score
            out.update({f"{run}.{k}": v for k, v in r.numeric().items()})
        return out

    def _explain(self, runs: dict[str, RunOutcome], score: float, chance: int | None) -> str:
        n, rule = len(runs), _rule(self.args)
        good = sum(r.score == 1 for r in runs.values())
        missed = [f"{run}: {r.describe()}" for run, r in runs.items() if r.score < 1]
        head = f"{good}/{n} runs {'correct' if chance is not None else 'within ' + rule}"
        text = head + (": " + "; ".join(missed) if missed else "") + "."
        if chance is not None and chance < n:
            text += (f" Chance-corrected: one constant answer would be right on {chance}/{n}, so the score "
                     f"is max(0, ({good} - {chance}) / ({n} - {chance})) = {score:.2f}.")
        elif chance is None and 0 < score < 1 and any(0 < r.score < 1 for r in runs.values()):
            text += f" Partial credit up to {self.args.partial:g}x the tolerance; score {score:.2f}."
        return text

    def _details(self, runs: dict[str, RunOutcome], chance: int | None) -> dict[str, Any]:
        a = self.args
        out: dict[str, Any] = {"field": a.field, "compare": a.compare, "rule": _rule(a),
                               "runs": {run: r.detail() for run, r in runs.items()}}
        if chance is not None:
            out["chance"] = {"constant_answer_runs": chance,
                             "rule": "max(0, (correct - c) / (runs - c)); correct / runs when c = runs"}
        return out


def _rule(a: AbAnswerArgs) -> str:
    if a.compare == "number":
        rel = f"{a.rel * 100:g}%" if a.rel else ""
        both = f"max({fmt(a.abs)}, {rel})" if a.abs and rel else rel or fmt(a.abs or 0.0)
        return f"\u00b1{both}"
    if a.compare == "interval":
        return f"\u00b1{(a.halfwidth or 0) * 100:g}% of the reference half-width (mean bound error)"
    if a.compare == "p_value":
        near = f" and {fmt(a.abs)} absolute" if a.abs else ""
        mc = f" (or a {a.resamples:,}-draw resampling test's error)" if a.resamples else ""
        return f"{a.log10:g} in log10{near}{mc} on the same side of alpha = {a.alpha:g}"
    return "accepted"
