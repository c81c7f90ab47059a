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

from graders import CriterionResult
from harness._text import CONTROL, one_line
from harness.results import StageRecord, SubmissionResult

LOG_TAIL_LINES = 40
_LOG_TAIL_BYTES = 64 << 10  # bounded read: enough for 40 long lines
_LOG_LINE_CHARS = 400
_TEXT_CHARS = 600  # free text in a table cell or bullet
_CODE_CHARS = 200  # an identifier or an example line
_LIST_ITEMS = 10  # items shown of any list in the details
_DETAIL_LINES = 60  # lines of details shown per criterion
_DEPTH = 4
_OK = "ok"

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~$&#])")
_BACKTICKS = re.compile(r"`+")


def render_report(result: SubmissionResult, folder: Path | None = None) -> str:
    """The Markdown report of `result`. With `folder` (the result folder), failed stages show their log tail.

    Never raises for odd content: unreadable logs are reported as such.
    """
    parts = [_header(result), _criteria_table(result.criteria)]
    parts += [_criterion_section(c) for c in result.criteria]
    parts += [_stages_table(result.stages), _failed_logs(result.stages, folder), _artifacts(result.artifacts)]
    return "\n\n".join(p for p in parts if p).rstrip() + "\n"


# --- escaping ---------------------------------------------------------------------------------------

def _text(value: object, limit: int = _TEXT_CHARS) -> str:
    """Free text, safe inside a paragraph, a bullet or a table cell."""
    return _MD_SPECIAL.sub(r"\\\1", one_line(value, limit))


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
    lines = [f"# Grading report: {_text(r.candidate)}", "", _row("Field", "Value"), _row("---", "---")]
    lines += [_row(name, value) for name, value in rows]
    if r.message:
        lines += ["", f"> {_text(r.message, 1000)}"]
    return "\n".join(lines)


def _criteria_table(criteria: list[CriterionResult]) -> str:
    if not criteria:
        return "## Criteria\n\nNo criterion was graded."
    lines = ["## Criteria", "", _row("Criterion", "Grader", "Score", "Weight", "Explanation"),
             _row("---", "---", "---:", "---:", "---")]
    for c in criteria:
        name = f"{c.group} / {c.name}" if c.group else c.name
        lines.append(_row(_text(name), _text(f"{c.grader} v{c.grader_version}"), f"{c.score:.3f}",
                          _num(c.weight), _text(c.explanation, 1000)))
    return "\n".join(lines)


def _criterion_section(c: CriterionResult) -> str:
    lines = [f"### {_text(c.name)}: {c.score:.3f} (weight {_num(c.weight)})"]
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
    return "\n".join(lines)


def _failed_logs(stages: list[StageRecord], folder: Path | None) -> str:
    sections = []
    for s in stages:
        if s.status == _OK:
            continue
        head = f"### Log of stage {_text(s.name)} ({_text(s.status)}), last {LOG_TAIL_LINES} lines"
        note = "\n\nThe log was cut at the output limit." if s.log_truncated else ""
        sections.append(f"{head}{note}\n\n{_log_tail(s, folder)}")
    return "\n\n".join(["## Failed stages", *sections]) if sections else ""


def _log_tail(stage: StageRecord, folder: Path | None) -> str:
    if folder is None or not stage.log_file:
        return "No log available."
    root = folder.resolve()
    path = (root / stage.log_file).resolve()
    if not path.is_relative_to(root):
        return "The log path points outside the result folder; not shown."
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - _LOG_TAIL_BYTES))
            data = fh.read(_LOG_TAIL_BYTES)
    except OSError as exc:
        return f"The log could not be read: {_text(exc.strerror or exc)}"
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > _LOG_TAIL_BYTES and lines:
        lines = lines[1:]  # the first line read is probably partial
    if not lines:
        return "The log is empty."
    tail = [CONTROL.sub("", line)[:_LOG_LINE_CHARS] for line in lines[-LOG_TAIL_LINES:]]
    return _fenced(tail)


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
