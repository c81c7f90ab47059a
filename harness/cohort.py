"""The cohort of an assignment version: each candidate's newest result, ranked, with what the
cohort page shows beside it (group scores, the total's range, copy flags, MLflow run), and the
writer of the static pages (harness.cohort_html, harness.candidate_html).

    write_cohort(assignment, root, similarity=..., run_ids=...)   after a batch, and `harness report`

The pages are rebuilt from the JSON results on disk each time; they hold no state of their own
except the MLflow run ids the batches reported (RUNS_FILE), which result.json does not carry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness._workdirs import exclusive
from harness.batch_similarity import REPORT_DIR, BatchSimilarity
from harness.core import GRADERS, CriterionResult
from harness.errors import HarnessError
from harness.results import (
    SubmissionResult,
    group_scores,
    leaderboard,
    newest_per_candidate,
    ranks,
    stored_results,
    weighted_total,
    write_atomic,
)

INDEX_FILE = "index.html"  # in results/<id>/<version>/
CANDIDATE_FILE = "report.html"  # in each result folder, beside report.md
RUNS_FILE = ".mlflow_runs.json"  # submission id -> MLflow run id, as batches logged them
_MAX_RUNS_BYTES = 4 << 20


@dataclass(frozen=True)
class Flag:
    """A copy flag: the other submission of a similar pair, and that pair's side-by-side page."""

    partner: str  # the partner's candidate name (its submission id if it is not in the cohort)
    similarity: float
    page: str | None  # relative to results/<id>/<version>/


@dataclass(frozen=True)
class CohortRow:
    rank: int | None  # None: ungraded (no total), listed last
    folder: Path
    result: SubmissionResult
    groups: dict[str, float]
    total_range: tuple[float, float] | None
    flags: list[Flag] = field(default_factory=list)
    run_id: str | None = None

    @property
    def page(self) -> str:
        """The candidate's page, relative to the cohort page."""
        return f"{self.folder.name}/{CANDIDATE_FILE}"


@dataclass(frozen=True)
class Cohort:
    assignment: str
    version: str
    title: str
    rows: list[CohortRow]
    groups: list[str]  # group columns, in the spec's order
    similarity: str  # one line: what copy detection found or why it did not run


def criterion_bounds(c: CriterionResult) -> tuple[float, float] | None:
    """The criterion's score at the ends of its measure's 95% interval (its grader knows how the
    measure maps to the score), or None."""
    if c.ungraded:
        return None
    try:
        bounds = GRADERS.get(c.grader).score_bounds(c)
    except (HarnessError, AttributeError, ArithmeticError, ValueError):  # a grader from an old install
        return None
    return None if bounds is None else (min(bounds), max(bounds))


def total_range(result: SubmissionResult) -> tuple[float, float] | None:
    """The total (0-100) with every criterion that has an interval at its low ends, then at its
    high ends; None when no criterion has one or the result has no total."""
    if result.total_score is None:
        return None
    bounds = {c.name: b for c in result.criteria if (b := criterion_bounds(c)) is not None}
    if not bounds:
        return None
    low = weighted_total(result.criteria, {name: b[0] for name, b in bounds.items()})
    high = weighted_total(result.criteria, {name: b[1] for name, b in bounds.items()})
    return None if low is None or high is None else (low, high)


def build_cohort(assignment_id: str, version: str, title: str, root: Path, *,
                 similarity: BatchSimilarity | None = None,
                 run_ids: Mapping[str, str] | None = None) -> Cohort:
    """The newest result of each candidate under `root` (results/<id>/<version>), best first."""
    stored = newest_per_candidate(stored_results(root))
    folders = {result.submission_id: folder for folder, result in stored}
    names = {result.submission_id: result.candidate for _, result in stored}
    runs = run_ids or {}
    rows: list[CohortRow] = []
    ordered = leaderboard([r for _, r in stored])
    for rank, result in zip(ranks(ordered), ordered, strict=True):  # ties share a rank
        rows.append(CohortRow(rank=rank, folder=folders[result.submission_id], result=result,
                              groups=group_scores(result.criteria), total_range=total_range(result),
                              flags=_flags(result.submission_id, similarity, names, root),
                              run_id=runs.get(result.submission_id)))
    groups = list(dict.fromkeys(g for row in rows for g in row.groups))
    return Cohort(assignment_id, version, title, rows, groups, _similarity_line(similarity))


def _flags(name: str, found: BatchSimilarity | None, names: Mapping[str, str], root: Path) -> list[Flag]:
    if found is None or not found.checked:
        return []
    flags = []
    for partner, similarity in found.partners(name):
        page = found.pages.get((name, partner)) or found.pages.get((partner, name))
        exists = page is not None and (root / REPORT_DIR / page.name).is_file()
        relative = f"{REPORT_DIR}/{page.name}" if page is not None and exists else None
        flags.append(Flag(names.get(partner, partner), similarity, relative))
    return flags


def _similarity_line(found: BatchSimilarity | None) -> str:
    if found is None:
        return "Copy detection was not run for this page."
    if not found.checked:
        why = "; ".join(found.problems[:3])
        return "Copy detection is off for this assignment or failed" + (f": {why}" if why else ".")
    pairs = len(found.pairs)
    note = f" ({'; '.join(found.problems[:3])})" if found.problems else ""
    return (f"Copy detection compared {len(found.compared)} submissions: {pairs} pair(s) at or over "
            f"{found.threshold:.0%} similarity{note}.")


def inside(folder: Path, rel: str) -> Path | None:
    """`folder/rel` when it stays in `folder`, else None. result.json is hostile (hand-edited, or
    written by a stage): no absolute path, no "..", and no symlink at any step below the folder, so
    neither our read nor the browser following the page's link ends up outside it."""
    base = folder.resolve()
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or any(p in ("..", "") for p in parts):
        return None
    path = base
    for part in parts:
        path = path / part
        if path.is_symlink():
            return None
    return path if path.resolve().is_relative_to(base) else None


def read_runs(root: Path) -> dict[str, str]:
    """The MLflow run ids recorded by earlier batches; {} when none or unreadable."""
    try:
        with (root / RUNS_FILE).open("rb") as fh:
            data = json.loads(fh.read(_MAX_RUNS_BYTES).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str) and v.isalnum() and len(v) <= 64}


def record_runs(root: Path, run_ids: Mapping[str, str]) -> dict[str, str]:
    """Merge `run_ids` into RUNS_FILE and return all known ids, under the cohort lock (a read-merge-
    write: two batches, or a batch and `harness log`, would otherwise drop each other's ids)."""
    with exclusive(_cohort_lock(root)):
        return _merge_runs(root, run_ids)


def _cohort_lock(root: Path) -> Path:
    return root / ".locks" / "cohort.lock"


def _merge_runs(root: Path, run_ids: Mapping[str, str]) -> dict[str, str]:
    """record_runs for a caller that holds the cohort lock (flock is not re-entrant across opens)."""
    runs = read_runs(root) | {k: v for k, v in run_ids.items() if v}
    if run_ids:
        write_atomic(root / RUNS_FILE, json.dumps(runs, indent=1, sort_keys=True))
    return runs


def write_cohort(assignment_id: str, version: str, title: str, root: Path, *,
                 similarity: BatchSimilarity | None = None,
                 run_ids: Mapping[str, str] | None = None) -> Path:
    """Write every candidate's page and the cohort page `root/index.html`; return its path.

    Raises OSError when a page cannot be written (callers keep the graded results regardless).
    """
    from harness.candidate_html import render_candidate
    from harness.cohort_html import render_cohort

    with exclusive(_cohort_lock(root)):  # two batches of one version: no run id lost
        cohort = build_cohort(assignment_id, version, title, root, similarity=similarity,
                              run_ids=_merge_runs(root, run_ids or {}))
        for row in cohort.rows:
            write_atomic(row.folder / CANDIDATE_FILE, render_candidate(row, cohort))
        write_atomic(root / INDEX_FILE, render_cohort(cohort))
    return root / INDEX_FILE
