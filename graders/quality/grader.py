"""The `code_quality` grader: a static review of the candidate's code and repository. It never runs them.

Measures (each mapped linearly from its `bad` value, 0, to its `good` value, 1; the score is
their weighted mean, see graders.quality._args for defaults):

- lint: ruff findings per 100 logical lines, ruff run `--isolated` with the spec's rules (each code line
  of a file that does not parse counts at `bad`, in this and the other line-weighted measures);
- complexity: radon's cyclomatic complexity of the function each statement is in, averaged;
- maintainability: radon's maintainability index per file, averaged;
- function_size / file_size: share of the code in over-long functions (or top-level code) and files;
- docstrings / annotations: coverage of public functions and methods outside tests (`ast`);
- readme, dependencies, tests, large_files, secrets: project hygiene.

Python files and notebook code cells are read within caps (graders.quality._collect) and parsed
in a resource-limited subprocess (graders.quality._worker). The starter kit named by the spec's
`starter` is left out: identical files entirely, and unchanged lines of files the candidate
edited. A submission without analysable Python code, or whose code holds no statement of its own
(empty files, comments, markdown-only notebooks), scores 0. Details list each measure and the
top findings; `feedback.md` in the artifacts says the same to the candidate.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from graders.quality._args import MEASURES, CodeQualityArgs
from graders.quality._collect import Caps, Collection, SourceFile, collect, load_starter
from graders.quality._feedback import (
    FEEDBACK_FILE,
    Scored,
    explanation,
    feedback_markdown,
    finding_line,
    measure_details,
    top_findings,
)
from graders.quality._hygiene import hygiene_measures, is_test_file
from graders.quality._measures import FileView, Measure, code_measures, unparsed_files
from graders.quality._tools import RuffRun, Unit, UnitResult, check_rules, run_ruff, run_worker, tool_versions
from harness.core import SpecError
from harness.core.grading import CriterionResult, Grader, GradingContext, grader, linear_score
from harness.core.text import one_line

if TYPE_CHECKING:
    from harness.spec import AssignmentSpec


def _ruff_notebook(source: SourceFile) -> str:
    """A minimal notebook of the code cells only, as ruff reads it (cell numbers map back by position)."""
    cells: list[dict[str, Any]] = [
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": cell.source}
        for cell in source.cells]
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "cells": cells,
                       "metadata": {"language_info": {"name": "python"}}})


@grader("code_quality")
class CodeQualityGrader(Grader):
    """Static code-quality review: lint, complexity, sizes, documentation and project hygiene."""

    version = "3"  # 2: no statement of its own scores 0; 3: a file that does not parse counts by its size
    Args = CodeQualityArgs
    args: CodeQualityArgs

    def __init__(self, *, name: str, weight: float, args: BaseModel, group: str | None = None) -> None:
        super().__init__(name=name, weight=weight, args=args, group=group)
        self.starter: str | None = None  # the spec's starter folder, relative to the assignment folder

    def check_spec(self, spec: AssignmentSpec) -> None:
        """Record the spec's starter kit; raise SpecError if ruff refuses the rule selection."""
        self.starter = spec.starter
        problem = check_rules(self.args.rules, self.args.target_version)
        if problem:
            raise SpecError(f"grader {self.name!r}: args.rules/target_version: ruff refuses them: {problem}")

    def grade(self, ctx: GradingContext) -> CriterionResult:
        """Grade one submission statically. Raises HarnessError only if ruff is not installed."""
        a = self.args
        caps = Caps(a.max_entries, a.max_files, a.max_file_bytes, a.max_total_bytes)
        starter_dir = ctx.assignment_dir / self.starter if self.starter and a.exclude_starter else None
        starter = load_starter(starter_dir, caps)
        found = collect(ctx.submission_dir, starter, caps)
        with tempfile.TemporaryDirectory(prefix="quality-") as scratch:
            views, ruff = self._analyse(found, Path(scratch))
        sources = {source.rel: source for source in found.sources}
        measures = [*code_measures(views, sources, ruff, found.unreadable, a),
                    *hygiene_measures(ctx.submission_dir, found.tree, starter, views, a)]
        scored = [self._score(m) for m in measures]
        analysed = [view for view in views if view.result.ok]
        has_code = any(view.logical for view in analysed)  # else only measures of absence would count
        total = _weighted_mean(scored) if has_code else 0.0
        why = explanation(total, scored) + _unparsed_note(views) if has_code else _no_code(found, views)
        ctx.artifacts_dir.mkdir(parents=True, exist_ok=True)
        (ctx.artifacts_dir / FEEDBACK_FILE).write_text(
            feedback_markdown(total, scored, rules=a.rules, intro="" if has_code else why), encoding="utf-8")
        metrics = {**_metrics(scored, analysed),
                   "unparsed_lines": float(sum(u.lines for u in unparsed_files(views)))}
        return self.criterion(score=total, metrics=metrics, explanation=why,
                              details=self._details(scored, found, views))

    def _analyse(self, found: Collection, scratch: Path) -> tuple[list[FileView], RuffRun]:
        """Write harness-owned copies of the sources, then run ruff and the limited worker on them."""
        a = self.args
        tree, units_dir = scratch / "src", scratch / "units"
        units_dir.mkdir(parents=True)
        units, copied, results = [], [], {}
        for index, source in enumerate(found.sources):
            unit = units_dir / f"{index}.py"
            try:
                target = tree / source.rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(_ruff_notebook(source) if source.notebook else source.text,
                                  encoding="utf-8")
                unit.write_text(source.text, encoding="utf-8")
            except OSError as exc:  # e.g. a path too long once under the scratch folder
                results[index] = UnitResult(id=index, ok=False,
                                            error=f"could not be copied for analysis: {exc.strerror}")
                continue
            copied.append(source.rel)
            units.append(Unit(index, unit, tuple(cell.first_line for cell in source.cells)))
        ruff = run_ruff(tree, copied, rules=a.rules, target_version=a.target_version,
                        line_length=a.line_length, timeout=a.timeout)
        results.update(run_worker(units, scratch, timeout=a.timeout))
        views = [FileView(source, results[index], is_test_file(source.rel))
                 for index, source in enumerate(found.sources)]
        return views, ruff

    def _score(self, measure: Measure) -> Scored:
        band = self.args.band(measure.name)
        if not measure.applicable or band.weight == 0:
            return Scored(measure, band, None)
        if measure.value is None:  # could not be measured (e.g. ruff timed out on the input): no credit
            return Scored(measure, band, 0.0)
        return Scored(measure, band, linear_score(measure.value, baseline=band.bad, target=band.good))

    def _details(self, scored: list[Scored], found: Collection, views: list[FileView]) -> dict[str, Any]:
        a = self.args
        return {
            "measures": measure_details(scored),
            "top_findings": [finding_line(f) for f in top_findings(scored, a.top_findings)],
            "files": {
                "python_files": sum(not v.source.notebook for v in views),
                "notebooks": sum(v.source.notebook for v in views),
                "logical_lines": sum(v.logical for v in views if v.result.ok),
                "same_as_starter": found.starter_files[:50],
                "not_analysed": [f"{u.rel}: {u.reason}" for u in found.skipped + found.unreadable][:50]
                + [f"{u.where}: {u.view.result.error}" for u in unparsed_files(views)][:50],
                "walk": found.tree.notes[:20],
            },
            "tools": {**tool_versions(), "rules": list(a.rules), "target_version": a.target_version,
                      "starter": self.starter if a.exclude_starter else None},
            "artifacts": [FEEDBACK_FILE],
        }


def _weighted_mean(scored: list[Scored]) -> float:
    counted = [(s.band.weight, s.score) for s in scored if s.score is not None and s.band.weight > 0]
    weights = sum(weight for weight, _ in counted)
    return sum(weight * score for weight, score in counted) / weights if weights else 0.0


def _metrics(scored: list[Scored], analysed: list[FileView]) -> dict[str, float]:
    metrics: dict[str, float] = {"logical_lines": float(sum(v.logical for v in analysed)),
                                 "files_analysed": float(len(analysed))}
    for s in scored:
        if s.measure.value is not None:
            metrics[s.measure.name] = s.measure.value
        if s.score is not None:
            metrics[f"{s.measure.name}_score"] = s.score
    return metrics


def _unparsed_note(views: list[FileView], shown: int = 3) -> str:
    """A sentence per file that did not parse: where the parser stopped, the line, what it costs."""
    notes = []
    for u in unparsed_files(views)[:shown]:
        line = u.error_line()
        at = f" at `{one_line(line, 80)}`" if line else ""
        notes.append(f"{u.where} did not parse ({u.view.result.error}){at}: its {u.lines} code lines count "
                     "at the worst rating of lint, complexity, maintainability and size.")
    more = len(unparsed_files(views)) - shown
    tail = f" {more} more did not parse." if more > 0 else ""
    return "".join(f" {one_line(note, 400)}" for note in notes) + tail


def _no_code(found: Collection, views: list[FileView]) -> str:
    if not found.sources and not found.unreadable:
        skipped = f"; {len(found.skipped)} over the size caps" if found.skipped else ""
        return (f"No Python code to review (no .py file or notebook code cell beyond the starter "
                f"kit{skipped}), so the score is 0.")
    broken = [f"{u.rel} ({u.reason})" for u in found.unreadable]
    broken += [f"{u.where} ({u.view.result.error})" for u in unparsed_files(views)]
    if not broken:
        return ("No Python code to review: the Python files and notebook code cells hold no statement of "
                "the submission's own (only blank lines, comments or unchanged starter code), so the score "
                "is 0.")
    return ("No Python code could be analysed (syntax errors or unreadable files: "
            + one_line("; ".join(broken[:3]), 600) + "), so the score is 0.")


__all__ = ["MEASURES", "CodeQualityArgs", "CodeQualityGrader"]
