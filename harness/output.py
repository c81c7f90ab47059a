"""What the CLI shows a person: progress on stderr, a summary table, JSON lines on stdout."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

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
from rich.text import Text

from harness.batch_similarity import BatchSimilarity
from harness.results import Status, SubmissionResult, group_scores, leaderboard

_STYLE = {Status.OK: "green", Status.INFRA_ERROR: "bold red", Status.REJECTED: "bold red"}


class Console:
    """Human output goes to stderr so stdout stays clean for --json."""

    def __init__(self) -> None:
        self.err = RichConsole(stderr=True)
        # piped or captured: no terminal width to fit, and folding the columns makes a log unreadable
        self.out = RichConsole(width=None if sys.stdout.isatty() else 200)

    def print_table(self, table: Table) -> None:
        self.out.print(table)

    def note(self, text: str) -> None:
        self.err.print(text, highlight=False, markup=False, soft_wrap=True)  # commands stay copyable


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def summary_table(results: list[SubmissionResult], *, skipped: set[str] | None = None) -> Table:
    """Leaderboard. Candidate-controlled text is shown as plain text, never as markup."""
    ordered = leaderboard(results)
    criteria = list(dict.fromkeys(g for r in ordered for g in group_scores(r.criteria)))
    table = Table(title="Results", title_justify="left")
    for name in ["#", "candidate", "status", "total", *criteria, "seconds", "note"]:
        table.add_column(name, justify="right" if name in ("#", "total", "seconds") else "left",
                         overflow="fold", max_width=60 if name == "note" else None)
    for rank, r in enumerate(ordered, 1):
        scores = {name: f"{score:.0f}" for name, score in group_scores(r.criteria).items()}
        note = ("already graded; " if skipped and r.submission_id in skipped else "") + r.message
        status = Text(r.status.value, style=_STYLE.get(r.status, "yellow"))
        table.add_row(str(rank), Text(r.candidate), status,
                      _score(r.total_score), *(scores.get(c, "—") for c in criteria),
                      f"{r.duration_s:.1f}", Text(note[:200]))
    return table


@contextmanager
def progress_callback(console: Console, *, total: int, as_json: bool) -> Iterator[Callable]:
    """A batch event handler: a progress bar with the work in flight (stderr) and, with --json,
    one line per result (stdout). Events arrive from worker threads."""
    progress = Progress(SpinnerColumn(), TextColumn("grading"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.description}", markup=False),
                        console=console.err, transient=True)
    task = progress.add_task("", total=total)
    in_flight: dict[str, int] = {}
    lock = threading.Lock()

    def show() -> None:
        names = [Path(s.rstrip("/")).name for s in in_flight]
        progress.update(task, description=f"in flight: {', '.join(names)}" if names else "")

    def on_event(event: tuple[str, object]) -> None:
        kind, payload = event
        with lock:
            if kind == "start":
                in_flight[payload] = in_flight.get(payload, 0) + 1
            elif kind == "done":
                source = payload.source
                in_flight[source] = in_flight.get(source, 1) - 1
                if in_flight[source] <= 0:
                    in_flight.pop(source, None)
                progress.advance(task)
                if as_json:  # raw JSON: no markup, emoji or wrapping from rich
                    sys.stdout.write(json.dumps(payload.result.summary_line()) + "\n")
                    sys.stdout.flush()
            show()

    with progress:
        yield on_event


def similarity_lines(found: BatchSimilarity) -> list[str]:
    """The round's copy-detection verdict for the terminal: flagged pairs, then any problem."""
    lines = []
    if found.checked and not found.pairs:
        lines.append(f"similarity: no pair of the {len(found.compared)} submissions graded so far "
                     f"at or over {found.threshold:.2f}")
    elif found.pairs:
        lines.append(f"similarity: {len(found.pairs)} pair(s) of the {len(found.compared)} submissions "
                     f"graded so far at or over {found.threshold:.2f} (side by side: {found.report})")
        lines += [f"  {p.similarity:.2f}  {p.a}  ~  {p.b}  ({p.shared} shared fingerprints)"
                  for p in found.pairs]
        lines += found.group_lines()
    return lines + [f"similarity: {problem}" for problem in found.problems]
