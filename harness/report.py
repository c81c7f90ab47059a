"""Render a SubmissionResult as the Markdown report a reviewer reads (report.md, MLflow run notes).

Everything that may come from a candidate (names, ids, log lines, diagnostics) is escaped or
fenced so it cannot break the document: free text gets backslash escapes and is kept on one
line, identifiers go in code spans with a long enough backtick fence, and logs go in a fenced
block whose fence is longer than any backtick run inside. Rendering is pure and deterministic,
apart from reading the tails of failed stages' logs from the result folder when one is given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness._escape import markdown_text
from harness._reasons import LogOutside, cause_index, clean_lines, read_log_tail
from harness.core import CriterionResult
from harness.core.text import one_line
from harness.results import StageRecord, Status, SubmissionResult
from harness.rubric import PENDING

LOG_TAIL_LINES = 40
_LOG_TAIL_BYTES = 64 << 10  # bounded read: enough for 40 long lines
_LOG_LINE_CHARS = 400
_TEXT_CHARS = 600  # free text in a table cell or bullet
_CODE_CHARS = 200  # an identifier or an example line
_LIST_ITEMS = 10  # items shown of any list in the details
_BLOCKED_NAMED = 30  # criteria named in the row of those not graded
_DETAIL_LINES = 60  # lines of details shown per criterion
_DEPTH = 4
_OK = "ok"
_CAUSE_CONTEXT = 2  # lines kept on each side of a cause that falls outside the log tail
# What an output's problem says when the stage that writes it failed or never ran (harness._stages,
# harness.pipeline): criteria reading only such outputs were not graded, and are listed together.
_NOT_PRODUCED = re.compile(r"not graded: stage \S+ failed|not produced: ")

_IMAGES = (".png", ".svg")
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$")  # nothing that could end a markdown link
_BACKTICKS = re.compile(r"`+")


def render_report(result: SubmissionResult, folder: Path | None = None) -> str:
    """The Markdown report of `result`. With `folder` (the result folder), failed stages show their log tail.

    Never raises for odd content: unreadable logs are reported as such.
    """
    blocked = [c for c in result.criteria if _not_graded(c)]
    graded = [c for c in result.criteria if c not in blocked]
    parts = [f"# Grading report: {_text(result.candidate)}", _why(result), _header(result),
             _criteria_table(graded, blocked, result.message)]
    parts += [_criterion_section(c) for c in graded]
    from harness.review_report import regrade_section  # it escapes with this module's helpers

    parts.insert(3, regrade_section(result))
    parts += [_stages_table(result.stages), _failed_logs(result.stages, folder),
              _plots(result.artifacts), _artifacts(result.artifacts)]
    return "\n\n".join(p for p in parts if p).rstrip() + "\n"


# --- escaping ---------------------------------------------------------------------------------------

def _text(value: object, limit: int = _TEXT_CHARS) -> str:
    """Free text, safe inside a paragraph, a bullet or a table cell."""
    return markdown_text(value, limit)


def _code(value: object, *, cell: bool = False, limit: int = _CODE_CHARS) -> str:
    """An inline code span that no backtick in `value` can close early; `cell` for table cells."""
    text = one_line(value, limit)
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    span = f"{fence} {text} {fence}" if longest else f"`{text}`"
    # GFM splits table rows on `|` before parsing code spans; `\|` is its escape, even inside them.
    return span.replace("|", "\\|") if cell else span


def _fenced(lines: list[str]) -> str:
    body = "\n".join(lines)
    longest = max((len(m) for m in _BACKTICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{body}\n{fence}"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


# --- numbers ----------------------------------------------------------------------------------------

def _num(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _text(value)
    if not math.isfinite(value):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):+d}" if signed else str(int(value))
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / (1 << 20):.1f}"


# --- header and criteria ----------------------------------------------------------------------------

def _header(r: SubmissionResult) -> str:
    score = "n/a (ungraded)" if r.total_score is None else f"**{r.total_score:.2f}** / 100"
    if r.pending_review and r.total_score is not None:
        score += f" (provisional: manual review pending for {_text(', '.join(r.pending_review))})"
    rows = [
        ("Candidate", _text(r.candidate)),
        ("Submission id", _code(r.submission_id, cell=True)),
        ("Source", _code(r.submission, cell=True)),
        ("Content hash", _code(r.content_hash, cell=True) if r.content_hash else "n/a"),
        ("Commit", _code(r.commit, cell=True) if r.commit else "n/a"),
        ("Assignment", _code(f"{r.assignment}@{r.assignment_version}", cell=True)),
        ("Status", f"**{_text(r.status.value)}**"),
        ("Total score", score),
        ("Duration", f"{_duration(r.duration_s)} (attempts: {r.attempts})"),
        ("Started", _text(r.started_at)),
        ("Harness", _text(" · ".join(x for x in (r.harness_version, r.backend, r.image) if x))),
    ]
    lines = [_row("Field", "Value"), _row("---", "---")]
    lines += [_row(name, value) for name, value in rows]
    if r.message:
        lines += ["", f"> {_text(r.message, 1000)}"]
    return "\n".join(lines)


def _criteria_table(criteria: list[CriterionResult], blocked: list[CriterionResult], message: str) -> str:
    """One row per graded criterion, and one for all those not graded because a stage failed."""
    if not criteria and not blocked:
        return "## Criteria\n\nNo criterion was graded."
    lines = ["## Criteria", "", _row("Criterion", "Grader", "Score", "Weight", "Explanation"),
             _row("---", "---", "---:", "---:", "---")]
    for c in criteria:
        score, explanation = f"{c.score:.3f}", c.explanation
        if c.ungraded == PENDING:
            score, explanation = "pending", f"{explanation} (not counted in the total until reviewed)"
        elif c.ungraded:
            score = "ungraded"
            explanation = f"Ungraded: {c.ungraded}. As measured ({c.score:.3f}): {explanation}"
        lines.append(_row(_text(_label(c)), _text(f"{c.grader} v{c.grader_version}"), score,
                          _num(c.weight), _text(explanation, 1000)))
    if blocked:
        names = ", ".join(_label(c) for c in blocked[:_BLOCKED_NAMED])
        names += f" and {len(blocked) - _BLOCKED_NAMED} more" if len(blocked) > _BLOCKED_NAMED else ""
        graders = ", ".join(dict.fromkeys(c.grader for c in blocked))
        why = f"Not graded: their outputs were not produced ({message or 'a stage failed'}); see Why."
        count = f"{len(blocked)} {'criterion' if len(blocked) == 1 else 'criteria'}"
        lines.append(_row(_text(f"{count}: {names}", 2000), _text(graders), "0.000",
                          _num(round(sum(c.weight for c in blocked), 4)), _text(why, 1000)))
    return "\n".join(lines)


def _label(c: CriterionResult) -> str:
    return f"{c.group} / {c.name}" if c.group else c.name


def _not_graded(c: CriterionResult) -> bool:
    """Scored 0 only because what it reads was not produced: its explanation says so, and so does
    every run it grades when it grades runs (one run answered wrongly keeps it in its own row)."""
    if c.score > 0 or not _NOT_PRODUCED.search(c.explanation):
        return False
    runs = c.details.get("runs")
    if isinstance(runs, dict) and runs:
        return all(isinstance(v, dict) and _NOT_PRODUCED.search(str(v.get("problem", "")))
                   for v in runs.values())
    return True


# --- why: the cause first ---------------------------------------------------------------------------

def _why(r: SubmissionResult) -> str:
    """The cause of a result that is not ok (status, reason, failing stage and notebook cell), and
    the runners' warnings; "" for an ok result without warnings."""
    warnings = list(dict.fromkeys(w for s in r.stages for w in s.warnings))
    if r.status is Status.OK and not warnings:
        return ""
    lines = ["## Why" if r.status is not Status.OK else "## Warnings", ""]
    if r.status is not Status.OK:
        lines.append(f"- **Status**: {_text(r.status.value)}")
        if r.reason:
            lines.append(f"- **Reason**: {_code(r.reason, limit=400)}")
        lines += _failing_stages(r)
    lines += [f"- **Warning**: {_text(w)}" for w in warnings[:_LIST_ITEMS]]
    return "\n".join(lines)


def _failing_stages(r: SubmissionResult) -> list[str]:
    """The stages that failed the way the result did, runs with one cause told together."""
    failed = [s for s in r.stages if s.status == r.status.value and s.status != _OK]
    groups: dict[tuple[str, str], list[StageRecord]] = {}
    for s in failed:
        groups.setdefault((s.name.split("/")[0], s.cause), []).append(s)
    lines = []
    for (stage, _), members in list(groups.items())[:_LIST_ITEMS]:
        first = members[0]
        runs = [m.name.partition("/")[2] for m in members if "/" in m.name]
        where = f"{_text(stage)}" + (f" on runs {_text(', '.join(runs))}" if runs else "")
        how = f"{_text(first.status)}: {_text(first.detail)}" if first.detail else _text(first.status)
        lines.append(f"- **Failing stage**: {where} ({how}); log: {_code(first.log_file or 'n/a')}")
        if first.cell is not None:
            line, error = _code(first.cell_line or "(empty)"), _code(first.reason, limit=400)
            lines.append(f"- **Notebook cell {first.cell}** (first line {line}) raised {error}")
    return lines


def heading_score(c: CriterionResult) -> str:
    """The score in a criterion's heading: a pending rubric item has none yet (its 0 is a placeholder)."""
    if c.ungraded:
        return "pending" if c.ungraded == PENDING else f"ungraded (as measured {c.score:.3f})"
    return f"{c.score:.3f}"


def _criterion_section(c: CriterionResult) -> str:
    lines = [f"### {_text(c.name)}: {heading_score(c)} (weight {_num(c.weight)})"]
    lines += _metric_tables(c.metrics)
    details = dict(c.details)
    problems = list(_pop_problems(details))
    if problems:
        lines += ["", "**Problems found**", ""]
        lines += [line for name, value in problems for line in _problem_lines(name, value)]
    body = list(_detail_lines(details, 0))
    if body:
        shown = body[:_DETAIL_LINES]
        if len(body) > len(shown):
            shown.append(f"- … {len(body) - len(shown)} more lines in result.json")
        lines += ["", "**Details**", "", *shown]
    return "\n".join(lines)


# --- metrics ----------------------------------------------------------------------------------------

def _ci_of(metrics: dict[str, float], name: str) -> tuple[str, str] | None:
    """The names of `name`'s 95% bounds: `<m>_ci_low/_ci_high`, or `delta_ci_*` for `delta_vs_<x>`."""
    if name.endswith(("_ci_low", "_ci_high")):
        return None
    for stem in dict.fromkeys((name, name.split("_vs_")[0])):
        low, high = f"{stem}_ci_low", f"{stem}_ci_high"
        if low in metrics and high in metrics:
            return low, high
    return None


def _metric_tables(metrics: dict[str, float]) -> list[str]:
    """Key metrics (with a CI, baselines, deltas) as a table; the rest on one line."""
    if not metrics:
        return []
    cis = {n: bounds for n in metrics if (bounds := _ci_of(metrics, n))}
    used = {b for bounds in cis.values() for b in bounds}
    key: list[str] = []
    for name in metrics:  # a measure with a CI or a baseline, followed by its baseline
        baseline = f"baseline_{name}"
        if name not in used and not name.startswith("baseline_") and (name in cis or baseline in metrics):
            key += [name, baseline] if baseline in metrics else [name]
    key += [n for n in metrics if n.startswith(("baseline_", "delta")) and n not in used and n not in key]
    others = [n for n in metrics if n not in used and n not in key]
    if not key:
        key, others = others, []
    lines = ["", "**Key metrics**", "", _row("Metric", "Value", "95% CI"), _row("---", "---:", "---")]
    for name in key:
        signed = name.startswith("delta")
        interval = ""
        if name in cis:
            low, high = (metrics[b] for b in cis[name])
            interval = f"{_num(low, signed=signed)} to {_num(high, signed=signed)}"
        lines.append(_row(_code(name, cell=True), _num(metrics[name], signed=signed), interval))
    if others:
        lines += ["", "Other metrics: " + ", ".join(f"{_code(n)} {_num(metrics[n])}" for n in others)]
    return lines


# --- details ----------------------------------------------------------------------------------------

def _pop_problems(details: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Remove every `problems` entry from `details` (at any depth) and yield its items."""
    for name, value in list(details.items()):
        if name == "problems":
            details.pop(name)
            items = value.items() if isinstance(value, dict) else [("problems", value)]
            yield from items
        elif isinstance(value, dict):
            nested = dict(value)
            yield from _pop_problems(nested)
            details[name] = nested


def _problem_lines(name: str, value: Any) -> list[str]:
    if isinstance(value, dict) and ("count" in value or "examples" in value):
        count, examples = value.get("count"), value.get("examples") or []
    elif isinstance(value, list):
        count, examples = len(value), value
    else:
        return [f"- {_text(name)}: {_scalar(value)}"]
    line = f"- **{_text(name)}**: {_scalar(count)}"
    if isinstance(examples, list) and examples:
        shown = ", ".join(_code(e) for e in examples[:_LIST_ITEMS])
        line += f"; e.g. {shown}" + (" …" if len(examples) > _LIST_ITEMS else "")
    return [line]


def _scalar(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return _num(value)
    return _text(value)


def _inline(value: Any) -> str | None:
    """A one-line rendering for a scalar, a short flat dict or a short list of scalars, else None."""
    if not isinstance(value, dict | list):
        return _scalar(value)
    items = list(value.values()) if isinstance(value, dict) else value
    if any(isinstance(v, dict | list) for v in items) or len(items) > 8:
        return None
    if isinstance(value, dict):
        return "; ".join(f"{_text(k)} {_scalar(v)}" for k, v in value.items()) or "none"
    return ", ".join(_scalar(v) for v in value) or "none"


def _detail_lines(value: dict[str, Any], depth: int) -> Iterator[str]:
    indent = "  " * depth
    for name, item in value.items():
        flat = _inline(item)
        if flat is not None:
            yield f"{indent}- {_text(name)}: {flat}"
        elif depth + 1 >= _DEPTH:
            yield f"{indent}- {_text(name)}: …"
        elif isinstance(item, dict):
            yield f"{indent}- {_text(name)}:"
            yield from _detail_lines(item, depth + 1)
        else:
            yield f"{indent}- {_text(name)}:"
            yield from _list_lines(item, depth + 1)


def _list_lines(items: list[Any], depth: int) -> Iterator[str]:
    indent = "  " * depth
    for item in items[:_LIST_ITEMS]:
        flat = _inline(item)
        if flat is None:
            flat = _text(item, _CODE_CHARS)
        yield f"{indent}- {flat}"
    if len(items) > _LIST_ITEMS:
        yield f"{indent}- … {len(items) - _LIST_ITEMS} more"


# --- stages and logs --------------------------------------------------------------------------------

def _stages_table(stages: list[StageRecord]) -> str:
    if not stages:
        return "## Stages\n\nNo stage ran."
    lines = ["## Stages", "", _row("Stage", "Status", "Exit code", "Seconds", "Peak memory (MiB)", "Detail"),
             _row("---", "---", "---:", "---:", "---:", "---")]
    for s in stages:
        exit_code = "n/a" if s.exit_code is None else str(s.exit_code)
        lines.append(_row(_text(s.name), _text(s.status), exit_code, f"{s.seconds:.1f}",
                          _mib(s.peak_memory_bytes), _text(s.detail)))
    if any(s.machine is not None for s in stages):
        lines += ["", "**Machine during the timed phases**", ""]
        lines += [f"- {_text(s.name)}: {_text(m.summary(), 1000)}. {_text(m.plan)}."
                  for s in stages if (m := s.machine) is not None]
    return "\n".join(lines)


def _failed_logs(stages: list[StageRecord], folder: Path | None) -> str:
    """The log tail of each failed stage; runs of one stage that failed the same way share one."""
    shown: dict[tuple[str, str, str], list[StageRecord]] = {}
    for s in stages:
        if s.status != _OK:
            shown.setdefault((s.name.split("/")[0], s.status, s.cause), []).append(s)
    sections = []
    for members in shown.values():
        s = members[0]
        head = f"### Log of stage {_text(s.name)} ({_text(s.status)}), last {LOG_TAIL_LINES} lines"
        note = "\n\nThe log was cut at the output limit." if s.log_truncated else ""
        if len(members) > 1:
            logs = ", ".join(_code(m.log_file or "n/a") for m in members[1:_LIST_ITEMS])
            others = _text(", ".join(m.name for m in members[1:]))
            note += f"\n\n{others} failed the same way (their logs: {logs})."
        sections.append(f"{head}{note}\n\n{_log_tail(s, folder)}")
    return "\n\n".join(["## Failed stages", *sections]) if sections else ""


def _log_tail(stage: StageRecord, folder: Path | None) -> str:
    """The last LOG_TAIL_LINES lines of the stage's log, read bounded; the line stating the cause
    (an exception that a long message pushed out of the tail) is kept above them."""
    if folder is None or not stage.log_file:
        return "No log available."
    try:
        text = read_log_tail(folder, stage.log_file, _LOG_TAIL_BYTES)
    except LogOutside:
        return "The log path points outside the result folder; not shown."
    except OSError as exc:
        return f"The log could not be read: {_text(exc.strerror or exc)}"
    lines = clean_lines(text)
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return "The log is empty."
    start = max(0, len(lines) - LOG_TAIL_LINES)
    shown = lines[start:]
    cause = cause_index(lines)
    if cause is not None and cause < start:
        kept = lines[max(0, cause - _CAUSE_CONTEXT): min(start, cause + _CAUSE_CONTEXT + 1)]
        skipped = start - min(start, cause + _CAUSE_CONTEXT + 1)
        shown = [*kept, f"[… {skipped} lines …]", *shown] if skipped else [*kept, *shown]
    return _fenced([line[:_LOG_LINE_CHARS] for line in shown])


def _plots(artifacts: dict[str, str]) -> str:
    """The graders' images, shown in place (relative links: they resolve next to report.md, in the
    results folder and in a copy of it). Only plain harness-made paths are linked."""
    images = sorted(path for path in artifacts.values()
                    if path.startswith("artifacts/") and path.endswith(_IMAGES) and _PLAIN_PATH.match(path)
                    and ".." not in path.split("/"))
    if not images:
        return ""
    return "\n".join(["## Plots", "", *(f"![{_text(Path(path).stem)}]({path})" for path in images[:10])])


def _artifacts(artifacts: dict[str, str]) -> str:
    if not artifacts:
        return ""
    lines = ["## Files", ""]
    names = sorted(artifacts)
    lines += [f"- {_code(artifacts[n])}" if artifacts[n] == n else f"- {_text(n)}: {_code(artifacts[n])}"
              for n in names[:30]]
    if len(names) > 30:
        lines.append(f"- … {len(names) - 30} more")
    return "\n".join(lines)
