"""One self-contained HTML feedback page per candidate, safe to send them.

Built from the candidate view (harness.candidate_view), not from report.md: the candidate's own
name, status and failure, and each criterion they may see by its visibility (`--released` adds
`after_due_date` and `after_published`) with its score and a note that never carries expected
values of a criterion scored on hidden material. Nothing of other candidates, no metrics, no
details. Every text is HTML-escaped; the page loads nothing (no script, font, image or link,
and a Content-Security-Policy that forbids any), so it opens offline and cannot call home.
"""

from __future__ import annotations

from harness._escape import esc as _e  # the harness's one HTML escaper (controls removed)
from harness.candidate_view import RELEASED, CandidateView, CriterionView

CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #1a1a1a; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: .4rem .6rem; text-align: left; vertical-align: top; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.status { padding: .6rem .8rem; border-left: 4px solid #888; background: #f5f5f5; }
.status.ok { border-color: #2a7; } .status.bad { border-color: #c33; }
.muted { color: #666; }
code { font-size: 90%; }
"""


def render_feedback(view: CandidateView, *, released: bool) -> str:
    """The page's HTML. `released`: the results are published (after_* criteria shown)."""
    shown = view.shown(released=released)
    body = [f"<h1>{_e(view.title)}</h1>",
            f'<p class="muted">Feedback for <strong>{_e(view.candidate)}</strong>, submission '
            f"<code>{_e(view.submission_id)}</code> ({_e(view.key)})</p>",
            _status(view)]
    if view.graded:
        body += [_total(view, released), _criteria(shown), _later(view, released)]
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="referrer" content="no-referrer">'
            f"<title>Feedback: {_e(view.title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(part for part in body if part) + "\n</body></html>\n")


def _status(view: CandidateView) -> str:
    ok = view.status == "ok"
    if not view.graded:
        head = "Your submission has not been graded yet."
    elif ok:
        head = "Every stage of your submission ran."
    else:
        head = f"Your submission ended with status <strong>{_e(view.status)}</strong>."
    reason = f"<br>{_e(view.reason)}" if view.reason else ""
    return f'<p class="status {"ok" if ok else "bad"}">{head}{reason}</p>'


def _total(view: CandidateView, released: bool) -> str:
    # as on Gradescope, the total is not shown while any criterion that counts towards it is not;
    # nor while one is ungraded (a rubric item not reviewed yet): that total is provisional
    provisional = any(c.score is None and c.weight > 0 for c in view.criteria)
    if view.withheld(released=released) or view.total is None or provisional:
        return '<p class="muted">The total score is shared when every criterion is.</p>'
    return f"<p>Total score: <strong>{view.total:.2f}</strong> / 100</p>"


def _criteria(shown: list[CriterionView]) -> str:
    if not shown:
        return '<p class="muted">No criterion is shared yet.</p>'
    rows = ["<table><thead><tr><th>Criterion</th><th>Score</th><th>Points</th><th>Notes</th></tr>"
            "</thead><tbody>"]
    for c in shown:
        score = "not graded" if c.score is None else f"{c.score:.0%}"
        points = "" if c.points is None else f"{c.points:.2f} / {c.max_points:.2f}"
        rows.append(f"<tr><td>{_e(c.label)}</td><td class=\"num\">{_e(score)}</td>"
                    f"<td class=\"num\">{_e(points)}</td><td>{_e(c.note)}</td></tr>")
    return "\n".join([*rows, "</tbody></table>"])


def _later(view: CandidateView, released: bool) -> str:
    later = [c for c in view.criteria if c.visibility in RELEASED]
    if released or not later:
        return ""
    noun = "criterion is" if len(later) == 1 else "criteria are"
    return f'<p class="muted">{len(later)} more {noun} shared when the results are released.</p>'
