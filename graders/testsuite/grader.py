"""Graders of test stages (spec: a stage with `pytest:`), reading reports parsed outside the sandbox.

* `test_pass_rate`: the share of the candidate's own tests that pass (0 with no tests).
* `test_coverage`: line coverage of the candidate's code under their own tests, mapped linearly
  between `baseline` and `target`.
* `hidden_tests`: points per test of the assignment's hidden suite; the tests expected are read
  from the suite's source, so a test the report leaves out counts as failed, and a test the
  report invents counts for nothing.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from graders.testsuite._junit import (
    ReportError,
    TestCase,
    collect_suite,
    read_coverage,
    read_junit,
    read_run_problem,
    share,
)
from harness.core import SpecError
from harness.core.grading import CriterionResult, Grader, GradingContext, grader, linear_score
from harness.core.text import one_line

if TYPE_CHECKING:
    from harness.spec import AssignmentSpec, StageSpec

LISTED = 10  # failing tests named in an explanation


class _StageArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str  # a stage with `pytest:`


def _test_stage(spec: AssignmentSpec, name: str, *, hidden: bool) -> StageSpec:
    """The pytest stage `name` of the spec; SpecError unless it exists and runs the right suite."""
    stage = next((s for s in spec.stages if s.name == name), None)
    kind = "a hidden suite (pytest: {suite: <folder>})" if hidden else "the submission's tests"
    if stage is None or stage.pytest is None or stage.pytest.hidden != hidden:
        raise SpecError(f"stage: {name!r} must name a pytest stage that runs {kind}")
    return stage


class _TestGrader(Grader):
    """Shared: find the stage's reports and say why they are missing."""

    args: _StageArgs

    def _report(self, ctx: GradingContext, file: str) -> tuple[Path | None, str]:
        """(the OutputFile's path or None, why there is no usable report)."""
        output = ctx.outputs.get(f"{self.args.stage}.{file}")
        status = ctx.stage_statuses.get(self.args.stage, "not run")
        if status != "ok":
            return None, f"the test stage did not finish ({status}); see logs/{self.args.stage}.log"
        if output is None or output.path is None:
            said = read_run_problem(self._output_path(ctx, "run.json"))
            if said:  # e.g. a conftest.py that failed to import: pytest stopped before any test
                return None, f"pytest stopped before running any test: {said}"
            return None, f"no {file} was written ({output.problem if output else 'not declared'})"
        return output.path, ""

    def _output_path(self, ctx: GradingContext, file: str) -> Path | None:
        output = ctx.outputs.get(f"{self.args.stage}.{file}")
        return None if output is None else output.path

    def _cases(self, ctx: GradingContext) -> tuple[list[TestCase], str]:
        path, problem = self._report(ctx, "junit.xml")
        if problem:
            return [], problem
        try:
            return read_junit(path), ""
        except ReportError as exc:
            return [], str(exc)

    def _zero(self, why: str) -> CriterionResult:
        return self.criterion(score=0.0, metrics={}, explanation=why, details={"problem": why})


class PassRateArgs(_StageArgs):
    pass


@grader("test_pass_rate")
class PassRateGrader(_TestGrader):
    """Score = passed / (passed + failed + errors) of the candidate's tests; skipped ones don't count."""

    version = "2"  # 2: files that could not be collected and broken conftest.py files named
    Args = PassRateArgs

    def check_spec(self, spec: AssignmentSpec) -> None:
        _test_stage(spec, self.args.stage, hidden=False)

    def grade(self, ctx: GradingContext) -> CriterionResult:
        cases, problem = self._cases(ctx)
        if problem:
            return self._zero(f"No test results: {problem}.")
        counts = Counter(c.outcome for c in cases)
        ran = counts["passed"] + counts["failed"] + counts["error"]
        if not ran:
            return self._zero("No tests: pytest found no test to run in the submission (test_*.py "
                              "files with test_* functions), so this criterion scores 0.")
        failing = [_failing(c) for c in cases if c.outcome in ("failed", "error")]
        failed = counts["failed"] + counts["error"]
        text = f"{counts['passed']} of {ran} of the submission's tests pass"
        if failing:
            text += "; failing: " + ", ".join(failing[:LISTED]) + (" ..." if len(failing) > LISTED else "")
        return self.criterion(
            score=share(counts["passed"], ran), explanation=text + ".",
            metrics={"tests": float(ran), "passed": float(counts["passed"]),
                     "skipped": float(counts["skipped"]), "failed": float(failed)},
            details={"failing": [{"test": c.node, "outcome": c.outcome, "message": c.message}
                                 for c in cases if c.outcome in ("failed", "error")][:50]})


class CoverageArgs(_StageArgs):
    baseline: float = Field(0.0, ge=0, le=1)  # coverage that scores 0
    target: float = Field(0.8, ge=0, le=1)  # coverage that scores 1

    @model_validator(mode="after")
    def _ordered(self) -> CoverageArgs:
        if self.target <= self.baseline:
            raise ValueError(f"target ({self.target}) must be above baseline ({self.baseline})")
        return self


@grader("test_coverage")
class CoverageGrader(_TestGrader):
    """Line coverage of the submission's code (tests excluded) while its own tests ran."""

    version = "2"  # 2: a broken conftest.py named
    Args = CoverageArgs
    args: CoverageArgs

    def check_spec(self, spec: AssignmentSpec) -> None:
        _test_stage(spec, self.args.stage, hidden=False)

    def grade(self, ctx: GradingContext) -> CriterionResult:
        cases, problem = self._cases(ctx)
        if not problem and not any(c.outcome != "skipped" for c in cases):
            problem = "the submission has no tests, so none of its code ran under them"
        path, missing = self._report(ctx, "coverage.json")
        problem = problem or missing
        files = []
        if not problem:
            try:
                files = read_coverage(path, ctx.submission_dir)
            except ReportError as exc:
                problem = str(exc)
        if problem:
            return self._zero(f"No coverage: {problem}.")
        statements = sum(f.statements for f in files)
        covered = sum(f.covered for f in files)
        ratio = share(covered, statements)
        least = sorted(files, key=lambda f: share(f.covered, f.statements))[:5]
        text = (f"{ratio:.0%} of {statements} statements of the submission's code ran under its tests "
                f"(0 points at {self.args.baseline:.0%}, full at {self.args.target:.0%})")
        if least and ratio < 1:
            text += "; least covered: " + ", ".join(  # the file names are the candidate's
                f"{one_line(f.path, 120)} {share(f.covered, f.statements):.0%}" for f in least)
        return self.criterion(
            score=linear_score(ratio, baseline=self.args.baseline, target=self.args.target),
            explanation=text + ".", metrics={"coverage": ratio, "statements": float(statements)},
            details={"files": {f.path: {"statements": f.statements, "covered": f.covered} for f in files}})


class HiddenTestsArgs(_StageArgs):
    #: points per test, by glob over node ids such as "test_model.py::test_fit"; a test matching
    #: no pattern is worth `default` points. Parametrised cases share their function's points.
    points: dict[str, float] = Field(default_factory=dict)
    default: float = Field(1.0, ge=0)


@grader("hidden_tests")
class HiddenTestsGrader(_TestGrader):
    """Points of the hidden suite's tests that pass, over all its points."""

    version = "1"
    Args = HiddenTestsArgs
    args: HiddenTestsArgs

    def check_spec(self, spec: AssignmentSpec) -> None:
        stage = _test_stage(spec, self.args.stage, hidden=True)
        self._suite = stage.pytest.suite  # type: ignore[union-attr]

    def check_files(self, assignment_dir: Path) -> None:
        """The suite must parse and hold tests worth points, and every `points` pattern must match."""
        try:
            suite = collect_suite(assignment_dir / self._suite)
        except (OSError, SyntaxError, ValueError) as exc:
            raise SpecError(f"hidden suite {self._suite!r} cannot be read: {exc}") from None
        self._tests = {t.node: (t, self._points(t.node)) for t in suite}
        if sum(p for _, p in self._tests.values()) <= 0:
            raise SpecError(f"hidden suite {self._suite!r} holds no test worth points")
        unmatched = [p for p in self.args.points if not any(fnmatch.fnmatchcase(n, p) for n in self._tests)]
        if unmatched:
            raise SpecError(f"points: {unmatched} match no test of {self._suite!r}; "
                            f"its tests: {sorted(self._tests)}")

    def _points(self, node: str) -> float:
        matches = (p for pattern, p in self.args.points.items() if fnmatch.fnmatchcase(node, pattern))
        return next(matches, self.args.default)

    def grade(self, ctx: GradingContext) -> CriterionResult:
        expected = self._tests
        cases, problem = self._cases(ctx)
        by_function: dict[str, list[TestCase]] = {}
        for case in cases:
            if case.function_node in expected:
                by_function.setdefault(case.function_node, []).append(case)
        rows: list[dict[str, Any]] = []
        earned, total = 0.0, 0.0
        for node, (_, points) in expected.items():
            ran = [c for c in by_function.get(node, []) if c.outcome != "skipped"]  # the suite's own skips
            if by_function.get(node) and not ran:
                rows.append({"test": node, "points": 0, "earned": 0, "outcome": "skipped", "message": ""})
                continue
            passed = sum(c.outcome == "passed" for c in ran)
            got = points * share(passed, len(ran))
            earned, total = earned + got, total + points
            failed = next((c for c in ran if c.outcome != "passed"), None)
            rows.append({"test": node, "points": points, "earned": round(got, 4),
                         "outcome": _outcome(ran, passed), "message": failed.message if failed else ""})
        lost = [r for r in rows if r["earned"] < r["points"]]
        counted = sum(r["outcome"] != "skipped" for r in rows)
        text = f"{earned:g} of {total:g} points from {counted - len(lost)} of {counted} hidden tests"
        if problem:
            text += f" (no report: {problem})"
        elif lost:
            text += "; lost: " + ", ".join(f"{r['test']} ({r['outcome']})" for r in lost[:LISTED])
        return self.criterion(score=share(earned, total), explanation=text + ".",
                              metrics={"points": earned, "points_total": total,
                                       "tests_passed": float(counted - len(lost))},
                              details={"tests": rows, "problem": problem})


def _failing(case: TestCase) -> str:
    """A failing test's node id; a file that could not be collected, with its error."""
    if case.collection:
        return f"{case.node} (could not be collected: {case.message})" if case.message else case.node
    return case.node


def _outcome(ran: list[TestCase], passed: int) -> str:
    if not ran:
        return "not reported"
    if passed == len(ran):
        return "passed"
    kinds = sorted({c.outcome for c in ran if c.outcome != "passed"})
    return "/".join(kinds) + (f" ({passed} of {len(ran)} cases passed)" if len(ran) > 1 else "")
