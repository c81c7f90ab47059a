"""The external analysers of the code-quality grader: ruff, and the limited `ast`/radon worker.

Both run as subprocesses on harness-written copies of the candidate's sources, in their own
session, with a wall timeout and capped output, and both are killed with their process group
when they end or time out. Ruff runs with `--isolated` (no configuration file is read), the
spec's rule selection, `--ignore-noqa` (a `# noqa` or `# ruff: noqa` comment cannot hide a
finding) and `--no-cache`. Its `json-lines` output is read line by line, so a capped output
still parses. The worker (graders.quality._worker) restarts after a unit kills it: that unit
is reported as not analysable and the rest is still analysed.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.core import HarnessError
from harness.core.text import one_line

_ROOT = Path(__file__).resolve().parents[1]
_WORKER = Path(__file__).resolve().with_name("_worker.py")
WORKER_MEMORY_BYTES = 1 << 30
MAX_OUTPUT_BYTES = 32 << 20
MAX_RESTARTS = 5
_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class Hit:
    """One ruff finding, located in the harness's copy of the sources."""

    rel: str
    cell: int | None  # 1-based cell of the notebook ruff was given, None for a .py file
    row: int
    end_row: int  # the last line the finding covers (an import block, a multi-line call)
    code: str
    message: str


@dataclass
class RuffRun:
    hits: list[Hit] = field(default_factory=list)
    problem: str = ""  # why ruff did not finish (the candidate's input, e.g. a timeout); "" if it did
    truncated: bool = False
    failed: dict[str, str] = field(default_factory=dict)  # file -> why ruff could not lint it alone


class Block(BaseModel):
    """A function, a method, or top-level script code, as measured by the worker."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=2000)
    kind: Literal["function", "method", "script"]
    cell: int = 0
    line: int
    end: int
    cc: int = Field(ge=0)
    statements: list[int]  # lines of its own statements
    public: bool
    doc: bool
    slots: int = Field(ge=0)
    annotated: int = Field(ge=0)


class UnitResult(BaseModel):
    """The worker's analysis of one Python text; `ok` false when it could not be parsed."""

    model_config = ConfigDict(extra="forbid")

    id: int
    ok: bool
    line: int = 1
    error: str = ""
    logical: list[int] = Field(default_factory=list)  # first line of each logical line
    lloc: int = 0
    sloc: int = 0
    mi: float = Field(100.0, allow_inf_nan=False)
    blocks: list[Block] = Field(default_factory=list)
    imports: list[str] = Field(default_factory=list)


@functools.cache
def ruff_binary() -> str:
    """Path of the ruff executable of the installed `ruff` package. Raises HarnessError if missing."""
    try:
        from ruff.__main__ import find_ruff_bin

        return str(find_ruff_bin())
    except (ImportError, FileNotFoundError) as exc:
        raise HarnessError(f"the code_quality grader needs ruff (pip install ruff): {exc}") from None


@functools.cache
def tool_versions() -> dict[str, str]:
    """Versions of ruff and radon, recorded with every result."""
    from importlib.metadata import version

    return {"ruff": version("ruff"), "radon": version("radon")}


# Caps output files, address space and core dumps, then becomes the command (not preexec_fn:
# batches grade in threads, and forking a threaded process into arbitrary Python is unsafe).
_EXEC_LIMITED = ("import os, resource, sys; n, m = int(sys.argv[1]), int(sys.argv[2]); "
                 "resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); "
                 "resource.setrlimit(resource.RLIMIT_AS, (m, m)); "
                 "resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); "
                 "os.execv(sys.argv[3], sys.argv[3:])")
RUFF_MEMORY_BYTES = 4 << 30  # address space, not resident memory: ruff reserves a stack per thread


def limited(command: list[str]) -> list[str]:
    """`command` with its files (stdout included) capped at MAX_OUTPUT_BYTES and its address space."""
    return [sys.executable, "-I", "-S", "-c", _EXEC_LIMITED, str(MAX_OUTPUT_BYTES), str(RUFF_MEMORY_BYTES),
            *command]


def _env() -> dict[str, str]:
    """A minimal environment: no RUFF_* or PYTHON* variable of the harness's can change the tools."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "NO_COLOR": "1"}


def _run(command: list[str], *, cwd: Path, stdout: Path, timeout: float,
         stdin: bytes = b"") -> tuple[int | None, str]:
    """(exit status or None on timeout, stderr tail) of `command`, stdout written to `stdout`."""
    env = _env()
    errors = stdout.with_suffix(".stderr")
    with stdout.open("wb") as out, errors.open("wb") as err:
        process = subprocess.Popen(command, cwd=cwd, stdin=subprocess.PIPE, stdout=out, stderr=err, env=env,
                                   start_new_session=True)
        try:
            process.communicate(stdin, timeout=timeout)
            code: int | None = process.returncode
        except subprocess.TimeoutExpired:
            code = None
        finally:
            try:  # the whole process group goes, whatever it left behind
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
    with errors.open("rb") as handle:
        handle.seek(max(0, errors.stat().st_size - 2000))
        tail = handle.read()
    errors.unlink(missing_ok=True)
    return code, one_line(tail.decode("utf-8", "replace"), _MESSAGE_CHARS)


def _read_lines(path: Path, cap: int = MAX_OUTPUT_BYTES) -> list[bytes]:
    with path.open("rb") as handle:
        return handle.read(cap).splitlines()


def check_rules(rules: tuple[str, ...], target_version: str) -> str | None:
    """ruff's complaint about the rule selection or target version, or None if it accepts them."""
    command = [ruff_binary(), "check", "--isolated", "--no-cache", "--select", ",".join(rules),
               "--target-version", target_version, "--stdin-filename", "check.py", "-"]
    try:
        result = subprocess.run(command, input=b"", capture_output=True, timeout=60, check=False, env=_env())
    except subprocess.TimeoutExpired:
        raise HarnessError("ruff did not answer within 60 s") from None
    if result.returncode == 0:
        return None
    return one_line(result.stderr.decode("utf-8", "replace"), _MESSAGE_CHARS) or f"exit {result.returncode}"


def _hit(line: bytes, root: str) -> Hit | None:
    try:
        raw = json.loads(line)
        filename, location, end = str(raw["filename"]), raw["location"], raw.get("end_location") or {}
        rel = os.path.relpath(filename, root) if os.path.isabs(filename) else filename
        cell = raw.get("cell")
        row = int(location["row"])
        return Hit(rel=rel.replace(os.sep, "/"), cell=int(cell) if cell is not None else None,
                   row=row, end_row=max(row, int(end.get("row", 0))),
                   code=str(raw.get("code") or "invalid-syntax")[:40],
                   message=one_line(raw.get("message", ""), _MESSAGE_CHARS))
    except (ValueError, KeyError, TypeError):
        return None


def _ruff_once(root: Path, files: list[str], options: list[str], timeout: float,
               max_findings: int) -> RuffRun:
    command = [ruff_binary(), "check", "--isolated", "--no-cache", "--exit-zero", "--ignore-noqa",
               "--output-format", "json-lines", *options, "--", *files]
    output = root.parent / f"{root.name}.ruff.jsonl"
    code, err = _run(limited(command), cwd=root, stdout=output, timeout=timeout)
    lines = _read_lines(output)
    output.unlink(missing_ok=True)
    run = RuffRun(truncated=len(lines) > max_findings)
    real = os.path.realpath(root)
    run.hits = [hit for line in lines[:max_findings] if (hit := _hit(line, real)) is not None]
    if code is None:
        run.problem = f"ruff did not finish within {timeout:g} s"
    elif code != 0:
        run.problem = f"ruff failed (exit {code}): {err}"
    return run


def run_ruff(root: Path, files: list[str], *, rules: tuple[str, ...], target_version: str,
             line_length: int, timeout: float, max_findings: int = 50_000) -> RuffRun:
    """Lint `files` (relative to `root`) with the installed ruff. A ruff failure is a `problem`.

    When ruff crashes (it overflows its stack on some hostile expressions), the files are linted
    again in halves, so that only the files it cannot lint on their own are left out (`failed`).
    """
    options = ["--select", ",".join(rules), "--target-version", target_version,
               "--line-length", str(line_length)]
    deadline = time.monotonic() + timeout
    run = _ruff_once(root, files, options, timeout, max_findings) if files else RuffRun()
    if not run.problem or len(files) == 1 or run.problem.startswith("ruff did not finish"):
        return run
    merged, pending = RuffRun(), [files[: len(files) // 2], files[len(files) // 2:]]
    while pending:
        part = pending.pop()
        left = deadline - time.monotonic()
        if left <= 0:
            merged.failed.update((name, "not linted: the time budget ran out") for name in part)
            continue
        sub = _ruff_once(root, part, options, left, max_findings)
        if not sub.problem:
            merged.hits += sub.hits
            merged.truncated |= sub.truncated
        elif len(part) == 1:
            merged.failed[part[0]] = sub.problem
        else:
            pending += [part[: len(part) // 2], part[len(part) // 2:]]
    return merged


@dataclass(frozen=True)
class Unit:
    """One Python text for the worker."""

    id: int
    path: Path
    cells: tuple[int, ...] = ()  # first line of each notebook cell


def _worker_pass(units: list[Unit], scratch: Path, *, timeout: float, unit_seconds: float,
                 cpu_seconds: int) -> tuple[dict[int, UnitResult], str]:
    job = {"unit_seconds": unit_seconds,
           "units": [{"id": u.id, "path": str(u.path), "cells": list(u.cells)} for u in units]}
    # Run by path, not `-m graders...`: importing the graders package would import every grader.
    command = [sys.executable, "-P", str(_WORKER), str(WORKER_MEMORY_BYTES), str(cpu_seconds),
               str(MAX_OUTPUT_BYTES)]
    output = scratch / "worker.jsonl"
    code, err = _run(command, cwd=_ROOT, stdout=output, timeout=timeout, stdin=json.dumps(job).encode())
    done = {}
    for line in _read_lines(output):
        try:
            result = UnitResult.model_validate_json(line)
        except ValidationError:
            continue  # a line cut when the worker died: that unit is reported below
        done[result.id] = result
    if code == 0:
        return done, "" if len(done) == len(units) else "the analyser gave no valid result"
    why = ("it ran out of time" if code is None
           else f"the analyser stopped (exit {code}{': ' + err if err else ''})")
    return done, why


def run_worker(units: list[Unit], scratch: Path, *, timeout: float,
               unit_seconds: float = 20.0) -> dict[int, UnitResult]:
    """Every unit's analysis; a unit that crashed the worker or ran out of time gets ok=False."""
    results: dict[int, UnitResult] = {}
    pending, deadline = list(units), time.monotonic() + timeout
    for _attempt in range(MAX_RESTARTS + 1):
        left = deadline - time.monotonic()
        if not pending or left <= 0:
            break
        done, why = _worker_pass(pending, scratch, timeout=left, unit_seconds=min(unit_seconds, left),
                                 cpu_seconds=max(1, int(left) + 1))
        results.update(done)
        pending = [u for u in pending if u.id not in results]
        if why and pending:  # the first unit without a result is the one it died on
            results[pending[0].id] = UnitResult(id=pending[0].id, ok=False,
                                                error=f"could not be analysed: {why}")
            pending = pending[1:]
    why = ("the time budget ran out" if time.monotonic() >= deadline
           else f"{MAX_RESTARTS + 1} files crashed the analyser")
    for unit in pending:
        results[unit.id] = UnitResult(id=unit.id, ok=False, error=f"not analysed: {why}")
    return results
