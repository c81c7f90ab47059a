"""What the CLI shows a person: progress on stderr, a summary table, JSON lines on stdout."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console as RichConsole
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from harness.results import Status, SubmissionResult

_STYLE = {Status.OK: "green", Status.INFRA_ERROR: "bold red", Status.REJECTED: "bold red"}


class Console:
    """Human output goes to stderr so stdout stays clean for --json."""

    def __init__(self) -> None:
        self.err = RichConsole(stderr=True)
        self.out = RichConsole()

    def print_table(self, table: Table) -> None:
        self.out.print(table)

    def note(self, text: str) -> None:
        self.err.print(text, highlight=False, markup=False)


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def summary_table(results: list[SubmissionResult], *, skipped: set[str] | None = None) -> Table:
    """Leaderboard: best total first, then the ungraded (whose scores are null, never zero)."""
    ordered = sorted(results, key=lambda r: (r.total_score is None, -(r.total_score or 0), r.candidate))
    criteria = list(dict.fromkeys(c.name for r in ordered for c in r.criteria))
    table = Table(title="Results", title_justify="left")
    for name in ["#", "candidate", "status", "total", *criteria, "seconds", "note"]:
        table.add_column(name, justify="right" if name in ("#", "total", "seconds") else "left",
                         overflow="fold", max_width=60 if name == "note" else None)
    for rank, r in enumerate(ordered, 1):
        scores = {c.name: f"{100 * c.score:.0f}" for c in r.criteria}
        note = ("already graded; " if skipped and r.submission_id in skipped else "") + r.message
        table.add_row(str(rank), r.candidate, f"[{_STYLE.get(r.status, 'yellow')}]{r.status.value}[/]",
                      _score(r.total_score), *(scores.get(c, "—") for c in criteria),
                      f"{r.duration_s:.1f}", note[:160], )
    return table


@contextmanager
def progress_callback(console: Console, *, total: int, as_json: bool) -> Iterator[Callable]:
    """A batch event handler: a progress bar (stderr) and, with --json, one line per result (stdout)."""
    progress = Progress(SpinnerColumn(), TextColumn("grading"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.description}"), console=console.err,
                        transient=True)
    task = progress.add_task("", total=total)

    def on_event(event: tuple[str, object]) -> None:
        kind, payload = event
        if kind == "done":
            result = payload.result
            progress.advance(task)
            progress.update(task, description=f"last: {result.candidate} {result.status.value}")
            if as_json:
                console.out.print_json(json.dumps(result.summary_line()), indent=None)

    with progress:
        yield on_event
