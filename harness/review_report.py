"""The report's "Changes since the previous grading" section (harness.review.changes)."""

from __future__ import annotations

from harness.report import _row, _text
from harness.results import SubmissionResult
from harness.review import change_cells, total_change


def regrade_section(result: SubmissionResult) -> str:
    """Which criteria changed, and by how much, since the result this re-grade replaced."""
    previous = result.previous
    if previous is None:
        return ""
    total = total_change(result)
    versions = sorted(n for n, v in result.grader_versions.items() if previous.grader_versions.get(n) != v)
    lines = ["## Changes since the previous grading", "",
             f"Previous result `{previous.key}` graded {_text(previous.started_at)}; total {total}."]
    if versions:
        lines.append(f"New grader versions: {_text(', '.join(versions))}.")
    changed = change_cells(result)
    if not changed:
        return "\n".join([*lines, "", "No criterion's score changed."])
    lines += ["", _row("Criterion", "Before", "Now", "Change"), _row("---", "---:", "---:", "---:")]
    for name, before, now, delta in changed:
        lines.append(_row(_text(name), before, now, delta))
    return "\n".join(lines)
