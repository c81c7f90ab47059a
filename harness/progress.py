"""The batch's progress on stderr: one bar for the batch (done of total, elapsed, ETA) and one line
per submission in flight with the step it is in (harness.batch events); `--json` lines on stdout."""

from __future__ import annotations

import json
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from harness.batch import BatchItem, Event, StepStarted
from harness.core.text import one_line, printable

_NAME_CHARS = 28


def eta_seconds(*, elapsed: float, graded: int, remaining: int) -> float | None:
    """Seconds left at the rate the batch has graded so far (submissions graded per second, whatever
    the parallelism); None before the first is graded. Already-graded ones (skipped) count as done
    but not in the rate: they took no time."""
    if remaining <= 0:
        return 0.0
    if graded <= 0 or elapsed <= 0:
        return None
    return elapsed / graded * remaining


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class EtaColumn(ProgressColumn):
    """"eta 0:01:20" from the task's fields `graded` (submissions graded in this batch, not skipped)."""

    max_refresh = 1.0

    def render(self, task: Task) -> Text:
        left = eta_seconds(elapsed=task.elapsed or 0.0, graded=task.fields.get("graded", 0),
                           remaining=int((task.total or 0) - task.completed))
        return Text("eta " + ("--:--:--" if left is None else _clock(left)), style="progress.remaining")


def _name(source: str) -> str:
    # the folder's name is the candidate's: rich passes ESC and BEL through, so without one_line a
    # name could retitle the terminal or recolour the display (undecodable bytes shown as escapes)
    return one_line(printable(Path(source.rstrip("/")).name or source), _NAME_CHARS)


class BatchProgress:
    """Renders the events of harness.batch (they arrive from worker threads)."""

    def __init__(self, console: Console, *, total: int, write_json: Callable[[str], None] | None,
                 get_time: Callable[[], float] | None = None) -> None:
        self.batch = Progress(SpinnerColumn(), TextColumn("grading"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), EtaColumn(), console=console, get_time=get_time)
        self.flight = Progress(TextColumn("  "), TextColumn("{task.description}", markup=False),
                               TextColumn("{task.fields[step]}", markup=False), TimeElapsedColumn(),
                               console=console, get_time=get_time)
        self.task = self.batch.add_task("", total=total, graded=0)
        self.rows: dict[str, list[TaskID]] = {}  # source -> its rows in flight (the same source twice: two)
        self.write_json = write_json
        self.lock = threading.Lock()

    def renderable(self) -> Group:
        return Group(self.batch, self.flight)

    def __call__(self, event: Event) -> None:
        kind, payload = event
        with self.lock:
            if kind == "start" and isinstance(payload, str):
                row = self.flight.add_task(_name(payload), step="queued")
                self.rows.setdefault(payload, []).append(row)
            elif kind == "stage" and isinstance(payload, StepStarted) and self.rows.get(payload.source):
                self.flight.update(self.rows[payload.source][0], step=payload.step)
            elif kind == "done" and isinstance(payload, BatchItem):
                self._done(payload)

    def _done(self, item: BatchItem) -> None:
        rows = self.rows.get(item.source) or []
        if rows:
            self.flight.remove_task(rows.pop(0))
        graded = self.batch.tasks[0].fields.get("graded", 0) + (0 if item.skipped else 1)
        self.batch.update(self.task, advance=1, graded=graded)
        if self.write_json is not None:  # raw JSON: no markup, emoji or wrapping from rich
            self.write_json(json.dumps(item.result.summary_line()) + "\n")


@contextmanager
def progress_callback(console: Console, *, total: int, as_json: bool) -> Iterator[Callable[[Event], None]]:
    """A batch event handler showing BatchProgress on `console` (stderr) while the batch runs and,
    with `as_json`, writing one line per result to stdout. Warnings raised meanwhile are printed
    through `console`."""
    # With stderr on a terminal, Live can redirect sys.stdout into its display (on stderr): only
    # when stdout is that terminal too; piped, the JSON lines go to the real stdout, untouched.
    out, on_screen = sys.stdout, sys.stdout.isatty()

    def write_json(line: str) -> None:
        target = sys.stdout if on_screen else out
        target.write(line)
        target.flush()

    def show_warning(message: Warning | str, *_: object, **__: object) -> None:
        # through the display's console, so the line lands above the display and does not tear it
        console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)

    shown = BatchProgress(console, total=total, write_json=write_json if as_json else None)
    previous, warnings.showwarning = warnings.showwarning, show_warning
    try:
        with Live(shown.renderable(), console=console, transient=True, refresh_per_second=4,
                  redirect_stdout=on_screen):
            yield shown
    finally:
        warnings.showwarning = previous
