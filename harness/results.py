"""The result of grading one submission: the JSON on disk that everything else is fed from."""

from __future__ import annotations

import enum
import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from graders import CriterionResult
from harness._text import one_line, printable

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
    REJECTED = "rejected"  # could not be taken in (corrupt/unsafe archive, missing path): ungraded

    @property
    def graded(self) -> bool:
        return self not in (Status.INFRA_ERROR, Status.REJECTED)


class StageRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    status: str
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

    def summary_line(self) -> dict:
        """The `--json` line: what a script consuming results needs."""
        return {
            "submission": self.submission,
            "submission_id": self.submission_id,
            "candidate": self.candidate,
            "status": self.status.value,
            "total_score": self.total_score,
            "message": self.message,
            "reason": self.reason,
            "criteria": {c.name: {"score": c.score, "weight": c.weight, "group": c.group,
                                  "metrics": c.metrics} for c in self.criteria},
            "key": self.key,
        }


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


def total_score(criteria: list[CriterionResult]) -> float:
    """Weighted mean of criterion scores, on 0-100."""
    weight = sum(c.weight for c in criteria)
    if weight <= 0:
        return 0.0
    return round(100.0 * sum(c.score * c.weight for c in criteria) / weight, 2)


def group_scores(criteria: list[CriterionResult]) -> dict[str, float]:
    """Score (0-100) per group, in first-seen order; an ungrouped criterion is its own group."""
    groups: dict[str, list[CriterionResult]] = {}
    for c in criteria:
        groups.setdefault(c.group or c.name, []).append(c)
    return {name: total_score(members) for name, members in groups.items()}


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
