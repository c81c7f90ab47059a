"""A service stage that ends before its probe is done: how the probe is told, and what the end says.

A service (a RunRequest with a probe) is meant to run until its probe has finished with it. One
that ends by itself before then has failed, whatever its exit code: a server that exits at start
(a missing module, a bad setting) or dies midway. Both backends then tell the probe at once with
SERVICE_EXITED_SIGNAL (SIGHUP: the peer hung up), so it does not poll a server that is gone until
its health timeout; the probe (sandbox/runners/probe.py) stops waiting, writes what it has and
exits 0. A probe the signal reached before it could handle it (it was still starting) exits with
TOLD_EXIT_CODE and has no result: the service's own verdict stands.
"""

from __future__ import annotations

import re
import signal
from dataclasses import replace

from sandbox._base import RunResult, StageStatus

SERVICE_EXITED_SIGNAL = signal.SIGHUP  # = sandbox/runners/probe.py's SERVICE_EXITED_SIGNAL
TOLD_EXIT_CODE = 128 + SERVICE_EXITED_SIGNAL  # a probe killed by it, as its sandbox's pid 1 reports
TOLD_DETAIL = "ended early: told that its service had exited"

_TAIL_BYTES = 8192
_LINE_CHARS = 300
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|.)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# The last line of a Python traceback ("ModuleNotFoundError: No module named 'x'", "KeyError: 'x'",
# "mypkg.ConfigError: ..."), unindented, as the interpreter prints it.
_HARNESS_LINE = "serve.py: starting "  # sandbox/runners/serve.py's own first line: not the server's words
_EXCEPTION = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Warning)(?::\s.*)?$")


def probe_result_once_told(result: RunResult, *, told: bool) -> RunResult | None:
    """A probe's result given whether it was told its service exited: unchanged if not; None if
    the signal came before the probe could handle it; else marked TOLD_DETAIL when it was OK."""
    if not told:
        return result
    if result.exit_code == TOLD_EXIT_CODE:  # the signal came before the probe could handle it
        return None
    return replace(result, detail=TOLD_DETAIL) if result.status is StageStatus.OK else result


def service_verdict(status: StageStatus, detail: str, *, ended_by_itself: bool, exit_code: int | None,
                    log: str) -> tuple[StageStatus, str]:
    """A service's status and detail: one that ended by itself before its probe was done is an
    ERROR (even with exit code 0), and its detail carries its last words; limits keep their verdict."""
    if not ended_by_itself or status not in (StageStatus.OK, StageStatus.ERROR):
        return status, detail
    said = last_words(log)
    text = f"exited by itself with code {exit_code} before its probe was done"
    return StageStatus.ERROR, f"{text}; its last output: {said}" if said else f"{text}; it printed nothing"


def last_words(log: str) -> str:
    """The line a reviewer needs from the end of a log: the last exception line of a traceback, and
    the final line when it is another one (a server's own last message), each cut to one short line."""
    lines = [_clean(line) for line in log[-_TAIL_BYTES:].splitlines()]
    lines = [line for line in lines if line and not line.startswith(_HARNESS_LINE)]
    if not lines:
        return ""
    final = lines[-1].strip()
    exception = next((line for line in reversed(lines) if _EXCEPTION.match(line)), "")
    if not exception or exception == final:
        return final
    return f"{exception} (last line: {final})"


def _clean(line: str) -> str:
    text = _CONTROL.sub("", _ANSI.sub("", line).replace("\t", " ")).rstrip()
    return text if len(text) <= _LINE_CHARS else text[:_LINE_CHARS - 3] + "..."
