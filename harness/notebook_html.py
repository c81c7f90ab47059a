"""Render a notebook a stage wrote into sanitised, self-contained HTML for reviewers."""

from __future__ import annotations

import html
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.core.text import one_line
from harness.results import write_atomic

_log = logging.getLogger(__name__)

MAX_NOTEBOOK_BYTES = 6 * 1024 * 1024  # stages cap notebooks at 5 MB; anything larger is refused
MAX_HTML_BYTES = 10 * 1024 * 1024  # a larger page is replaced by the "could not be rendered" page
WORKER_MEMORY_BYTES = 1024 * 1024 * 1024  # RLIMIT_AS of the rendering subprocess
WORKER_CPU_SECONDS = 60  # RLIMIT_CPU of the rendering subprocess
WORKER_TIMEOUT_SECONDS = 60.0  # wall clock, then the subprocess's process group is killed
_STDERR_TAIL_BYTES = 4096
_ROOT = Path(__file__).resolve().parent.parent


class _NotRendered(Exception):
    """The notebook could not be rendered; the message says why."""


def render_notebook(source: Path, target: Path) -> str | None:
    """Write `target` (HTML) from the notebook file `source`; return a problem or None.

    The notebook is the candidate's: it is parsed and rendered in a subprocess with memory, CPU and
    wall-clock limits (see harness._nbrender_worker), cut to bounded size first, its markup sanitised
    (no scripts, no active HTML) and no remote scripts are referenced. A notebook that cannot be read
    or rendered within the bounds gets an HTML page saying why, never an exception.
    """
    try:
        body = _render_in_subprocess(Path(source))
        problem = None
    except (Exception, RecursionError) as exc:  # noqa: BLE001 - any failure is the notebook's
        reason = str(exc) if isinstance(exc, _NotRendered) else f"{type(exc).__name__}: {exc}"
        problem = f"notebook could not be rendered: {one_line(reason, 300)}"
        body = f"<!DOCTYPE html><meta charset=utf-8><title>notebook</title><p>{html.escape(problem)}</p>"
        _log.info("%s: %s", source, problem)
    write_atomic(target, body)
    return problem


def _render_in_subprocess(source: Path) -> str:
    """The page for `source`, rendered by the limited worker; raises _NotRendered on any failure."""
    if source.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise _NotRendered(f"notebook larger than {MAX_NOTEBOOK_BYTES:,} bytes")
    with tempfile.TemporaryDirectory(prefix="nbrender-") as scratch:
        page, errors = Path(scratch) / "page.html", Path(scratch) / "stderr"
        command = [sys.executable, "-m", "harness._nbrender_worker", str(source), str(page),
                   str(WORKER_MEMORY_BYTES), str(WORKER_CPU_SECONDS), str(MAX_HTML_BYTES)]
        with errors.open("wb") as stderr:
            code = _run(command, stderr)
        if code != 0:
            raise _NotRendered(_why(code, _tail(errors)))
        if page.stat().st_size > MAX_HTML_BYTES:
            raise _NotRendered(f"rendered page larger than {MAX_HTML_BYTES:,} bytes")
        return page.read_text(encoding="utf-8")


def _run(command: list[str], stderr) -> int | None:
    """Exit status of `command` (negative for a signal), or None if it outlived the timeout."""
    path = os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                               env=env, cwd=_ROOT, start_new_session=True)
    try:
        return process.wait(timeout=WORKER_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return None
    finally:
        # The worker's whole process group goes, whatever it left behind.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def _tail(path: Path) -> str:
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - _STDERR_TAIL_BYTES))
        lines = handle.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else ""


def _why(code: int | None, last_line: str) -> str:
    if code is None:
        return f"rendering took longer than {WORKER_TIMEOUT_SECONDS:g} s"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        limits = f"memory {WORKER_MEMORY_BYTES:,} B, CPU {WORKER_CPU_SECONDS} s"
        return f"renderer killed by {name} (limits: {limits})"
    return last_line or f"renderer exited with status {code}"
