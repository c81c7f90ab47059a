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
import threading
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Generic, TypeVar

from sandbox._base import RunResult, StageStatus

H = TypeVar("H")  # a backend's handle on the probe's sandbox (a container, a process group)

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


class ProbeThread(threading.Thread, ABC, Generic[H]):
    """A probe run beside its service, in the service's network namespace, on its own thread; the
    backend's subclass runs it (`run`) and stops the service when it ends. What is the same for
    every backend lives here: telling the probe its service has exited (now, or as soon as the
    probe's sandbox exists: `service_ended` may come first) and its outcome once told."""

    def __init__(self, name: str) -> None:
        super().__init__(daemon=True, name=f"probe-{name}")
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self.handle: H | None = None  # the probe's sandbox, once it exists
        self.told = False  # its service has ended
        self._lock = threading.Lock()

    @abstractmethod
    def tell(self, handle: H) -> None:
        """Send SERVICE_EXITED_SIGNAL to the probe in `handle`; never raises."""

    def service_ended(self) -> None:
        """The service has exited: tell the probe, or tell it once it exists."""
        with self._lock:
            self.told, handle = True, self.handle
        if handle is not None:
            self.tell(handle)

    def probe_exists(self, handle: H) -> None:
        """The backend's callback once the probe's sandbox exists (before or after it starts)."""
        with self._lock:
            self.handle, told = handle, self.told
        if told:  # told before it existed: it may not even start (no namespace to join)
            self.tell(handle)

    def finished(self, result: RunResult) -> None:
        with self._lock:
            told = self.told
        self.result = probe_result_once_told(result, told=told)

    def outcome(self) -> RunResult | None:
        """The probe's result; None when the service was gone before the probe could start (or
        handle being told so). Re-raises what failed on the probe's thread."""
        self.join()
        if self.error is not None:
            raise self.error
        return self.result


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
