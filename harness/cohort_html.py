"""The cohort page (results/<id>/<version>/index.html): the ranking and the comparison charts.

Static and self-contained: inline CSS and SVG only, relative links to the candidates' pages and
the copy-detection pages. Every piece of text from a result (names, reasons, run ids) is escaped.
"""

from __future__ import annotations

from harness._cohort_charts import charts
from harness._html import esc, link, page, status_class, table
from harness._svg import colour
from harness.batch_similarity import REPORT_DIR
from harness.cohort import Cohort, CohortRow
from harness.results import SubmissionResult, now_iso

_REASON_CHARS = 160


def render_cohort(cohort: Cohort) -> str:
    """The whole page."""
    title = f"{cohort.title} ({cohort.assignment}@{cohort.version})"
    graded = sum(1 for r in cohort.rows if r.rank is not None)
    body = [f"<h1>{esc(title, 200)}</h1>",
            f'<p class="muted">{len(cohort.rows)} candidate(s), {graded} graded; newest submission of each '
            f"candidate; page written {esc(now_iso())}. Rebuild it with <code>harness report "
            f"{esc(cohort.assignment)}</code>.</p>",
            "<h2>Ranking</h2>", _ranking(cohort), _notes(cohort)]
    for chart in charts(cohort):
        body += [f"<h2>{esc(chart.heading, 200)}</h2>", chart.svg,
                 f'<p class="muted">{esc(chart.caption)}</p>']
    return page(title, "\n".join(body))


def _ranking(cohort: Cohort) -> str:
    if not cohort.rows:
        return "<p>No results yet.</p>"
    head = ["#", "candidate", "status", "total", "range", *[esc(g, 40) for g in cohort.groups],
            "why not ok", "copy flags", "MLflow run"]
    numeric = [0, 3, 4, *range(5, 5 + len(cohort.groups))]
    rows = [_row(i, row, cohort.groups) for i, row in enumerate(cohort.rows)]
    return table(head, rows, numeric)


def _row(index: int, row: CohortRow, groups: list[str]) -> list[str]:
    r = row.result
    name = f'<span class="sw" style="background:{colour(index)}"></span>{link(row.page, r.candidate)}'
    total = "ungraded" if r.total_score is None else f"<b>{r.total_score:.2f}</b>" + _marks(r)
    low, high = row.total_range or (0.0, 0.0)
    span = f"{low:.1f}–{high:.1f}" if low != high else ""  # a point says nothing the total does not
    cells = [str(row.rank) if row.rank is not None else "–", name,
             f'<span class="{status_class(r.status.value)}">{esc(r.status.value)}</span>', total, span]
    cells += [f"{row.groups[g]:.1f}" if g in row.groups else "–" for g in groups]
    cells += [f'<span class="reason">{esc(r.reason, _REASON_CHARS)}</span>' if r.reason else "", _flags(row),
              f'<code title="{esc(row.run_id, 64)}">{esc(row.run_id[:8])}…</code>' if row.run_id else ""]
    return cells


def _marks(r: SubmissionResult) -> str:
    """After the total: "provisional" while rubric items await review, and the change since the
    result a re-grade replaced (the candidate's page lists which criteria moved)."""
    marks = []
    if r.pending_review:
        pending = esc(", ".join(r.pending_review), 300)
        marks.append(f'<span class="prov" title="manual review pending: {pending}">provisional</span>')
    if r.previous is not None:
        before = r.previous.total_score
        change = "" if before is None or r.total_score is None else f" {r.total_score - before:+.2f}"
        marks.append(f'<span class="muted" title="changed since the previous grading">'
                     f"re-graded{change}</span>")
    return "".join(f" <br>{m}" for m in marks)


def _flags(row: CohortRow) -> str:
    parts = []
    for flag in row.flags:
        text = f"{flag.similarity:.0%} like {flag.partner}"
        parts.append(f'<span class="flag">{link(flag.page, text) if flag.page else esc(text)}</span>')
    return "<br>".join(parts)


def _notes(cohort: Cohort) -> str:
    flagged = any(row.flags for row in cohort.rows)
    similarity = esc(cohort.similarity)
    if flagged:
        similarity += f" All pairs: {link(f'{REPORT_DIR}/index.html', 'similar submissions')}."
    return ("<p class=\"muted\">Total: the weighted score out of 100. Range: the total with every criterion "
            "that measures a 95% interval at its interval's low end, "
            "then its high end, the others as scored (a provisional total, and its range, leave out the "
            "rubric items not yet reviewed); two candidates whose ranges overlap are not clearly "
            "apart. Group columns: each group's score out of 100. Ungraded results (the harness or the "
            f"machine failed, never the candidate) are listed last, without a rank.</p>\n<p>{similarity}</p>")
