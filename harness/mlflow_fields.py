"""What one submission's MLflow run carries: its name, params, metrics and tags.

Names read plainly and sort the way a reviewer reads a result: `total_score`, then `group.<group>`
(points out of 100, like the total and the summary table), then `score.<criterion>` (0 to 1), then
the graders' raw metrics (`<criterion>.<metric>`) and the stages' (`<stage>.seconds`). Values are
rounded to what a person can read (MLflow shows a float's 16 digits otherwise); result.json keeps
the exact figures.
"""

from __future__ import annotations

import math
import posixpath
import re
from pathlib import Path
from typing import Any

from harness.core.text import one_line
from harness.report import render_report
from harness.results import Status, SubmissionResult, group_scores

RESULT_KEY_TAG = "mlgrade.result_key"
SUBMISSION_TAG = "mlgrade.submission_id"
STATUS_TAG = "status"
REASON_TAG = "reason"
REVIEW_TAG, REVIEWER_TAG, REVIEWED_AT_TAG = "review", "review.reviewer", "review.at"
NOTE_TAG = "mlflow.note.content"  # MLflow shows this tag as the run's description
NOTE_CHARS = 5000
VALUE_CHARS, NAME_CHARS, RUN_NAME_CHARS = 5000, 250, 250
TOTAL = "total_score"

_BAD_NAME_CHAR = re.compile(r"[^A-Za-z0-9_\-. /]")
_DIGITS = {"total": 2, "group": 1, "score": 3}  # decimals of the figures people compare
_RAW_SIGNIFICANT = 6


def run_name(result: SubmissionResult) -> str:
    """The candidate, and the status when it is not ok: the runs list shows it in every view."""
    suffix = "" if result.status is Status.OK else f" ({result.status.value})"
    return one_line(result.candidate, RUN_NAME_CHARS - len(suffix)) + suffix


def group_metric(group: str) -> str:
    return name(f"group.{group}")


def criterion_metric(criterion: str) -> str:
    return name(f"score.{criterion}")


def params(result: SubmissionResult) -> dict[str, str]:
    """How it was graded (the same for a whole cohort). What identifies the submission is a tag
    (`identity`): as params, the UI's compare view plotted content hashes instead of scores."""
    values: dict[str, str | None] = {
        "assignment": result.assignment, "assignment_version": result.assignment_version,
        "harness_version": result.harness_version, "backend": result.backend,
    }
    values |= {f"grader_version.{g}": version for g, version in sorted(result.grader_versions.items())}
    return {name(k): one_line(v, VALUE_CHARS) for k, v in values.items() if v is not None}


def identity(result: SubmissionResult) -> dict[str, str]:
    """Which submission and which image, as `mlgrade.*` tags."""
    values = {SUBMISSION_TAG: result.submission_id, RESULT_KEY_TAG: result.key,
              "mlgrade.content_hash": result.content_hash, "mlgrade.commit": result.commit,
              "mlgrade.image": result.image, "mlgrade.image_id": result.image_id}
    return {k: one_line(v, VALUE_CHARS) for k, v in values.items() if v}


def metrics(result: SubmissionResult) -> dict[str, float]:
    """Finite numbers only, in the order above, rounded for reading."""
    shown: dict[str, float | None] = {TOTAL: _round(result.total_score, _DIGITS["total"])}
    for group, score in group_scores(result.criteria).items():  # a lone criterion is its own group
        shown[group_metric(group)] = _round(score, _DIGITS["group"])
    for c in result.criteria:
        if not c.ungraded:  # a pending manual review has no score: never a 0 in the charts
            shown[criterion_metric(c.name)] = _round(c.score, _DIGITS["score"])
    raw: dict[str, Any] = {}
    for c in result.criteria:
        raw |= {f"{c.name}.{metric}": value for metric, value in c.metrics.items()}
    for s in result.stages:
        raw[f"{s.name}.seconds"] = s.seconds
        if s.peak_memory_bytes is not None:
            raw[f"{s.name}.peak_memory_mb"] = s.peak_memory_bytes / (1 << 20)
    shown |= {name(k): _significant(v) for k, v in raw.items()}
    return {k: v for k, v in shown.items() if v is not None}


def tags(result: SubmissionResult, folder: Path) -> dict[str, str]:
    found = {"candidate": one_line(result.candidate, VALUE_CHARS), STATUS_TAG: result.status.value,
             "submission": one_line(result.submission, VALUE_CHARS), **identity(result),
             NOTE_TAG: note(render_report(result, folder), "report.md")}
    if result.review is not None or result.pending_review:  # the runs list can show who reviewed
        found[REVIEW_TAG] = f"pending: {', '.join(result.pending_review)}" if result.pending_review \
            else "done"
    if result.review is not None:
        found[REVIEWER_TAG] = one_line(result.review.reviewer, VALUE_CHARS)
        found[REVIEWED_AT_TAG] = result.review.at
    if result.reason:  # why it is not ok: the failing stage's exception line, shown in the runs list
        found[REASON_TAG] = one_line(result.reason, VALUE_CHARS)
    return found


def note(markdown: str, full: str) -> str:
    """`markdown` cut at a line within the description's limit, saying which artifact is whole."""
    if len(markdown) <= NOTE_CHARS:
        return markdown
    return markdown[: markdown.rfind("\n", 0, NOTE_CHARS) + 1] + f"\n… (truncated: the full text is {full})\n"


def name(key: str) -> str:
    """An MLflow-valid param/metric name: letters, digits, `_ - . / space`, no path tricks."""
    parts = [p if p not in (".", "..") else "_" for p in _BAD_NAME_CHAR.sub("_", key).split("/") if p]
    cut = "/".join(parts)[:NAME_CHARS].rstrip("/") or "_"
    return cut if posixpath.normpath(cut) == cut else cut.replace("/", "_")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _round(value: object, decimals: int) -> float | None:
    number = _number(value)
    return None if number is None else round(number, decimals)


def _significant(value: object) -> float | None:
    number = _number(value)
    return None if number is None else float(f"{number:.{_RAW_SIGNIFICANT}g}")
