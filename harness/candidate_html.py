"""One candidate's page (report.html beside result.json): the cause of any failure first, then what
report.md holds (header, criteria, key metrics with intervals, stages), with the graders' plots
embedded as data: URIs and links back to the cohort page.

Built from the SubmissionResult, as report.md is (harness.report's data rules are reused, its
Markdown is not parsed). Candidate text is escaped; logs are read bounded from the result folder.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from harness._html import esc, link, num, page, status_class, table
from harness._reasons import LogOutside, clean_lines, read_log_tail
from harness.cohort import INDEX_FILE, Cohort, CohortRow, criterion_bounds, inside
from harness.core import CriterionResult
from harness.report import _ci_of, _not_graded, heading_score
from harness.results import StageRecord, Status, SubmissionResult
from harness.review import change_cells, total_change

MAX_IMAGE_BYTES = 2 << 20  # a larger plot is linked, not embedded
_LOG_TAIL_BYTES = 32 << 10
_LOG_LINES = 40
_DETAILS_CHARS = 20_000
_PNG = b"\x89PNG\r\n\x1a\n"


def render_candidate(row: CohortRow, cohort: Cohort) -> str:
    """The candidate's page; `cohort` gives the way back and the rank among how many."""
    r = row.result
    ranked = sum(1 for x in cohort.rows if x.rank is not None)
    rank = f"rank {row.rank} of {ranked}" if row.rank else "no rank"
    files = [_file_link(row.folder, name, name) for name in ("report.md", "result.json")]
    back = link(f"../{INDEX_FILE}", "← cohort ranking")
    nav = " · ".join([back, esc(rank), *(f for f in files if f)])
    parts = [f"<h1>Grading report: {esc(r.candidate, 200)}</h1>", f"<p>{nav}</p>", _why(r, row.folder),
             _warnings(r), _summary(row), _regrade(r), _criteria(r)]
    parts += [_criterion(c, row.folder, r) for c in r.criteria if not _not_graded(c)]
    parts += [_stages(r.stages, row.folder), _files(r, row.folder)]
    return page(f"{r.candidate}: grading report", "\n".join(p for p in parts if p))


def _file_link(folder: Path, rel: str, text: str) -> str:
    """A link to a file of the result folder, or "" when it is not there (a copied folder may lack it)
    or the path leaves the folder."""
    path = inside(folder, rel)
    return link(rel, text) if path is not None and path.is_file() else ""


def _why(r: SubmissionResult, folder: Path) -> str:
    if r.status is Status.OK:
        return ""
    items = [f"<li><b>Status</b>: {esc(r.status.value)}</li>"]
    if r.reason:
        items.append(f"<li><b>Reason</b>: <code>{esc(r.reason, 400)}</code></li>")
    failed = [s for s in r.stages if s.status == r.status.value and s.status != "ok"]
    for s in failed[:5]:
        how = f"{s.status}: {s.detail}" if s.detail else s.status
        items.append(f"<li><b>Failing stage</b>: {esc(s.name, 100)} ({esc(how, 300)})</li>")
        if s.cell is not None:
            items.append(f"<li><b>Notebook cell {s.cell}</b> (first line "
                         f"<code>{esc(s.cell_line or '(empty)')}</code>) raised "
                         f"<code>{esc(s.reason, 400)}</code></li>")
    tail = _log_tail(failed[0], folder) if failed else ""
    log = f"<p>Last lines of the log of {esc(failed[0].name, 100)}:</p><pre>{tail}</pre>" if tail else ""
    return f'<div class="why"><h2>Why</h2><ul>{"".join(items)}</ul>{log}</div>'


def _warnings(r: SubmissionResult) -> str:
    warnings = list(dict.fromkeys(w for s in r.stages for w in s.warnings))[:10]
    if not warnings:
        return ""
    items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
    return f'<div class="warn"><b>Warnings</b><ul>{items}</ul></div>'


def _log_tail(stage: StageRecord, folder: Path) -> str:
    """The escaped last lines of the stage's log, read bounded; "" when there is none inside the folder."""
    if not stage.log_file:
        return ""
    try:
        text = read_log_tail(folder, stage.log_file, _LOG_TAIL_BYTES)
    except (OSError, LogOutside):
        return ""
    return esc("\n".join(line[:400] for line in clean_lines(text)[-_LOG_LINES:]))


def _summary(row: CohortRow) -> str:
    r = row.result
    total = "n/a (ungraded)" if r.total_score is None else f"<b>{r.total_score:.2f}</b> / 100"
    if row.total_range and row.total_range[0] != row.total_range[1]:
        total += f" (range {row.total_range[0]:.1f} to {row.total_range[1]:.1f} with the measured intervals)"
    if r.pending_review and r.total_score is not None:
        total += (f' <span class="prov">provisional: manual review pending '
                  f"({esc(', '.join(r.pending_review), 300)}); the total leaves them out</span>")
    flags = "; ".join(f"{f.similarity:.0%} like "
                      + (link(f"../{f.page}", f.partner) if f.page else esc(f.partner)) for f in row.flags)
    status = f'<span class="{status_class(r.status.value)}">{esc(r.status.value)}</span>'
    fields = [("Candidate", esc(r.candidate, 200)), ("Status", status),
              ("Total score", total),
              ("Groups", "; ".join(f"{esc(g)} {v:.1f}" for g, v in row.groups.items()) or "n/a"),
              ("Copy flags", flags or "none"), ("Submission id", f"<code>{esc(r.submission_id)}</code>"),
              ("Source", f"<code>{esc(r.submission, 300)}</code>"),
              ("Content hash", f"<code>{esc(r.content_hash or 'n/a')}</code>"),
              ("Commit", f"<code>{esc(r.commit or 'n/a')}</code>"),
              ("Assignment", esc(f"{r.assignment}@{r.assignment_version}")),
              ("Duration", esc(f"{r.duration_s:.1f} s (attempts: {r.attempts})")),
              ("Started", esc(r.started_at)),
              ("Harness", esc(" · ".join(x for x in (r.harness_version, r.backend, r.image) if x))),
              ("MLflow run", f"<code>{esc(row.run_id)}</code>" if row.run_id else "not recorded")]
    body = table(["Field", "Value"], [[k, v] for k, v in fields])
    return body + (f"<blockquote>{esc(r.message, 1000)}</blockquote>" if r.message else "")


def _regrade(r: SubmissionResult) -> str:
    """What changed since the result this re-grade replaced (report.md's section, shorter)."""
    previous = r.previous
    if previous is None:
        return ""
    total = total_change(r)
    rows = [[esc(name, 120), before, now, delta] for name, before, now, delta in change_cells(r)[:60]]
    body = table(["Criterion", "Before", "Now", "Change"], rows, numeric=[1, 2, 3]) if rows \
        else "<p>No criterion's score changed.</p>"
    return (f"<h2>Changed since the previous grading</h2><p>Previous result graded "
            f"{esc(previous.started_at)}; total {esc(total)}.</p>{body}")


def _criteria(r: SubmissionResult) -> str:
    if not r.criteria:
        return "<h2>Criteria</h2><p>No criterion was graded.</p>"
    rows, blocked = [], [c for c in r.criteria if _not_graded(c)]
    for c in r.criteria:
        if c in blocked:
            continue
        score = heading_score(c)
        bounds = criterion_bounds(c)
        span = f"{bounds[0]:.3f} to {bounds[1]:.3f}" if bounds and bounds[0] != bounds[1] else ""
        why = f"Ungraded: {c.ungraded}. " if c.ungraded else ""
        label = f"{c.group} / {c.name}" if c.group else c.name
        rows.append([f'<a href="#c-{esc(_anchor(c.name))}">{esc(label, 200)}</a>',
                     esc(f"{c.grader} v{c.grader_version}"), score, span, num(c.weight),
                     esc(why + c.explanation, 1000)])
    if blocked:
        names = ", ".join(c.name for c in blocked[:30])
        rows.append([esc(f"{len(blocked)} not graded: {names}", 1000), "", "0.000", "",
                     num(round(sum(c.weight for c in blocked), 4)),
                     esc(f"Their outputs were not produced ({r.message or 'a stage failed'}); see Why.",
                         1000)])
    head = ["Criterion", "Grader", "Score", "Score range", "Weight", "Explanation"]
    return "<h2>Criteria</h2>" + table(head, rows, numeric=[2, 4])


def _anchor(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name)[:60]


def _criterion(c: CriterionResult, folder: Path, r: SubmissionResult) -> str:
    head = f"{esc(c.name, 120)}: {heading_score(c)} (weight {num(c.weight)})"
    parts = [f'<h3 id="c-{esc(_anchor(c.name))}">{head}</h3>',
             f"<p>{esc(c.explanation, 2000)}</p>", _metrics(c)]
    prefix = f"artifacts/{c.name}/"
    for rel in sorted(p for p in r.artifacts.values() if p.startswith(prefix)):
        parts.append(_artifact(folder, rel))
    if c.details:
        text = json.dumps(c.details, indent=1, default=str)
        cut = f"\n… cut at {_DETAILS_CHARS} characters; see result.json" if len(text) > _DETAILS_CHARS else ""
        shown = esc(text[:_DETAILS_CHARS] + cut)
        parts.append(f"<details><summary>Details</summary><pre>{shown}</pre></details>")
    return "\n".join(p for p in parts if p)


def _ci_names(metrics: dict[str, float], name: str) -> tuple[str, str] | None:
    """The names of `name`'s 95% bounds: report.md's rule, and `<m>_ci_low_<unit>` for `<m>_<unit>`."""
    if found := _ci_of(metrics, name):
        return found
    stem, _, unit = name.rpartition("_")
    low, high = f"{stem}_ci_low_{unit}", f"{stem}_ci_high_{unit}"
    return (low, high) if stem and low in metrics and high in metrics else None


def _metrics(c: CriterionResult) -> str:
    """Key metrics (with a 95% interval, a baseline, a difference) in a table, the rest on one line,
    as report.md shows them."""
    if not c.metrics:
        return ""
    cis = {n: b for n in c.metrics if (b := _ci_names(c.metrics, n))}
    used = {b for bounds in cis.values() for b in bounds}
    names = [n for n in c.metrics if n not in used]
    key = [n for n in names
           if n in cis or n.startswith(("baseline_", "delta")) or f"baseline_{n}" in c.metrics]
    others = [n for n in names if n not in key]
    if not key:
        key, others = others, []
    rows = []
    for name in key[:60]:
        bounds = cis.get(name)
        span = f"{num(c.metrics[bounds[0]], 4)} to {num(c.metrics[bounds[1]], 4)}" if bounds else ""
        rows.append([f"<code>{esc(name, 100)}</code>", num(c.metrics[name], 4), span])
    rest = ", ".join(f"<code>{esc(n, 100)}</code> {num(c.metrics[n], 4)}" for n in others[:100])
    if not any(row[2] for row in rows):  # no interval here: no empty column
        rows = [row[:2] for row in rows]
    head = ["Metric", "Value", "95% CI"][:len(rows[0]) if rows else 2]
    return table(head, rows, numeric=[1]) + (f"<p>Other metrics: {rest}</p>" if rest else "")


def _artifact(folder: Path, rel: str) -> str:
    """A PNG plot embedded as a data: URI; any other file (or a large or non-PNG image) linked."""
    path = inside(folder, rel)
    if rel.endswith(".png") and path is not None:
        try:
            size = path.stat().st_size
            data = path.read_bytes() if size <= MAX_IMAGE_BYTES else b""
        except OSError:
            data = b""
        if data.startswith(_PNG):
            uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            return f'<figure><img alt="{esc(rel)}" src="{uri}"><figcaption>{esc(rel)}</figcaption></figure>'
    return f"<p>File: {_file_link(folder, rel, rel) or esc(rel) + ' (missing)'}</p>"


def _stages(stages: list[StageRecord], folder: Path) -> str:
    if not stages:
        return "<h2>Stages</h2><p>No stage ran.</p>"
    rows = [[esc(s.name, 100), f'<span class="{status_class(s.status)}">{esc(s.status)}</span>',
             "n/a" if s.exit_code is None else str(s.exit_code), f"{s.seconds:.1f}",
             "n/a" if s.peak_memory_bytes is None else f"{s.peak_memory_bytes / (1 << 20):.1f}",
             esc(s.detail, 300), _file_link(folder, s.log_file, "log") if s.log_file else ""] for s in stages]
    machine = "".join(f"<li>{esc(s.name)}: {esc(m.summary(), 1000)}. {esc(m.plan)}.</li>"
                      for s in stages if (m := s.machine) is not None)
    return ("<h2>Stages</h2>" + table(["Stage", "Status", "Exit code", "Seconds", "Peak memory (MiB)",
                                       "Detail", "Log"], rows, numeric=[2, 3, 4])
            + (f"<p><b>Machine during the timed phases</b></p><ul>{machine}</ul>" if machine else ""))


def _files(r: SubmissionResult, folder: Path) -> str:
    names = sorted(p for p in r.artifacts.values() if (path := inside(folder, p)) and path.is_file())
    if not names:
        return ""
    items = "".join(f"<li>{link(n, n)}</li>" for n in names[:60])
    more = f"<li>… {len(names) - 60} more</li>" if len(names) > 60 else ""
    return f"<h2>Files</h2><ul>{items}{more}</ul>"
