"""The leaderboard as rows of plain text, and as CSV, Markdown and JSON lines (`--format`,
harness.cli.Format).

Candidate-controlled text (names, messages, paths) is escaped for each format: CSV through the
csv module, with a leading quote on a cell a spreadsheet would run as a formula (OWASP's advice
on CSV injection); Markdown with every character that starts markup (pipes, brackets, emphasis,
HTML) backslash-escaped, as CommonMark allows for any ASCII punctuation.

The escapers are harness._escape's, shared with report.md and `harness export --format csv`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from harness._escape import markdown_text, safe_cell
from harness.core.text import one_line
from harness.results import Status, SubmissionResult, group_scores, leaderboard, ranks
from harness.rubric import MANUAL_GROUP

NOTE_CHARS = 200  # a note is one line of the table; the whole message is in result.json and --format json


@dataclass(frozen=True)
class Board:
    """The leaderboard as text cells: `groups` are the score columns between total and seconds."""

    groups: list[str]
    rows: list[list[str]]  # rank, candidate, status, total, *groups, seconds, note (reason if not ok)
    results: list[SubmissionResult]  # in rank order, one per row

    @property
    def headers(self) -> list[str]:
        return ["#", "candidate", "status", "total", *self.groups, "seconds", "note"]


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def board(results: list[SubmissionResult], *, skipped: set[str] | None = None) -> Board:
    """Best total first; a group's score is rounded to a whole point, "—" where it has none."""
    ordered = leaderboard(results)
    # the manual group has a column while its review is pending too (its cell says so)
    groups = list(dict.fromkeys(g for r in ordered for g in [*group_scores(r.criteria), *_manual(r)]))
    rows = []
    for rank, r in zip(ranks(ordered), ordered, strict=True):  # ties share a rank; ungraded: none
        scores = {name: f"{score:.0f}" for name, score in group_scores(r.criteria).items()}
        if r.pending_review:
            scores[MANUAL_GROUP] = "pending"
        # why it failed first (the exception line), where a cut note has room for a few words
        why = r.reason if r.status is not Status.OK and r.reason else r.message
        note = ("already graded; " if skipped and r.submission_id in skipped else "") + why
        if r.pending_review:  # the total is over the automatic criteria only
            note = "total provisional: manual review pending" + (f"; {note}" if note else "")
        rows.append(["—" if rank is None else str(rank), r.candidate, r.status.value, _score(r.total_score),
                     *(scores.get(g, "—") for g in groups), f"{r.duration_s:.1f}",
                     one_line(note, NOTE_CHARS)])
    return Board(groups, rows, ordered)


def _manual(result: SubmissionResult) -> list[str]:
    return [MANUAL_GROUP] if any(c.group == MANUAL_GROUP for c in result.criteria) else []


def to_csv(found: Board) -> str:
    """One header line, then one line per candidate (with its submission id and full message)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rank", "candidate", "submission_id", "status", "total", *found.groups, "seconds",
                     "reason", "message"])
    for row, result in zip(found.rows, found.results, strict=True):
        total = "" if result.total_score is None else f"{result.total_score:g}"
        groups = ["" if cell == "—" else cell for cell in row[4:4 + len(found.groups)]]
        rank = "" if row[0] == "—" else row[0]  # an ungraded result has no rank, as in harness export
        writer.writerow([rank, safe_cell(result.candidate), safe_cell(result.submission_id),
                         result.status.value, total, *groups, f"{result.duration_s:g}",
                         safe_cell(result.reason), safe_cell(one_line(result.message))])
    return out.getvalue()


def markdown_cell(text: str) -> str:
    """`text` as the literal content of one GFM table cell: one line, markup characters escaped."""
    return markdown_text(text)


def to_markdown(found: Board) -> str:
    """A GFM pipe table; numbers right-aligned."""
    numeric = {"#", "total", "seconds", *found.groups}
    lines = ["| " + " | ".join(markdown_cell(h) for h in found.headers) + " |",
             "|" + "|".join("---:" if h in numeric else "---" for h in found.headers) + "|"]
    lines += ["| " + " | ".join(markdown_cell(cell) for cell in row) + " |" for row in found.rows]
    return "\n".join(lines) + "\n"


def to_json_lines(found: Board) -> str:
    """The `--json` lines (SubmissionResult.summary_line), best first."""
    return "".join(json.dumps(r.summary_line()) + "\n" for r in found.results)
