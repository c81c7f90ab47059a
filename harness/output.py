"""What the CLI shows a person: a summary table that fits the terminal, notes on stderr (progress:
harness.progress; other formats: harness.formats)."""

from __future__ import annotations

import functools
import os
import sys

from rich import box
from rich.cells import cell_len
from rich.console import Console as RichConsole
from rich.table import Table
from rich.text import Text

from harness.batch_similarity import BatchSimilarity
from harness.formats import Board, board
from harness.results import Status, SubmissionResult

_STYLE = {Status.OK: "green", Status.INFRA_ERROR: "bold red", Status.REJECTED: "bold red",
          Status.MACHINE_BUSY: "bold yellow"}


class Console:
    """Human output goes to stderr so stdout stays clean for --json."""

    def __init__(self) -> None:
        self.err = RichConsole(stderr=True)
        # piped or captured: no terminal width to fit, and folding the columns makes a log unreadable
        # (COLUMNS, when set, is the width asked for)
        self.out = RichConsole(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200)

    @property
    def width(self) -> int:
        return self.out.width

    def print_table(self, table: Table) -> None:
        self.out.print(table)

    def note(self, text: str) -> None:
        self.err.print(text, highlight=False, markup=False, soft_wrap=True)  # commands stay copyable


_MIN_CANDIDATE, _MIN_NOTE = 12, 16  # below these a cut name or note says too little


def summary_table(results: list[SubmissionResult], *, skipped: set[str] | None = None,
                  width: int = 200) -> Table:
    """Leaderboard fitted to `width` columns: the seconds column goes first, then long group names
    take two lines or are cut, then the note and a long name are cut with an ellipsis (never
    folded; the name keeps its whole width first), then the note goes. Candidate-controlled text
    is shown as plain text, never as markup."""
    found = board(results, skipped=skipped)
    headers = found.headers
    for titles in _titles(found.groups):  # long group names wrapped, then cut, until the rest fits
        titles = {h: titles.get(h, h) for h in headers}
        natural = _natural(found, titles)
        widths = _fit(headers, natural, width)
        name, note = headers.index("candidate"), headers.index("note")
        if widths[name] == natural[name] and widths[note] > 0:
            break
    table = Table(title="Results", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  padding=(0, 1, 0, 0), pad_edge=False)
    shown = [i for i, w in enumerate(widths) if w > 0]
    for i in shown:
        right = headers[i] in ("#", "total", "seconds", *found.groups)
        table.add_column(titles[headers[i]], justify="right" if right else "left", no_wrap=True,
                         overflow="ellipsis", width=widths[i])
    for row, result in zip(found.rows, found.results, strict=True):
        cells = [Text(cell) for cell in row]
        cells[2].stylize(_STYLE.get(result.status, "yellow"))
        table.add_row(*(cells[i] for i in shown))
    return table


_GROUP_CHARS = 7  # a group's column cut to this: its scores take 3


def _titles(groups: list[str]) -> list[dict[str, str]]:
    wrapped = {g: g.replace("_", "\n") for g in groups}
    cut = {g: "\n".join(w if len(w) <= _GROUP_CHARS else w[:_GROUP_CHARS - 1] + "\u2026"
                        for w in t.split("\n")) for g, t in wrapped.items()}
    return [{}, wrapped, cut]


_GAP = 2  # between two columns: a column's right padding and the rule's space


def _natural(found: Board, titles: dict[str, str]) -> list[int]:
    return [max([*(cell_len(line) for line in titles[h].splitlines()), *(cell_len(r[i]) for r in found.rows)])
            for i, h in enumerate(found.headers)]


def _used(widths: list[int]) -> int:
    shown = [w for w in widths if w > 0]
    return sum(shown) + _GAP * (len(shown) - 1)


def _fit(headers: list[str], natural: list[int], width: int) -> list[int]:
    """Column widths (0: dropped) whose table fits `width`."""
    widths = list(natural)
    used = functools.partial(_used, widths)
    candidate, note, seconds = headers.index("candidate"), headers.index("note"), headers.index("seconds")
    if used() > width:
        widths[seconds] = 0
    if used() > width:  # what is left goes to the name and the note, the name first
        spare = width - (used() - widths[candidate] - widths[note])
        least_note = min(natural[note], _MIN_NOTE)
        widths[candidate] = min(natural[candidate], max(_MIN_CANDIDATE, spare - least_note))
        widths[note] = spare - widths[candidate]
        if widths[note] < least_note:
            widths[note] = 0
            widths[candidate] = min(natural[candidate], max(_MIN_CANDIDATE, spare + _GAP))
    return widths


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
