"""The cohort as CSV, one row per candidate (the newest result), for an applicant-tracking system
or a spreadsheet. For the hiring team: every criterion, whatever its visibility.

Columns, in a stable order: rank, candidate, submission_id, status, total_score (0-100),
provisional (`true` while a rubric item awaits manual review: the total is then over the
automatic criteria only, as the `--json` line's `provisional` says), one
`group:<name>` column per named group (0-100), one `criterion:<name>` column per criterion
(0-1, the spec's order, then any criterion only older results have), reason, similar_to.
An ungraded result has no rank and no total (never 0). Candidate-controlled text is escaped by
the csv module (RFC 4180 quoting), and a text cell that a spreadsheet would run as a formula
gets a leading `'` (OWASP, https://owasp.org/www-community/attacks/CSV_Injection: cells starting
with `=`, `+`, `-`, `@`, tab or carriage return; ASVS 5.0 V1.2.10 adds NUL; harness._escape).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness._escape import safe_cell
from harness.core.text import one_line
from harness.results import SubmissionResult, group_scores, leaderboard, ranks
from harness.spec import Assignment

FIXED = ("rank", "candidate", "submission_id", "status", "total_score", "provisional")


def columns(assignment: Assignment, results: Sequence[SubmissionResult]) -> list[str]:
    """The header: fixed columns, groups, criteria, then reason and similar_to."""
    groups = list(dict.fromkeys(g.group for g in assignment.spec.graders if g.group))
    criteria = [g.name for g in assignment.spec.graders]
    criteria += list(dict.fromkeys(c.name for r in results for c in r.criteria if c.name not in criteria))
    groups += list(dict.fromkeys(c.group for r in results for c in r.criteria
                                 if c.group and c.group not in groups))
    return [*FIXED, *(f"group:{g}" for g in groups), *(f"criterion:{c}" for c in criteria),
            "reason", "similar_to"]


def rows(assignment: Assignment, results: Sequence[SubmissionResult],
         similar: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """One dict per result, best first, keyed by `columns`; every value already a cell's text."""
    header = columns(assignment, results)
    ordered = leaderboard(list(results))
    out = []
    for result, rank in zip(ordered, ranks(ordered), strict=True):
        groups = group_scores(result.criteria)
        row = dict.fromkeys(header, "")
        row.update({
            "rank": "" if rank is None else str(rank),
            "candidate": safe_cell(result.candidate), "submission_id": safe_cell(result.submission_id),
            "status": result.status.value, "total_score": _num(result.total_score, 2),
            "provisional": "true" if result.pending_review else "false",
            "reason": safe_cell(result.reason),  # one line, cut to results.REASON_CHARS already
            "similar_to": safe_cell((similar or {}).get(result.submission_id, "")),
        })
        for c in result.criteria:
            row[f"criterion:{c.name}"] = "" if c.ungraded else _num(c.score, 4)
            if c.group and f"group:{c.group}" in row:
                row[f"group:{c.group}"] = _num(groups.get(c.group), 2)
        out.append(row)
    return out


def _num(value: float | None, places: int) -> str:
    return "" if value is None else f"{value:.{places}f}"


def render(assignment: Assignment, results: Sequence[SubmissionResult],
           similar: Mapping[str, str] | None = None) -> str:
    """The whole CSV text (header first, `\\r\\n` line ends as RFC 4180 has them)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns(assignment, results), quoting=csv.QUOTE_MINIMAL)
    writer.writeheader()
    writer.writerows(rows(assignment, results, similar))
    return buffer.getvalue()


def similarity_flags(folders: Mapping[str, Path], assignment: Assignment) -> tuple[dict[str, str], str]:
    """Submission id -> "other-id 0.82; ..." from the copy-detection snapshots stored in the result
    folders (`folders`: submission id -> folder), compared as the batch compares them (read only:
    no report page is written); and a problem, "" when every snapshot was read."""
    from harness.batch_similarity import SNAPSHOT_DIR  # scipy: only when flags are asked for
    from harness.similarity import SnapshotError, compare, load_snapshot

    settings = assignment.spec.similarity
    if not settings.enabled:
        return {}, ""
    snaps, missing = {}, []
    for name, folder in sorted(folders.items()):
        try:
            snaps[name] = load_snapshot(folder / SNAPSHOT_DIR)
        except SnapshotError:
            missing.append(name)
    problem = f"no copy-detection snapshot for {len(missing)} result(s)" if missing else ""
    try:
        pairs = compare(snaps, threshold=settings.threshold, max_share=settings.max_share,
                        min_shared=settings.min_shared)
    except SnapshotError as exc:
        return {}, one_line(str(exc), 200)
    flags: dict[str, list[str]] = {}
    for pair in pairs:  # most similar first
        flags.setdefault(pair.a, []).append(f"{pair.b} {pair.similarity:.2f}")
        flags.setdefault(pair.b, []).append(f"{pair.a} {pair.similarity:.2f}")
    return {name: "; ".join(found) for name, found in flags.items()}, problem
