"""Why a stage failed, read from its log: the line a reviewer can act on.

The log is the candidate's output, so nothing in it is trusted to be well-formed: only its last
`TAIL_CHARS` are read, every line is cut to `_LINE_CHARS` before any pattern is tried, colour codes
and control characters are removed, and the answer is one line of at most `REASON_CHARS`. When
the log holds several candidates for the cause (a traceback printed by the candidate's own code,
then the real one), the last one wins: the process that failed spoke last.

What is recognised, latest first:
* the notebook runner's own line (sandbox/runners/run.py): `run.py: ENTRY: cell N raised ENAME: EVALUE`,
  with `run.py: ENTRY: cell N begins: LINE` for the cell's first source line;
* pytest's `ImportError while loading conftest '...'` and its `E   ` exception line;
* a Python traceback: the exception line that ends the last `Traceback (most recent call last):`
  block, with the exception it was raised from (`raise ... from`) when the log shows that chain;
* pytest's short summary (`FAILED node - message`, `ERROR node - message`);
* else, for a stage that exited non-zero, its last line (`sys.exit("message")`, argparse errors).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.core.text import CONTROL, one_line
from harness.results import REASON_CHARS

TAIL_CHARS = 64 << 10
WARNINGS_KEPT = 5
_LINE_CHARS = 2000
_MAX_LINES = 5000
_CELL_LINE_CHARS = 160

_CELL_RAISED = re.compile(r"run\.py: [^:]{1,200}: cell (\d{1,6}) raised (.+)")
_CELL_BEGINS = re.compile(r"run\.py: [^:]{1,200}: cell (\d{1,6}) begins: (.*)")
_WARNING = re.compile(r"run\.py: warning: (.+)")
_TRACEBACK = "Traceback (most recent call last):"
_CAUSE = "The above exception was the direct cause of the following exception:"
_CONFTEST = re.compile(r"ImportError while loading conftest '([^']{1,500})'\.?")
_PYTEST_E = re.compile(r"E {3}(\S.*)")
_PYTEST_SUMMARY = re.compile(r"(FAILED|ERROR) (\S+?)(?: - (.*))?")
_EXCEPTION = re.compile(r"[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Failure|Fault)?(?::.*)?")


@dataclass(frozen=True)
class Failure:
    """What a stage's log says about how it ended."""

    reason: str = ""  # "KeyError: 'x'"; "" when the log names no cause
    cell: int | None = None  # the failing notebook cell, counted from 1 in the candidate's notebook
    cell_line: str = ""  # its first source line
    warnings: tuple[str, ...] = ()  # the runner's warnings (e.g. no cell tagged `parameters`)


def clean_lines(log: str) -> list[str]:
    """The last lines of `log`, at most TAIL_CHARS of them once each is cut to _LINE_CHARS (so one
    huge line neither hides the lines before it nor costs more than its cut), without colour codes
    or control characters; a carriage return ends a line, as it does on a terminal."""
    lines: list[str] = []
    used, end = 0, len(log)
    while end > 0 and used < TAIL_CHARS and len(lines) < _MAX_LINES:
        start = log.rfind("\n", 0, end) + 1
        piece = log[start:min(end, start + _LINE_CHARS)]
        lines += reversed(piece.removesuffix("\r").split("\r"))
        used, end = used + len(piece) + 1, start - 1
    return [CONTROL.sub("", line).rstrip() for line in reversed(lines)]


def read_failure(log: str, *, failed: bool, last_line: bool = True) -> Failure:
    """The cause of the failure a stage's `log` shows (`failed`: it did not finish cleanly), and the
    runner's warnings either way. `last_line`: with no recognised cause, the log's last line is the
    reason (right for a process that exited with an error, noise for one that was killed). Never
    raises for any text."""
    lines = clean_lines(log)
    warnings = _warnings(lines)
    if not failed:
        return Failure(warnings=warnings)
    found = _cell_error(lines) or _latest(lines)
    if found is None:
        if not last_line:
            return Failure(warnings=warnings)
        last = next((line for line in reversed(lines) if line.strip()), "")
        return Failure(reason=one_line(last, REASON_CHARS), warnings=warnings)
    return Failure(reason=one_line(found.reason, REASON_CHARS), cell=found.cell,
                   cell_line=one_line(found.cell_line, _CELL_LINE_CHARS), warnings=warnings)


def cause_index(lines: list[str]) -> int | None:
    """The index in `lines` (from `clean_lines`) of the line that states the cause, if one does."""
    found = _cell_error(lines) or _latest(lines)
    return None if found is None else found.index


@dataclass(frozen=True)
class _Found:
    reason: str
    index: int  # of the line that states it
    cell: int | None = None
    cell_line: str = ""


def _warnings(lines: list[str]) -> tuple[str, ...]:
    found = [one_line(m.group(1), 2 * REASON_CHARS) for line in lines if (m := _WARNING.fullmatch(line))]
    return tuple(dict.fromkeys(found))[-WARNINGS_KEPT:]


def _cell_error(lines: list[str]) -> _Found | None:
    """The runner's report of the cell that raised, unless something failed after it spoke."""
    for index in range(len(lines) - 1, -1, -1):
        match = _CELL_RAISED.fullmatch(lines[index])
        if match:
            if _latest(lines[index + 1:]) is not None:
                return None
            number = int(match.group(1))
            begins = (m.group(2) for line in lines if (m := _CELL_BEGINS.fullmatch(line))
                      and int(m.group(1)) == number)
            return _Found(match.group(2), index, number, next(begins, ""))
    return None


def _latest(lines: list[str]) -> _Found | None:
    """The cause given last: a traceback, a conftest import error or pytest's summary."""
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if line == _TRACEBACK:
            at = _exception_after(lines, index)
            if at is not None:
                reason = _exception_text(lines, at)
                cause = _cause_before(lines, index)
                return _Found(f"{reason} (raised from {cause})" if cause else reason, at)
        elif match := _CONFTEST.fullmatch(line):
            errors = ((i, m.group(1)) for i in range(index + 1, min(len(lines), index + 200))
                      if (m := _PYTEST_E.fullmatch(lines[i])))
            at, error = next(errors, (index, ""))
            name = match.group(1).rsplit("/", 1)[-1]
            return _Found(f"{name} failed to import" + (f": {error}" if error else ""), at)
        elif (match := _PYTEST_SUMMARY.fullmatch(line)) and ".py" in match.group(2):
            if match.group(3):
                return _Found(line, index)
            # pytest 9 names a collection error alone: its exception is the last `E   ` line above
            exceptions = (m.group(1) for i in range(index - 1, max(-1, index - 500), -1)
                          if (m := _PYTEST_E.fullmatch(lines[i])))
            error = next(exceptions, "")
            return _Found(f"{line} - {error}" if error else line, index)
    return None


def _exception_after(lines: list[str], start: int) -> int | None:
    """The index of the exception line ending the traceback that starts at `start`: the first line
    after its indented frames, if it looks like one."""
    for index in range(start + 1, min(len(lines), start + 2000)):
        line = lines[index]
        if not line or line[0] in " \t":
            continue
        return index if line != _TRACEBACK and _EXCEPTION.fullmatch(line) else None
    return None


def _exception_text(lines: list[str], index: int) -> str:
    """The exception line; a bare type (`ValueError:`) takes the message's next line."""
    line = lines[index]
    following = lines[index + 1] if index + 1 < len(lines) else ""
    if line.endswith(":") and following and following[0] not in " \t":
        return f"{line} {following}"
    return line


def _cause_before(lines: list[str], start: int) -> str:
    """For `raise ... from`: the exception of the traceback just above the chain's marker line."""
    marker = next((i for i in range(start - 1, max(-1, start - 4), -1) if lines[i] == _CAUSE), None)
    if marker is None:
        return ""
    for index in range(marker - 1, max(-1, marker - 2000), -1):
        if lines[index] == _TRACEBACK:
            at = _exception_after(lines, index)
            return "" if at is None or at >= marker else _exception_text(lines, at)
    return ""


class LogOutside(ValueError):
    """A stage's log path that points outside its result folder (a hand-edited result.json)."""


def read_log_tail(folder: Path, log_file: str, limit: int) -> str:
    """The last `limit` bytes of the log `log_file` in `folder` as text, without a partial first
    line. Raises LogOutside when the path leaves the folder, OSError when it cannot be read."""
    root = folder.resolve()
    path = (root / log_file).resolve()
    if not path.is_relative_to(root):
        raise LogOutside(log_file)
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - limit))
        text = fh.read(limit).decode("utf-8", errors="replace")
    return text.partition("\n")[2] if size > limit else text
