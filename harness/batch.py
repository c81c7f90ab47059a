"""Grade many submissions: in parallel, resumable, idempotent; one process writes to MLflow."""

from __future__ import annotations

import fcntl
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness import __version__
from harness.backends import BACKENDS
from harness.errors import HarnessError, InfraError, IntakeError
from harness.intake import StagedSubmission, stage_submission
from harness.pipeline import Runtime, grade_submission, grader_versions
from harness.results import Status, SubmissionResult, load_result, result_key, save_result
from harness.spec import Assignment

Event = tuple[str, object]  # ("start", source) | ("done", BatchItem) | ("logged", BatchItem)


@dataclass
class BatchItem:
    source: str
    result: SubmissionResult
    folder: Path | None  # None for rejected submissions (nothing was staged)
    skipped: bool = False  # already graded with the same key
    run_id: str | None = None


@dataclass
class BatchReport:
    assignment: str
    items: list[BatchItem] = field(default_factory=list)
    tracking_uri: str | None = None

    @property
    def exit_code(self) -> int:
        """0 if all was graded; InfraError's code if anything is ungraded; IntakeError's if rejected."""
        statuses = {i.result.status for i in self.items}
        if Status.INFRA_ERROR in statuses:
            return InfraError.exit_code
        if Status.REJECTED in statuses:
            return IntakeError.exit_code
        return 0


@dataclass(frozen=True)
class _Context:
    assignment: Assignment
    runtime: Runtime
    root: Path  # results/<id>/<version>
    cache: Path
    ref: str | None
    force: bool
    retries: int
    backoff_s: float
    cancel: threading.Event


def _ungraded(ctx: _Context, source: str, status: Status, message: str,
              staged: StagedSubmission | None = None, key: str = "") -> SubmissionResult:
    spec = ctx.assignment.spec
    return SubmissionResult(
        key=key or "-", assignment=spec.id, assignment_version=spec.version, submission=source,
        submission_id=(f"{staged.candidate}-{staged.content_hash[:8]}" if staged else "-"),
        candidate=staged.candidate if staged else Path(source.rstrip("/")).name or source,
        content_hash=staged.content_hash if staged else None, status=status, total_score=None,
        message=message, harness_version=__version__, backend=ctx.runtime.backend.name,
        grader_versions=grader_versions(ctx.runtime.graders))


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """An advisory lock held by one thread or process at a time (flock on separate opens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _grade_one(ctx: _Context, source: str) -> BatchItem:
    staging = ctx.cache / "staging" / uuid.uuid4().hex
    try:
        try:
            staged = stage_submission(source, dest=staging / "submission", ref=ctx.ref)
        except IntakeError as exc:
            return BatchItem(source, _ungraded(ctx, source, Status.REJECTED, str(exc)), None)
        except (HarnessError, OSError) as exc:  # full disk, git missing...: ours, not the candidate's
            failed = _ungraded(ctx, source, Status.INFRA_ERROR, f"intake failed: {exc}")
            return BatchItem(source, failed, None)
        spec = ctx.assignment.spec
        submission_id = f"{staged.candidate}-{staged.content_hash[:8]}"
        key = result_key(assignment=spec.id, version=spec.version, candidate=staged.candidate,
                         content_hash=staged.content_hash,
                         grader_versions=grader_versions(ctx.runtime.graders))
        folder = ctx.root / submission_id
        with _exclusive(ctx.root / ".locks" / f"{submission_id}.lock"):  # same content twice, or two batches
            existing = load_result(folder)
            if existing and existing.key == key and existing.status.graded and not ctx.force:
                return BatchItem(source, existing, folder, skipped=True)
            result = _grade_with_retries(ctx, staged, key, submission_id, folder, staging)
        return BatchItem(source, result, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _grade_with_retries(ctx: _Context, staged: StagedSubmission, key: str, submission_id: str,
                        folder: Path, staging: Path) -> SubmissionResult:
    error: InfraError | None = None
    for attempt in range(ctx.retries + 1):
        if ctx.cancel.is_set():
            break
        try:
            result = grade_submission(assignment=ctx.assignment, staged=staged, runtime=ctx.runtime, key=key,
                                      submission_id=submission_id, result_dir=folder,
                                      scratch=staging / f"run-{attempt}")
            result.attempts = attempt + 1
            save_result(result, folder)
            return result
        except InfraError as exc:  # OSError (disk full...) is caught as infra too
            error = exc
        except OSError as exc:
            error = InfraError(f"{exc.__class__.__name__}: {exc}")
        if attempt < ctx.retries:
            ctx.cancel.wait(ctx.backoff_s * 2**attempt)
    result = _ungraded(ctx, staged.source, Status.INFRA_ERROR,
                       f"ungraded after {ctx.retries + 1} attempts: {error or 'cancelled'}", staged, key)
    save_result(result, folder)  # a record for `harness results`; not graded, so a re-run retries it
    return result


def run_batch(*, assignment: Assignment, submissions: Sequence[str], results_dir: Path, jobs: int,
              backend: str, force: bool, ref: str | None, retries: int, backoff_s: float,
              log_result: Callable[[BatchItem], str | None] | None,
              on_event: Callable[[Event], None] | None, backend_options: dict | None = None) -> BatchReport:
    """Grade `submissions` with `jobs` workers. Results are saved as they finish; see `harness.api.grade`."""
    cache = results_dir / ".cache"
    make_runtime = BACKENDS.get(backend)
    runtime = make_runtime(assignment, cache=cache, retries=retries, backoff_s=backoff_s,
                           **(backend_options or {}))
    ctx = _Context(assignment, runtime, results_dir / assignment.spec.id / assignment.spec.version, cache,
                   ref, force, retries, backoff_s, threading.Event())
    report = BatchReport(assignment=assignment.key)
    emit = on_event or (lambda event: None)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="grade")
    try:
        pending: dict[Future, str] = {}
        for source in submissions:
            pending[pool.submit(_grade_one, ctx, source)] = source
            emit(("queued", source))
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                pending.pop(future)
                item = future.result()
                if log_result and item.result.status.graded and item.folder is not None:
                    item.run_id = log_result(item)
                report.items.append(item)
                emit(("done", item))
    except BaseException:
        ctx.cancel.set()  # Ctrl-C or a harness bug: stop workers, kill and remove containers
        pool.shutdown(wait=False, cancel_futures=True)
        runtime.backend.cancel_all()
        raise
    finally:
        pool.shutdown(wait=True)
        runtime.backend.close()
    order = {s: i for i, s in enumerate(submissions)}
    report.items.sort(key=lambda i: order.get(i.source, 0))
    return report
