"""`harness export`: the stored results of an assignment version out in the formats teams use.

    csv         OUT/<id>-<version>.csv (or the text, for stdout)   harness.export_csv
    gradescope  OUT/<candidate>/results.json per graded result     harness.export_gradescope
    feedback    OUT/<candidate>/feedback.html per candidate        harness.feedback

Each works on the newest result of each candidate and never grades. A candidate's folder is
their name made safe for a path (harness.core.text.slug), with the submission id added when two
names would share one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from harness import export_csv
from harness.candidate_view import candidate_view
from harness.core.text import slug
from harness.export_gradescope import results_json
from harness.feedback import render_feedback
from harness.results import SubmissionResult, leaderboard, write_atomic
from harness.spec import Assignment

Format = Literal["csv", "gradescope", "feedback"]
FORMATS: tuple[str, ...] = get_args(Format)
GRADESCOPE_FILE = "results.json"
FEEDBACK_FILE = "feedback.html"


@dataclass
class ExportReport:
    """What an export wrote, and what it left out and why."""

    format: str
    results: int = 0  # candidates exported from
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "<submission id>: why"
    problems: list[str] = field(default_factory=list)  # e.g. copy flags that could not be computed
    text: str | None = None  # the CSV, when asked for on stdout


def export(assignment: Assignment, stored: Sequence[tuple[Path, SubmissionResult]], *, fmt: Format,
           out: Path | None, released: bool = False, results_dir: Path | None = None) -> ExportReport:
    """Export `stored` (folder, result) pairs, one per candidate, into `out` (None: return the CSV
    text; only for csv); nothing when `stored` is empty. Raises ValueError for an unknown format
    or a missing `out`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if out is None and fmt != "csv":
        raise ValueError(f"--format {fmt} writes one file per candidate: give a folder with --out")
    report = ExportReport(format=fmt, results=len(stored))
    if not stored:  # nothing graded here: most likely the wrong --results; write nothing
        return report
    if fmt == "csv":
        _csv(assignment, stored, out, report)
        return report
    assert out is not None  # checked above; for the type checker
    names = folder_names([result for _, result in stored])
    for _, result in stored:
        view = candidate_view(assignment, result, results_dir=results_dir)
        folder = out / names[result.submission_id]
        if fmt == "feedback":
            report.written.append(_write(folder / FEEDBACK_FILE, render_feedback(view, released=released)))
        elif not view.graded:
            report.skipped.append(f"{result.submission_id}: {result.status.value} is ungraded (a "
                                  "Gradescope result would show it as 0)")
        elif result.pending_review:  # a provisional total is not a grade to publish
            report.skipped.append(f"{result.submission_id}: manual review pending "
                                  f"({', '.join(result.pending_review)}): `harness review` it first")
        else:
            doc = results_json(view, execution_time_s=result.duration_s)
            report.written.append(_write(folder / GRADESCOPE_FILE, json.dumps(doc, indent=2) + "\n"))
    return report


def _csv(assignment: Assignment, stored: Sequence[tuple[Path, SubmissionResult]], out: Path | None,
         report: ExportReport) -> None:
    graded = {r.submission_id: folder for folder, r in stored if r.status.graded}
    similar, problem = export_csv.similarity_flags(graded, assignment)
    report.problems += [problem] if problem else []
    text = export_csv.render(assignment, [r for _, r in stored], similar)
    if out is None:
        report.text = text
        return
    report.written.append(_write(out / f"{assignment.spec.id}-{assignment.spec.version}.csv", text))


def folder_names(results: Sequence[SubmissionResult]) -> dict[str, str]:
    """Submission id -> a folder name: the candidate's slug, or slug-<submission id> when shared."""
    ordered = leaderboard(list(results))
    counts: dict[str, int] = {}
    for result in ordered:
        counts[slug(result.candidate)] = counts.get(slug(result.candidate), 0) + 1
    return {r.submission_id: slug(r.candidate) if counts[slug(r.candidate)] == 1
            else slug(f"{r.candidate}-{r.submission_id}") for r in ordered}


def _write(path: Path, text: str) -> Path:
    write_atomic(path, text)
    return path
