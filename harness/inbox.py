"""Tell an inbox (a folder holding one submission per candidate) from one submission, before grading.

Graded as one submission, `subs/` (holding `subs/alice/`, `subs/bob/`) would be one candidate named
"subs" with none of the contract's files: invalid_submission, and nobody graded. The contract
(`required_files`, `required_one_of`) is what tells them apart: a folder with none of those files
at its root cannot pass it, and when two or more of its entries could (sub-folders that hold all
of them, or archives and notebooks, which are submissions the intake unpacks), it is an inbox.
An assignment whose contract names no file cannot tell, and nothing is refused.
"""

from __future__ import annotations

import itertools
import shlex
from pathlib import Path

from harness.errors import UsageError
from harness.spec import Assignment

_SCANNED = 10_000  # entries looked at in one folder: an inbox is listed, never walked
_PACKED = (".zip", ".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".ipynb")


def _contract(assignment: Assignment) -> tuple[tuple[str, ...], tuple[str, ...]]:
    spec = assignment.spec
    return tuple(spec.required_files), tuple(spec.required_one_of)


def passes_contract(assignment: Assignment, folder: Path) -> bool:
    """Whether `folder` holds every file the contract requires (and one of its alternatives)."""
    required, one_of = _contract(assignment)
    return all((folder / f).is_file() for f in required) and (
        not one_of or any((folder / f).is_file() for f in one_of))


def _has_own_files(assignment: Assignment, folder: Path) -> bool:
    required, one_of = _contract(assignment)
    return any((folder / f).exists() for f in (*required, *one_of))


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in _PACKED if name.endswith(s)), "")


def inbox_globs(assignment: Assignment, source: str) -> tuple[list[str], int]:
    """The shell globs that name the submissions inside `source` when it is an inbox, and how many
    entries look like submissions; ([], 0) when it is (or may be) one submission."""
    folder = Path(source)
    required, one_of = _contract(assignment)
    if "://" in source or not (required or one_of) or not folder.is_dir():
        return [], 0
    if _has_own_files(assignment, folder):
        return [], 0
    entries = [p for p in itertools.islice(folder.iterdir(), _SCANNED) if not p.name.startswith(".")]
    folders = [p for p in entries if p.is_dir() and passes_contract(assignment, p)]
    packed: dict[str, int] = {}
    for path in entries:
        if path.is_file() and (suffix := _suffix(path)):
            packed[suffix] = packed.get(suffix, 0) + 1
    found = len(folders) + sum(packed.values())
    if found < 2:
        return [], 0
    base = shlex.quote(source.rstrip("/") or "/")
    return ([f"{base}/*/"] if folders else []) + [f"{base}/*{suffix}" for suffix in sorted(packed)], found


def refuse_inboxes(assignment: Assignment, sources: list[str], *, typed: str) -> None:
    """UsageError for the first source that is an inbox, saying what to type instead (`typed`: the
    assignment as the user named it)."""
    for source in sources:
        globs, found = inbox_globs(assignment, source)
        if globs:
            raise UsageError(f"{source} is a folder of {found} submissions, not one submission: grade "
                             f"them with `harness grade {shlex.quote(typed)} {' '.join(globs)}`")
