"""Grade many submissions: in parallel, resumable, idempotent; one process writes to MLflow."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from harness import __version__
from harness._text import printable, slug
from harness._workdirs import exclusive, owned_name, remove_tree, sweep_leftovers
from harness.backends import BACKENDS
from harness.batch_similarity import REPORT_DIR, BatchSimilarity, check_round, current_results, take_snapshot
from harness.errors import InfraError, IntakeError
from harness.intake import StagedSubmission, stage_submission
from harness.pipeline import Runtime, grade_submission, grader_versions
from harness.results import Status, SubmissionResult, load_result, result_key, save_result
from harness.spec import Assignment

Event = tuple[str, object]  # ("queued" | "start", source) or ("done", BatchItem)


@dataclass
class BatchItem:
    source: str
    result: SubmissionResult
    folder: Path | None  # None when nothing was staged (rejected, intake failure)
    skipped: bool = False  # already graded with the same key
    run_id: str | None = None


@dataclass
class BatchReport:
    assignment: str
    items: list[BatchItem] = field(default_factory=list)
    tracking_uri: str | None = None  # set when results were logged to MLflow
    similarity: BatchSimilarity = field(default_factory=BatchSimilarity)  # copies flagged in the round

    @property
    def unlogged(self) -> int:
        """Graded results MLflow refused: safe on disk, logged by `harness log`."""
        if self.tracking_uri is None:
            return 0
        return sum(1 for i in self.items
                   if i.result.status.graded and i.folder is not None and i.run_id is None)

    @property
    def exit_code(self) -> int:
        """0 if all was graded; InfraError's code if anything is ungraded; IntakeError's if rejected."""
        statuses = {i.result.status for i in self.items}
        if Status.INFRA_ERROR in statuses or self.unlogged:
            return InfraError.exit_code
        if Status.REJECTED in statuses:
            return IntakeError.exit_code
        return 0


@dataclass(frozen=True)
class _Context:
    assignment: Assignment
    runtime: Runtime
    root: Path  # results/<id>/<version>
    staging: Path
    ref: str | None
    force: bool
    retries: int
    backoff_s: float
    spec_hash: str
    names: dict[str, str]  # source -> candidate name, where the folder name alone is ambiguous
    cancel: threading.Event = field(default_factory=threading.Event)
    emit: Callable[[Event], None] = lambda event: None


def submission_id(staged: StagedSubmission) -> str:
    return f"{staged.candidate}-{staged.content_hash[:8]}"


def _ungraded(ctx: _Context, source: str, status: Status, message: str,
              staged: StagedSubmission | None = None, key: str = "-") -> SubmissionResult:
    return ungraded_result(ctx.assignment, source, status, message, staged=staged, key=key,
                           backend=ctx.runtime.backend.name, versions=grader_versions(ctx.runtime.graders))


def ungraded_result(assignment: Assignment, source: str, status: Status, message: str, *,
                    staged: StagedSubmission | None = None, key: str = "-", backend: str | None = None,
                    versions: dict[str, str] | None = None) -> SubmissionResult:
    """A result with no score (infra error, rejected input), for the summary and `--json`."""
    return SubmissionResult(
        key=key, assignment=assignment.spec.id, assignment_version=assignment.spec.version,
        submission=printable(source), submission_id=submission_id(staged) if staged else "-",
        candidate=staged.candidate if staged else slug(_stem(source)),
        content_hash=staged.content_hash if staged else None, status=status, total_score=None,
        message=message, harness_version=__version__, backend=backend, grader_versions=versions or {})


def _grade_one(ctx: _Context, source: str) -> BatchItem:
    ctx.emit(("start", source))
    staging = ctx.staging / owned_name("s")
    try:
        return _stage_and_grade(ctx, source, staging)
    except IntakeError as exc:
        return BatchItem(source, _ungraded(ctx, source, Status.REJECTED, str(exc)), None)
    except Exception as exc:  # noqa: BLE001 - the harness's fault: this submission is ungraded, the batch goes on
        message = f"internal error: {exc.__class__.__name__}: {printable(str(exc))}"
        return BatchItem(source, _ungraded(ctx, source, Status.INFRA_ERROR, message), None)
    finally:
        remove_tree(staging)


def _stage_and_grade(ctx: _Context, source: str, staging: Path) -> BatchItem:
    staged = stage_submission(source, dest=staging / "submission", ref=ctx.ref)
    if source in ctx.names:
        staged = dataclasses.replace(staged, candidate=ctx.names[source])
    spec = ctx.assignment.spec
    key = result_key(assignment=spec.id, version=spec.version, candidate=staged.candidate,
                     content_hash=staged.content_hash, grader_versions=grader_versions(ctx.runtime.graders),
                     spec_hash=ctx.spec_hash)
    folder = ctx.root / submission_id(staged)
    with exclusive(ctx.root / ".locks" / f"{submission_id(staged)}.lock"):  # same content twice, two batches
        existing = load_result(folder)
        if existing and existing.key == key and existing.status.graded and not ctx.force:
            take_snapshot(ctx.assignment, staged.path, folder)  # cheap; renews one of older settings
            return BatchItem(source, existing, folder, skipped=True)
        result = _grade_with_retries(ctx, staged, key, folder, staging)
        if result.status.graded or not (existing and existing.status.graded):
            save_result(result, folder)  # an ungraded retry never hides an earlier graded result
    return BatchItem(source, result, folder)


def _grade_with_retries(ctx: _Context, staged: StagedSubmission, key: str, folder: Path,
                        staging: Path) -> SubmissionResult:
    """Grade, retrying transient infrastructure failures (InfraError.transient, OSError) with
    backoff; a failure the same submission would cause again is left ungraded at once."""
    error: InfraError | None = None
    attempts = 0
    for attempt in range(ctx.retries + 1):
        if ctx.cancel.is_set():
            break
        attempts = attempt + 1
        try:
            result = grade_submission(assignment=ctx.assignment, staged=staged, runtime=ctx.runtime, key=key,
                                      submission_id=submission_id(staged), result_dir=folder,
                                      scratch=staging / f"run-{attempt}")
            result.attempts = attempts
            return result
        except InfraError as exc:
            error = exc
        except OSError as exc:  # a full disk, a vanished folder: ours, not the candidate's
            error = InfraError(f"{exc.__class__.__name__}: {exc}")
        if not error.transient:
            break
        if attempt < ctx.retries:
            ctx.cancel.wait(ctx.backoff_s * 2**attempt)
    ungraded = f"ungraded after {attempts} attempts" if attempts > 1 else "ungraded"
    result = _ungraded(ctx, staged.source, Status.INFRA_ERROR, f"{ungraded}: {error or 'cancelled'}",
                       staged, key)
    result.attempts = max(1, attempts)
    return result


def _stem(source: str) -> str:
    name = Path(source.rstrip("/")).name
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip", ".git", ".ipynb"):
        name = name.removesuffix(suffix)
    return name


def _candidate_names(submissions: Sequence[str]) -> dict[str, str]:
    """Distinct sources sharing a name (alice/submission, bob/submission) get their parent's name too."""
    local = {s: Path(os.path.realpath(s.rstrip("/"))) for s in submissions if "://" not in s}
    paths_by_stem: dict[str, set[Path]] = {}
    for source, path in local.items():
        paths_by_stem.setdefault(_stem(source), set()).add(path)
    return {source: slug(f"{path.parent.name}-{_stem(source)}") for source, path in local.items()
            if len(paths_by_stem[_stem(source)]) > 1}


def _spec_hash(assignment: Assignment, fingerprint: str) -> str:
    # copy detection runs after grading and changes no result: its settings do not re-grade anything
    spec = assignment.spec.model_dump_json(exclude={"similarity"})
    return hashlib.sha256((spec + fingerprint).encode()).hexdigest()[:16]


def _unprepared(assignment: Assignment, submissions: Sequence[str], error: InfraError,
                on_event: Callable[[Event], None] | None) -> BatchReport:
    report = BatchReport(assignment=assignment.key)
    for source in submissions:
        result = ungraded_result(assignment, source, Status.INFRA_ERROR,
                                 f"not graded: the sandbox could not be prepared: {error}")
        report.items.append(BatchItem(source, result, None))
        if on_event:
            on_event(("done", report.items[-1]))
    return report


def run_batch(*, assignment: Assignment, submissions: Sequence[str], results_dir: Path, jobs: int,
              backend: str, force: bool, ref: str | None, retries: int, backoff_s: float,
              log_result: Callable[[BatchItem], str | None] | None,
              on_event: Callable[[Event], None] | None, backend_options: dict | None = None) -> BatchReport:
    """Grade `submissions` with `jobs` workers. Results are saved as they finish; see `harness.api.grade`."""
    cache = results_dir / ".cache"
    make_runtime = BACKENDS.get(backend)
    try:
        runtime = make_runtime(assignment, cache=cache, retries=retries, backoff_s=backoff_s,
                               **(backend_options or {}))
    except InfraError as exc:  # no image, no daemon: every submission is listed, ungraded
        return _unprepared(assignment, submissions, exc, on_event)
    root = results_dir / assignment.spec.id / assignment.spec.version
    ctx = _Context(assignment, runtime, root, cache / "staging", ref, force, retries, backoff_s,
                   _spec_hash(assignment, runtime.data.fingerprint), _candidate_names(submissions),
                   emit=on_event or (lambda event: None))
    sweep_leftovers(ctx.staging, root)  # what a killed run left behind
    report = BatchReport(assignment=assignment.key)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="grade")
    try:
        pending: dict[Future, str] = {}
        for source in submissions:
            pending[pool.submit(_grade_one, ctx, source)] = source
            ctx.emit(("queued", source))
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                pending.pop(future)
                item = future.result()
                if log_result and item.result.status.graded and item.folder is not None:
                    item.run_id = log_result(item)
                report.items.append(item)
                ctx.emit(("done", item))
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
    # the whole round so far: this batch and what earlier batches graded (a re-run of a subset
    # must neither miss a copy nor clear a flag it cannot see)
    report.similarity = check_round(assignment, current_results(root), root / REPORT_DIR)
    return report
