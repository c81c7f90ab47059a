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
from typing import Literal

from harness._workdirs import exclusive, owned_name, remove_tree, sweep_leftovers
from harness.backends import BACKENDS
from harness.batch_similarity import REPORT_DIR, BatchSimilarity, check_round, current_results, take_snapshot
from harness.core.text import printable, slug
from harness.errors import ClusterLost, InfraError, IntakeError, sandbox_errors
from harness.intake import StagedSubmission, stage_submission
from harness.options import GradeOptions
from harness.pipeline import grade_submission
from harness.report import render_report
from harness.results import (
    Status,
    SubmissionResult,
    load_result,
    new_result,
    result_key,
    save_result,
    submission_id,
    write_atomic,
)
from harness.review import with_review
from harness.runtime import Runtime, grader_versions
from harness.sinks import ResultSink
from harness.spec import Assignment
from sandbox._cpus import host_locks


@dataclass
class BatchItem:
    source: str
    result: SubmissionResult
    folder: Path | None  # None when nothing was staged (rejected, intake failure)
    skipped: bool = False  # already graded with the same key
    run_id: str | None = None


@dataclass(frozen=True)
class StepStarted:
    """A submission in flight started a step: "intake" (staging), "image" (its requirements), a
    stage of the spec ("train"; a run of one: "predict/first"), "scoring" (the graders)."""

    source: str
    step: str


#: what `on_event` receives, in this order for each source: queued, start, stage (repeated), done
Event = (tuple[Literal["queued", "start"], str] | tuple[Literal["stage"], StepStarted]
         | tuple[Literal["done"], BatchItem])


@dataclass
class BatchReport:
    assignment: str
    items: list[BatchItem] = field(default_factory=list)
    tracking_uri: str | None = None  # set when results were logged to MLflow
    experiment_id: str | None = None  # the MLflow experiment whose leaderboard was published
    similarity: BatchSimilarity = field(default_factory=BatchSimilarity)  # copies flagged in the round
    cpu_plan: str = ""  # how timed services share this host's cores (assignments with probe.quiet)
    warnings: list[str] = field(default_factory=list)  # after-grading steps that failed; results are safe
    cohort_page: Path | None = None  # results/<id>/<version>/index.html, rewritten after the batch

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
        if {Status.INFRA_ERROR, Status.MACHINE_BUSY} & statuses or self.unlogged:
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
    options: GradeOptions
    spec_hash: str
    names: dict[str, str]  # source -> candidate name, where the folder name alone is ambiguous
    cancel: threading.Event = field(default_factory=threading.Event)
    emit: Callable[[Event], None] = lambda event: None


def _ungraded(ctx: _Context, source: str, status: Status, message: str,
              staged: StagedSubmission | None = None, key: str = "-") -> SubmissionResult:
    return ungraded_result(ctx.assignment, source, status, message, staged=staged, key=key,
                           backend=ctx.runtime.backend.name, versions=grader_versions(ctx.runtime.graders))


def ungraded_result(assignment: Assignment, source: str, status: Status, message: str, *,
                    staged: StagedSubmission | None = None, key: str = "-", backend: str | None = None,
                    versions: dict[str, str] | None = None) -> SubmissionResult:
    """A result with no score (infra error, rejected input), for the summary and `--json`."""
    return new_result(assignment=assignment, source=source, staged=staged, key=key, status=status,
                      backend=backend, grader_versions=versions or {}, candidate=slug(_stem(source)),
                      total_score=None, message=message)


def _grade_one(ctx: _Context, source: str) -> BatchItem:
    ctx.emit(("start", source))
    ctx.emit(("stage", StepStarted(source, "intake")))
    staging = ctx.staging / owned_name("s")
    try:
        return _stage_and_grade(ctx, source, staging)
    except IntakeError as exc:
        return BatchItem(source, _ungraded(ctx, source, Status.REJECTED, str(exc)), None)
    except ClusterLost:
        raise  # the batch stops: nothing more can be graded
    except Exception as exc:  # noqa: BLE001 - the harness's fault: this submission is ungraded, the batch goes on
        message = f"internal error: {exc.__class__.__name__}: {printable(str(exc))}"
        return BatchItem(source, _ungraded(ctx, source, Status.INFRA_ERROR, message), None)
    finally:
        remove_tree(staging)


def _stage_and_grade(ctx: _Context, source: str, staging: Path) -> BatchItem:
    staged = stage_submission(source, dest=staging / "submission", ref=ctx.options.ref)
    if source in ctx.names:
        staged = dataclasses.replace(staged, candidate=ctx.names[source])
    spec = ctx.assignment.spec
    key = result_key(assignment=spec.id, version=spec.version, candidate=staged.candidate,
                     content_hash=staged.content_hash, grader_versions=grader_versions(ctx.runtime.graders),
                     spec_hash=ctx.spec_hash)
    folder = ctx.root / submission_id(staged)
    with exclusive(ctx.root / ".locks" / f"{submission_id(staged)}.lock"):  # same content twice, two batches
        existing = load_result(folder)
        if existing and existing.key == key and existing.status.graded and not ctx.options.force:
            take_snapshot(ctx.assignment, staged.path, folder)  # cheap; renews one of older settings
            return BatchItem(source, refresh_rubric(ctx.assignment, existing, folder), folder, skipped=True)
        result = _grade_with_retries(ctx, staged, key, folder, staging, existing)
        if result.status.graded or not (existing and existing.status.graded):
            save_result(result, folder)  # an ungraded retry never hides an earlier graded result
            take_snapshot(ctx.assignment, staged.path, folder)  # compared with the round after the batch
    return BatchItem(source, result, folder)


def _grade_with_retries(ctx: _Context, staged: StagedSubmission, key: str, folder: Path,
                        staging: Path, earlier: SubmissionResult | None) -> SubmissionResult:
    """Grade, retrying transient infrastructure failures (InfraError.transient, OSError) with
    backoff; a failure the same submission would cause again is left ungraded at once."""
    error: InfraError | None = None
    attempts = 0

    def on_step(step: str) -> None:
        ctx.emit(("stage", StepStarted(staged.source, step)))

    for attempt in range(ctx.options.retries + 1):
        if ctx.cancel.is_set():
            break
        attempts = attempt + 1
        try:
            result = grade_submission(assignment=ctx.assignment, staged=staged, runtime=ctx.runtime, key=key,
                                      result_dir=folder, scratch=staging / f"run-{attempt}",
                                      on_step=on_step, earlier=earlier)
            result.attempts = attempts
            return result
        except ClusterLost:
            raise
        except InfraError as exc:
            error = exc
        except OSError as exc:  # a full disk, a vanished folder: ours, not the candidate's
            error = InfraError(f"{exc.__class__.__name__}: {exc}")
        if not error.transient:
            break
        if attempt < ctx.options.retries:
            ctx.cancel.wait(ctx.options.backoff_s * 2**attempt)
    ungraded = f"ungraded after {attempts} attempts" if attempts > 1 else "ungraded"
    result = _ungraded(ctx, staged.source, Status.INFRA_ERROR, f"{ungraded}: {error or 'cancelled'}",
                       staged, key)
    result.attempts = max(1, attempts)
    return result


def refresh_rubric(assignment: Assignment, result: SubmissionResult, folder: Path) -> SubmissionResult:
    """`result` under the spec's current rubric (not part of the key: nothing is re-run), saved
    with its report when that changed its manual criteria."""
    fresh = with_review(result, assignment.spec, result.review)
    if fresh.criteria == result.criteria:
        return result
    write_atomic(folder / "report.md", render_report(fresh, folder=folder))
    save_result(fresh, folder)
    return fresh


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
    # copy detection runs after grading and changes no result: its settings do not re-grade anything;
    # nor does who may see a criterion (harness export), nor the rubric a person scores by hand
    # (its criteria are rebuilt from the stored review: refresh_rubric)
    spec = assignment.spec.model_dump_json(exclude={"similarity": True, "visibility": True, "rubric": True,
                                                    "graders": {"__all__": {"visibility"}}})
    return hashlib.sha256((spec + fingerprint).encode()).hexdigest()[:16]


def _cpu_plan(assignment: Assignment, jobs: int) -> str:
    """The host's CPU plan, said once, when the assignment times a service; with more jobs than
    measurement slots, that the measurements wait for each other (never the user's to remember)."""
    if not any(stage.probe and stage.probe.quiet for stage in assignment.spec.stages):
        return ""
    with sandbox_errors():
        plan = host_locks().plan
    if jobs > len(plan.slots):
        return f"{plan.note}; with --jobs {jobs}, the timed measurements wait for each other"
    return plan.note


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


def _runtime(assignment: Assignment, options: GradeOptions, cache: Path) -> Runtime:
    backend = options.backend or "docker"
    if options.cluster is not None:
        from harness.cluster import cluster_runtime

        return cluster_runtime(assignment, cache=cache, cluster=options.cluster, backend=backend,
                               retries=options.retries, backoff_s=options.backoff_s,
                               allow_weaker_isolation=options.allow_weaker_isolation)
    return BACKENDS.get(backend)(assignment, cache=cache, retries=options.retries,
                                 backoff_s=options.backoff_s,
                                 acknowledge_weaker_isolation=options.allow_weaker_isolation)


def run_batch(*, assignment: Assignment, submissions: Sequence[str], options: GradeOptions,
              sink: ResultSink | None, on_event: Callable[[Event], None] | None) -> BatchReport:
    """Grade `submissions` with `options.jobs` workers (options.backend named). Results are saved
    as they finish; see `harness.api.grade`."""
    cache = options.results_dir / ".cache"
    try:
        runtime = _runtime(assignment, options, cache)
    except InfraError as exc:  # no image, no daemon: every submission is listed, ungraded
        unprepared = _unprepared(assignment, submissions, exc, on_event)
        if sink is not None:  # the round's leaderboard stands as earlier batches left it
            sink.after_batch(assignment, unprepared, options.results_dir)
        return unprepared
    root = options.results_dir / assignment.spec.id / assignment.spec.version
    ctx = _Context(assignment, runtime, root, cache / "staging", options,
                   _spec_hash(assignment, runtime.data.fingerprint), _candidate_names(submissions),
                   emit=on_event or (lambda event: None))
    sweep_leftovers(ctx.staging, root)  # what a killed run left behind
    if runtime.stages is None:
        jobs, plan = options.jobs, _cpu_plan(assignment, options.jobs)
    else:  # a cluster: as many at once as its workers have slots
        jobs, plan = max(options.jobs, runtime.stages.slots), runtime.stages.plan
    report = BatchReport(assignment=assignment.key, cpu_plan=plan,
                         warnings=list(runtime.stages.warnings if runtime.stages else ()))
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="grade")
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
                if sink is not None and item.result.status.graded and item.folder is not None:
                    item.run_id = sink.log(item, replace=options.force and not item.skipped)
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
    report.cohort_page = _write_cohort(assignment, root, report)
    if sink is not None:
        sink.after_batch(assignment, report, options.results_dir)
    return report


def _write_cohort(assignment: Assignment, root: Path, report: BatchReport) -> Path | None:
    """The cohort page and the candidates' pages, rebuilt from the results on disk. Never raises
    (the graded results are saved already; `harness report` rebuilds the pages): a failure is one
    of the report's warnings."""
    if not root.is_dir():  # nothing was taken in
        return None
    from harness.cohort import write_cohort

    runs = {i.result.submission_id: i.run_id for i in report.items if i.run_id}
    try:
        return write_cohort(assignment.spec.id, assignment.spec.version, assignment.spec.title, root,
                            similarity=report.similarity, run_ids=runs)
    except Exception as exc:  # noqa: BLE001 - a page is never worth a batch's results
        report.warnings.append(f"the cohort page was not written ({exc.__class__.__name__}: {exc}); "
                               "`harness report` rebuilds it")
        return None
