"""The result of grading one submission: the JSON on disk that everything else is fed from."""

from __future__ import annotations

import enum
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.core import CriterionResult
from harness.core.text import one_line, printable
from harness.rubric import PENDING, ManualReview, PreviousResult

if TYPE_CHECKING:
    from harness.intake import StagedSubmission
    from harness.spec import Assignment
from sandbox import StageStatus

RESULT_FILE = "result.json"
REASON_CHARS = 300  # = harness._reasons.REASON_CHARS


class Status(enum.StrEnum):
    OK = "ok"  # every stage ran; graded
    ERROR = "error"  # a stage exited non-zero; graded (what could be)
    TIMEOUT = "timeout"
    OOM = "oom"
    OUTPUT_LIMIT = "output_limit"
    DISK_LIMIT = "disk_limit"
    INVALID = "invalid_submission"  # required files missing, bad requirements: graded zero, nothing run
    INFRA_ERROR = "infra_error"  # the harness failed: ungraded (total_score null), retried on resume
    #: timing criteria measured on a machine that stayed busy: ungraded (total_score null; the other
    #: criteria are kept for the report), re-measured on resume
    MACHINE_BUSY = "machine_busy"
    REJECTED = "rejected"  # could not be taken in (corrupt/unsafe archive, missing path): ungraded

    @property
    def graded(self) -> bool:
        return self not in (Status.INFRA_ERROR, Status.REJECTED, Status.MACHINE_BUSY)


#: a blocking stage's sandbox outcome as the submission's status (sandbox.StageStatus is the
#: sandbox's own type; this is the one place the two meet)
STATUS_OF_STAGE: Mapping[StageStatus, Status] = {
    StageStatus.OK: Status.OK, StageStatus.ERROR: Status.ERROR, StageStatus.TIMEOUT: Status.TIMEOUT,
    StageStatus.OOM: Status.OOM, StageStatus.OUTPUT_LIMIT: Status.OUTPUT_LIMIT,
    StageStatus.DISK_LIMIT: Status.DISK_LIMIT,
}


class MachineCheck(BaseModel):
    """Whether the machine was quiet while a service was timed (harness._quiet), and the figures."""

    model_config = ConfigDict(extra="forbid")

    plan: str  # the host's CPU plan in one sentence
    server_cores: list[int] = Field(default_factory=list)  # [] = not pinned (CPU quotas)
    probe_cores: list[int] = Field(default_factory=list)
    waited_s: float = 0.0  # waiting for the machine (another measurement, other stages)
    reference_p99_ms: float | None = None  # the reference server's p99 just before (None: not measured)
    expected_p99_ms: float
    max_reference_p99_ms: float
    other_cores: float | None = None  # cores other processes used, the largest mean over the windows
    steal_cores: float | None = None  # of which the hypervisor's steal
    max_other_cores: float
    windows: int = 0  # timed windows checked
    throttled_share: float | None = None  # of the server's time, throttled by its CPU quota (its own use)
    busy: str = ""  # why the measurement does not count; "" when the machine was quiet
    attempts: int = 1  # measurements made (a busy one is repeated)

    def summary(self) -> str:
        """One line for reports."""
        ref = "reference not measured"
        if self.reference_p99_ms is not None:
            ref = f"reference p99 {self.reference_p99_ms:.1f} ms (idle {self.expected_p99_ms:g}, bound " \
                  f"{self.max_reference_p99_ms:g})"
        others = f"; other processes {self.other_cores:.2f} cores at most (bound {self.max_other_cores:g})" \
            if self.other_cores is not None else "; other processes not measured"
        tries = f"; measured {self.attempts} times" if self.attempts > 1 else ""
        cores = f"; server on core {','.join(map(str, self.server_cores))}, probe on core " \
                f"{','.join(map(str, self.probe_cores))}" if self.server_cores else "; cores not pinned"
        return f"{self.busy or 'machine quiet'} ({ref}{others}{cores}{tries})"


class StageRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    status: StageStatus
    exit_code: int | None = None
    seconds: float = 0.0
    peak_memory_bytes: int | None = None
    log_file: str | None = None  # relative to the result folder
    log_truncated: bool = False
    detail: str = ""
    reason: str = ""  # the exception line its log ends with (harness._reasons), when it failed
    cell: int | None = None  # a notebook's failing cell, counted from 1 in the candidate's notebook
    cell_line: str = ""  # that cell's first source line
    warnings: list[str] = Field(default_factory=list)  # the runner's (e.g. no cell tagged `parameters`)
    machine: MachineCheck | None = None  # a timed service's: was the machine quiet (spec probe.quiet)

    @field_validator("reason", "cell_line")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return one_line(printable(value), REASON_CHARS)

    @field_validator("warnings")
    @classmethod
    def _lines(cls, value: list[str]) -> list[str]:
        return [line for v in value[:5] if (line := one_line(printable(v), 2 * REASON_CHARS))]

    @property
    def cause(self) -> str:
        """Why it failed in one line: its reason (with the notebook cell), else its detail."""
        if self.reason:
            return self.reason + (f" (cell {self.cell})" if self.cell is not None else "")
        return self.detail

    @property
    def failure(self) -> str:
        """How it ended, for notes: status, detail and reason."""
        text = f"{self.status}: {self.detail}".rstrip(": ")
        return f"{text}: {self.cause}" if self.reason else text


class SubmissionResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    key: str  # idempotency key: assignment, version, content hash, grader versions
    assignment: str
    assignment_version: str
    submission: str  # the source as given on the command line
    submission_id: str
    candidate: str
    content_hash: str | None = None
    commit: str | None = None
    status: Status
    total_score: float | None = Field(default=None, ge=0, le=100)
    message: str = ""
    #: why it is not ok, in one line: the failing stage's exception line (`KeyError: 'x' (cell 7)`),
    #: else its detail, else the message; "" when ok
    reason: str = ""
    criteria: list[CriterionResult] = Field(default_factory=list)
    stages: list[StageRecord] = Field(default_factory=list)
    harness_version: str
    backend: str | None = None
    image: str | None = None
    image_id: str | None = None
    grader_versions: dict[str, str] = Field(default_factory=dict)
    started_at: str = Field(default_factory=lambda: now_iso())
    duration_s: float = 0.0
    attempts: int = 1
    artifacts: dict[str, str] = Field(default_factory=dict)  # name -> path relative to the result folder
    review: ManualReview | None = None  # the rubric's marks (harness review); None: nobody reviewed
    previous: PreviousResult | None = None  # the result a re-grade under a new key replaced

    @field_validator("message", "submission", "candidate")
    @classmethod
    def _plain(cls, value: str) -> str:
        # Candidate-controlled text (archive member names, requirement lines, paths) is shown in
        # terminals, tables and MLflow: one line, no control characters, no undecodable bytes.
        return one_line(printable(value), 2000)

    @field_validator("reason")
    @classmethod
    def _reason_line(cls, value: str) -> str:
        return one_line(printable(value), REASON_CHARS)

    @model_validator(mode="after")
    def _default_reason(self) -> SubmissionResult:
        if not self.reason and self.status is not Status.OK and self.message:
            self.reason = one_line(self.message, REASON_CHARS)
        return self

    @property
    def pending_review(self) -> list[str]:
        """Rubric items nobody has scored yet: while any is left, the total is provisional."""
        return [c.name for c in self.criteria if c.ungraded == PENDING]

    def summary_line(self) -> dict:
        """The `--json` line: what a script consuming results needs."""
        from harness.review import summary_fields  # harness.review builds on this module

        return {
            "submission": self.submission,
            "submission_id": self.submission_id,
            "candidate": self.candidate,
            "status": self.status.value,
            "total_score": self.total_score,
            "message": self.message,
            "reason": self.reason,
            "criteria": {c.name: {"score": c.score, "weight": c.weight, "group": c.group,
                                  "metrics": c.metrics, **({"ungraded": c.ungraded} if c.ungraded else {})}
                         for c in self.criteria},
            "key": self.key,
            **summary_fields(self),
        }


def new_result(*, assignment: Assignment, source: str, staged: StagedSubmission | None, key: str,
               status: Status, backend: str | None, grader_versions: dict[str, str], candidate: str = "",
               **fields: Any) -> SubmissionResult:
    """A submission's result with the fields every result carries filled in one way (who, what
    content, which harness, backend and graders), graded or not; `candidate` names one that was
    never staged; `fields` are the rest."""
    from harness import __version__

    return SubmissionResult(
        key=key, assignment=assignment.spec.id, assignment_version=assignment.spec.version,
        submission=printable(source), submission_id=submission_id(staged) if staged else "-",
        candidate=staged.candidate if staged else candidate,
        content_hash=staged.content_hash if staged else None, commit=staged.commit if staged else None,
        status=status, harness_version=__version__, backend=backend, grader_versions=grader_versions,
        **fields)


def submission_id(staged: StagedSubmission) -> str:
    """The result folder's name: the candidate and the first 8 hex digits of the content hash."""
    return f"{staged.candidate}-{staged.content_hash[:8]}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def result_key(*, assignment: str, version: str, candidate: str, content_hash: str,
               grader_versions: dict[str, str], spec_hash: str = "") -> str:
    """Same inputs, same key: a result with this key needs no re-grading.

    The candidate is part of it (two candidates handing in identical code get a run each), and so
    is the hash of the spec and its data (an edited threshold or command re-grades).
    """
    blob = json.dumps([assignment, version, candidate, content_hash, sorted(grader_versions.items()),
                       spec_hash])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def leaderboard(results: list[SubmissionResult]) -> list[SubmissionResult]:
    """Best total first; the ungraded (null score, never zero) last."""
    return sorted(results, key=lambda r: (r.total_score is None, -(r.total_score or 0), r.candidate))


def ranks(ordered: Sequence[SubmissionResult]) -> list[int | None]:
    """The rank of each result of `ordered` (leaderboard order), the harness's one ranking rule:
    competition ranking (1, 2, 2, 4), ties on the total share a rank; an ungraded result (no total)
    has none, never a number after the last."""
    found: list[int | None] = []
    place, rank, previous = 0, 0, None
    for result in ordered:
        if result.total_score is None:
            found.append(None)
            continue
        place += 1
        if result.total_score != previous:
            rank, previous = place, result.total_score
        found.append(rank)
    return found


def total_score(criteria: list[CriterionResult]) -> float:
    """Weighted mean of criterion scores, on 0-100. An ungraded criterion (a rubric item not yet
    reviewed, a timing measured on a busy machine) counts for nothing, neither 0 nor full marks:
    the total is over what was graded, and the result says it is provisional (pending_review)."""
    return weighted_total(criteria, {}) or 0.0


def weighted_total(criteria: list[CriterionResult], scores: Mapping[str, float]) -> float | None:
    """The weighted mean (0-100) over the graded criteria, each at `scores[name]` if given, else at
    its own score; None when they weigh nothing. total_score and the cohort's range share it, so
    the range is over the very criteria the total counts."""
    counted = [c for c in criteria if not c.ungraded]
    weight = sum(c.weight for c in counted)
    if weight <= 0:
        return None
    return round(100.0 * sum(scores.get(c.name, c.score) * c.weight for c in counted) / weight, 2)


def group_scores(criteria: list[CriterionResult]) -> dict[str, float]:
    """Score (0-100) per group, in first-seen order; an ungrouped criterion is its own group. A
    group with an ungraded criterion (CriterionResult.ungraded) has no score: it is left out."""
    groups: dict[str, list[CriterionResult]] = {}
    for c in criteria:
        groups.setdefault(c.group or c.name, []).append(c)
    return {name: total_score(members) for name, members in groups.items()
            if not any(c.ungraded for c in members)}


def write_atomic(path: Path, text: str) -> None:
    """Write `text` so that readers see the old file or the whole new one, even after SIGKILL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_result(result: SubmissionResult, folder: Path) -> Path:
    path = folder / RESULT_FILE
    write_atomic(path, result.model_dump_json(indent=2))
    return path


def stored_results(root: Path) -> list[tuple[Path, SubmissionResult]]:
    """(folder, result) for each readable result under `root` (results/<id>/<version>)."""
    folders = sorted(root.iterdir()) if root.is_dir() else []
    return [(folder, result) for folder in folders
            if not folder.name.startswith(".") and (result := load_result(folder)) is not None]


def newest_per_candidate(stored: list[tuple[Path, SubmissionResult]]) -> list[tuple[Path, SubmissionResult]]:
    """Each candidate's newest result: by start time, then (started_at has whole seconds) by when
    its result file was written."""
    def when(item: tuple[Path, SubmissionResult]) -> tuple[str, int]:
        folder, result = item
        try:
            return result.started_at, (folder / RESULT_FILE).stat().st_mtime_ns
        except OSError:
            return result.started_at, 0

    newest: dict[str, tuple[Path, SubmissionResult]] = {}
    for item in sorted(stored, key=when):
        newest[item[1].candidate] = item
    return list(newest.values())


def load_result(folder: Path) -> SubmissionResult | None:
    """The result in `folder`, or None if absent or unreadable (a torn write is treated as absent)."""
    path = folder / RESULT_FILE
    try:
        return SubmissionResult.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
