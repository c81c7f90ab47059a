"""Copy detection over a hiring round: each graded submission leaves a snapshot in its result
folder; after every batch, the current results of the assignment version (the newest of each
candidate, this batch's and earlier ones') are compared (harness.similarity), and the flagged
pairs get an HTML report.

    take_snapshot(assignment, submission, result_dir)   by the batch, once it saved (or skipped) a result
    current_results(root)                                the folders to compare
    check_round(assignment, folders, dest)               pairs + report pages
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness._workdirs import exclusive
from harness.core.text import one_line
from harness.errors import HarnessError
from harness.results import newest_per_candidate, stored_results
from harness.similarity import (
    SimilarGroup,
    SimilarPair,
    SnapshotError,
    compare,
    find_groups,
    load_snapshot,
    snapshot,
)
from harness.similarity_html import pair_page, write_report
from harness.spec import Assignment

SNAPSHOT_DIR = "similarity"  # in a result folder: fingerprints.json and sources.json (not logged)
REPORT_DIR = "similarity"  # in results/<id>/<version>/: index.html and pair-<hash>.html


@dataclass
class BatchSimilarity:
    """What the comparison found. Names are the submissions' ids (result folder names)."""

    checked: bool = False  # False: disabled, or the comparison failed (then nothing is re-tagged)
    pairs: list[SimilarPair] = field(default_factory=list)
    groups: list[SimilarGroup] = field(default_factory=list)  # the pairs joined into rings of copies
    compared: dict[str, Path] = field(default_factory=dict)  # submission id -> result folder
    threshold: float = 0.0
    report: Path | None = None  # index.html, when pairs were flagged
    pages: dict[tuple[str, str], Path] = field(default_factory=dict)  # (a, b) -> its side-by-side page
    problems: list[str] = field(default_factory=list)  # submissions left out, and why

    def group_lines(self) -> list[str]:
        """One terminal line per group of three or more (a pair is already its own line)."""
        lines = []
        for group in self.groups:
            if len(group.members) < 3:
                continue
            sims = ", ".join(f"{p.a} ~ {p.b} {p.similarity:.2f}" for p in group.pairs)
            missing = len(group.members) * (len(group.members) - 1) // 2 - len(group.pairs)
            under = f"; {missing} pair(s) under the threshold" if missing else ""
            lines.append(f"  group of {len(group.members)}: {', '.join(group.members)} ({sims}{under})")
        return lines

    def partners(self, name: str) -> list[tuple[str, float]]:
        """The submissions flagged with `name`, most similar first."""
        return [(p.b if p.a == name else p.a, p.similarity) for p in self.pairs if name in (p.a, p.b)]


def take_snapshot(assignment: Assignment, submission: Path, result_dir: Path) -> str:
    """Fingerprint the staged submission into `result_dir/similarity`; "" or why it could not.

    A no-op when disabled. Never raises: a snapshot that fails (a full disk) only leaves this
    submission out of the comparison, which says so.
    """
    if not assignment.spec.similarity.enabled:
        return ""
    starter = assignment.path(assignment.spec.starter) if assignment.spec.starter else None
    try:
        snapshot(submission, starter_dir=starter, dest=result_dir / SNAPSHOT_DIR)
    except (HarnessError, OSError) as exc:
        return one_line(f"{exc.__class__.__name__}: {exc}", 200)
    return ""


def current_results(root: Path) -> dict[str, Path]:
    """Submission id -> folder of the newest graded result of each candidate under `root`
    (results/<id>/<version>): a candidate's earlier submissions are not compared with theirs."""
    graded = [(folder, r) for folder, r in stored_results(root) if r.status.graded]
    return {result.submission_id: folder for folder, result in newest_per_candidate(graded)}


def check_round(assignment: Assignment, folders: Mapping[str, Path], dest: Path) -> BatchSimilarity:
    """Compare the snapshots in `folders` (submission id -> result folder) and rewrite the report
    pages in `dest` (index.html, one page per flagged pair; an earlier run's pages go). A missing
    or damaged snapshot leaves its submission out (said in `problems`); the others are compared.
    Concurrent batches of one assignment version take turns."""
    settings = assignment.spec.similarity
    found = BatchSimilarity(threshold=settings.threshold)
    if not settings.enabled:
        return found
    snaps = {}
    for name, folder in sorted(folders.items()):
        try:
            snaps[name] = load_snapshot(folder / SNAPSHOT_DIR)
        except SnapshotError as exc:
            found.problems.append(f"{name} left out: {one_line(str(exc), 200)}")
    found.compared = {name: folders[name] for name in snaps}
    try:
        found.pairs = compare(snaps, threshold=settings.threshold, max_share=settings.max_share,
                              min_shared=settings.min_shared)
        found.groups = find_groups(found.pairs)
    except SnapshotError as exc:  # snapshots of another starter kit: re-grading with --force renews them
        found.problems.append(f"nothing compared: {one_line(str(exc), 200)}")
        return found
    dest.mkdir(parents=True, exist_ok=True)
    with exclusive(dest / ".lock"):
        for stale in [*dest.glob("pair-*.html"), dest / "index.html"]:
            stale.unlink(missing_ok=True)
        if found.pairs:
            found.report = write_report(found.pairs, snaps, dest, groups=found.groups)
    found.pages = {(p.a, p.b): dest / pair_page(p.a, p.b) for p in found.pairs}
    found.checked = True
    return found
