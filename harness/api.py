"""The keyword-only Python API that the CLI is a thin layer over."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness._workdirs import exclusive
from harness.batch import BatchReport, Event, run_batch
from harness.defaults import DEFAULT_EXPORTS, DEFAULT_RESULTS
from harness.errors import InfraError, SpecError, UsageError, sandbox_errors
from harness.options import GradeOptions
from harness.report import render_report
from harness.results import (
    SubmissionResult,
    leaderboard,
    load_result,
    newest_per_candidate,
    save_result,
    stored_results,
    write_atomic,
)
from harness.spec import SPEC_FILE, Assignment, load_assignment

if TYPE_CHECKING:
    from harness.check_run import CheckReport
    from harness.exports import ExportReport, Format
    from harness.runtime import Runtime
    from harness.sinks import ResultSink


def assignments_root() -> Path:
    """$HARNESS_ASSIGNMENTS, else ./assignments, else the assignments shipped beside the package."""
    if env := os.environ.get("HARNESS_ASSIGNMENTS"):
        return Path(env)
    local = Path.cwd() / "assignments"
    return local if local.is_dir() else Path(__file__).resolve().parents[1] / "assignments"


def find_assignment(name: str | Path) -> Assignment:
    """An assignment by name (a folder under the assignments root) or by path to its folder or spec."""
    path = Path(name)
    if path.name == SPEC_FILE:
        path = path.parent
    if not (path / SPEC_FILE).is_file():
        path = assignments_root() / str(name)
    if not (path / SPEC_FILE).is_file():
        names = assignment_names()
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise SpecError(f"no assignment {str(name)!r}: no {SPEC_FILE} there or under {assignments_root()}; "
                        f"{hint}known: {', '.join(names) or 'none'}")
    return load_assignment(path.resolve())


def assignment_names() -> list[str]:
    """The names (folder ids) of the assignments under the root, sorted."""
    return sorted(spec.parent.name for spec in assignments_root().glob(f"*/{SPEC_FILE}"))


def list_assignments() -> list[tuple[Path, Assignment | SpecError]]:
    """Every assignment folder under the root, loaded or with the error that stops it loading."""
    found: list[tuple[Path, Assignment | SpecError]] = []
    for spec in sorted(assignments_root().glob(f"*/{SPEC_FILE}")):
        try:
            found.append((spec.parent, load_assignment(spec.parent)))
        except SpecError as exc:
            found.append((spec.parent, exc))
    return found


def _default_backend() -> str:
    from harness.backends import docker_available

    if docker_available():
        return "docker"
    raise InfraError("no Docker daemon answers: start one (bash scripts/setup.sh) or choose the weaker "
                     "process sandbox explicitly with --backend local --allow-weaker-isolation")


def grade(assignment: str | Path, submissions: Sequence[str], *, options: GradeOptions | None = None,
          on_event: Callable[[Event], None] | None = None, **fields: Any) -> BatchReport:
    """Grade `submissions` (paths, archives, git repos) against `assignment`, as `options` say
    (harness.options.GradeOptions; `fields` override it: `grade(a, subs, jobs=2)`).

    Each result is saved under `results_dir/<id>/<version>/<submission id>/` as it finishes and,
    unless `log_to_mlflow` is False, logged as one MLflow run. Raises SpecError for a bad spec,
    InfraError when the sandbox cannot be prepared, UsageError for a folder of submissions given as
    one (see harness.inbox) or bad options; a submission's own problems are results.
    """
    from harness.inbox import refuse_inboxes

    try:
        opts = replace(options or GradeOptions(), **fields)
    except TypeError as exc:  # an unknown keyword
        raise UsageError(f"grade(): {exc}") from None
    loaded = find_assignment(assignment)
    refuse_inboxes(loaded, list(submissions), typed=str(assignment))
    # on a cluster, the workers have the sandbox (docker unless named): none is needed here
    backend = opts.backend or ("docker" if opts.cluster else _default_backend())
    opts = replace(opts, results_dir=opts.results_dir.resolve(), backend=backend)
    sink: ResultSink | None = None
    if opts.log_to_mlflow:
        from harness.mlflow_sink import default_tracking_uri
        from harness.sinks import MlflowResults

        sink = MlflowResults(opts.tracking_uri or default_tracking_uri(opts.results_dir))
    return run_batch(assignment=loaded, submissions=list(submissions), options=opts, sink=sink,
                     on_event=on_event)


def results(assignment: str | Path, *, results_dir: Path = DEFAULT_RESULTS,
            latest_only: bool = True) -> list[SubmissionResult]:
    """What is already graded for the assignment's current version, best total score first.

    With `latest_only`, a candidate who submitted several versions appears once, with the newest.
    Raises UsageError when `results_dir` is not a folder.
    """
    loaded = find_assignment(assignment)
    _require_results_dir(results_dir)
    found = _stored(loaded, results_dir)
    if latest_only:
        found = newest_per_candidate(found)
    return leaderboard([result for _, result in found])


def report(assignment: str | Path, *, results_dir: Path = DEFAULT_RESULTS) -> Path:
    """Rebuild the cohort page of the assignment's current version (results/<id>/<version>/index.html)
    and each candidate's page from the results on disk, copy detection included; return the cohort
    page's path. Grades nothing. Raises SpecError for an unknown assignment, UsageError when nothing
    of its current version is graded under `results_dir`, InfraError when a page cannot be written."""
    from harness.batch_similarity import REPORT_DIR, check_round, current_results
    from harness.cohort import write_cohort

    loaded = find_assignment(assignment)
    _require_results_dir(results_dir)
    root = results_dir.resolve() / loaded.spec.id / loaded.spec.version
    if not _stored(loaded, results_dir.resolve()):
        raise UsageError(f"nothing to report: no result of {loaded.key} under {results_dir} "
                         "(grade first, or pass --results DIR)")
    try:
        similarity = check_round(loaded, current_results(root), root / REPORT_DIR)
        return write_cohort(loaded.spec.id, loaded.spec.version, loaded.spec.title, root,
                            similarity=similarity)
    except OSError as exc:
        raise InfraError(f"the cohort pages could not be written: {exc}") from None


def export(assignment: str | Path, *, fmt: Format, results_dir: Path = DEFAULT_RESULTS,
           out: Path | str | None = None, released: bool = False) -> ExportReport:
    """Export the newest stored result of each candidate of the assignment's current version
    (grades nothing) into folder `out` (default exports/<id>-<version>): `fmt` "csv"
    (OUT/<id>-<version>.csv; `out="-"` returns the text in the report instead), "gradescope"
    (OUT/<candidate>/results.json) or "feedback" (OUT/<candidate>/feedback.html, candidate-safe;
    `released` adds the criteria shown after the due date or once published). See
    harness.exports. Raises ValueError for an unknown format, or "-" with another format."""
    from harness.exports import export as _export

    loaded = find_assignment(assignment)
    stored = newest_per_candidate(_stored(loaded, results_dir))
    folder = None if out == "-" else Path(out or DEFAULT_EXPORTS / f"{loaded.spec.id}-{loaded.spec.version}")
    return _export(loaded, stored, fmt=fmt, out=folder, released=released, results_dir=results_dir)


def prepare(assignment: str | Path, *, results_dir: Path = DEFAULT_RESULTS,
            backend: str | None = None) -> str:
    """Build (or find cached) everything grading needs: images and data. Returns the image tag."""
    from harness.backends import BACKENDS

    loaded = find_assignment(assignment)
    runtime = BACKENDS.get(backend or _default_backend())(loaded, cache=results_dir.resolve() / ".cache",
                                                            retries=0, backoff_s=0.0,
                                                            acknowledge_weaker_isolation=True)
    runtime.backend.close()
    return runtime.image or "(local backend: no image)"


def export_kit(assignment: str | Path, dest: Path, *, results_dir: Path = DEFAULT_RESULTS) -> list[Path]:
    """Write what a candidate receives (brief, starter kit, public data) into `dest`; see harness.kit."""
    from harness.kit import export_kit as _export

    return _export(find_assignment(assignment), dest, cache_root=results_dir.resolve() / ".cache")


def find_checkable(name: str | Path) -> Assignment:
    """An assignment as find_assignment finds it, or a candidate kit folder (its check.yaml)."""
    from harness.kit import KIT_SPEC, load_kit

    if (Path(name) / KIT_SPEC).is_file():
        return load_kit(Path(name))
    return find_assignment(name)


def check_run(assignment: Assignment, submission: Path, *, backend: str | None = None,
              results_dir: Path = DEFAULT_RESULTS, allow_weaker_isolation: bool = False,
              retries: int = GradeOptions.retries) -> CheckReport:
    """`harness check --run`: the submission's stages on the public data in the grading sandbox,
    and the checklist (harness.check_run). Images are cached under `results_dir`/.cache; no result
    is written and nothing is logged."""
    from harness.backends import BACKENDS
    from harness.check_run import run_check

    factory = BACKENDS.get(backend or _default_backend())

    def make_runtime(loaded: Assignment) -> Runtime:
        return factory(loaded, cache=results_dir.resolve() / ".cache", retries=retries,
                       backoff_s=GradeOptions.backoff_s,
                       acknowledge_weaker_isolation=allow_weaker_isolation)

    return run_check(assignment, submission, make_runtime=make_runtime)


def clean(*, images: bool = False) -> tuple[int, int]:
    """Remove stage containers whose harness process is gone (after kill -9) and, with `images`,
    the candidates' requirement images (rebuilt on demand). Returns (containers, images) removed."""
    import docker.errors

    from sandbox.docker import connect, reap_orphans

    with sandbox_errors():
        client = connect()
    removed_images = 0
    try:
        with sandbox_errors():
            containers = reap_orphans(client)
        for image in client.images.list(filters={"reference": "mlgrade/*-req"}) if images else []:
            try:
                client.images.remove(image.id, force=False)  # type: ignore[arg-type]  # stubs: optional id
                removed_images += 1
            except docker.errors.APIError:
                pass  # in use by a running stage
        return containers, removed_images
    finally:
        client.close()


def log_results(assignment: str | Path, *, results_dir: Path = DEFAULT_RESULTS,
                tracking_uri: str | None = None) -> int:
    """Feed MLflow from the JSON results on disk (idempotent). Returns how many results were logged.
    Raises UsageError, before any store is opened (or created), when `results_dir` holds no result
    of the assignment's current version."""
    from harness.mlflow_sink import MlflowSink, default_tracking_uri
    from harness.sinks import publish_cohort

    loaded = find_assignment(assignment)
    _require_results_dir(results_dir)
    stored = _stored(loaded, results_dir.resolve())
    if not stored:
        raise UsageError(f"nothing to log: no result of {loaded.key} under {results_dir} "
                         "(grade first, or pass --results DIR)")
    sink = MlflowSink(tracking_uri=tracking_uri or default_tracking_uri(results_dir.resolve()))
    logged: dict[str, str] = {}
    for folder, result in stored:
        if result.status.graded:  # a reviewed result's run is brought up to date (review after grading)
            logged[result.key] = sink.update(result, folder) if result.review else sink.log(result, folder)
    from harness.cohort import record_runs

    record_runs(results_dir.resolve() / loaded.spec.id / loaded.spec.version,
                {r.submission_id: logged[r.key] for _, r in stored if r.key in logged})
    report(loaded.dir, results_dir=results_dir)  # the cohort page, with every run's id, for the parent run
    publish_cohort(sink, loaded, results_dir.resolve(), logged)
    return len(logged)


def _require_results_dir(results_dir: Path) -> None:
    if not results_dir.is_dir():
        raise UsageError(f"no results folder {results_dir}: nothing was graded there (pass --results DIR, "
                         "the folder `harness grade` wrote to)")


def _stored(assignment: Assignment, results_dir: Path) -> list[tuple[Path, SubmissionResult]]:
    """(folder, result) for each result saved for the assignment's current version."""
    return stored_results(results_dir / assignment.spec.id / assignment.spec.version)


@dataclass
class ReviewOutcome:
    """What `review` stored: the result (with its new total), where, and its MLflow run."""

    result: SubmissionResult
    folder: Path
    run_id: str | None = None
    warning: str = ""  # pages or MLflow failed: the review is safe in result.json (`harness report`, `log`)


def review(assignment: str | Path, candidate: str, *, results_dir: Path = DEFAULT_RESULTS,
           scores: Sequence[str] = (), comments: Sequence[str] = (), file: Path | None = None,
           reviewer: str | None = None, tracking_uri: str | None = None,
           log_to_mlflow: bool = True) -> ReviewOutcome:
    """Record a reviewer's rubric marks (`NAME=VALUE`, `NAME=TEXT`, or a YAML `file`) in the
    candidate's newest result (harness.review), re-render its report, and update its MLflow run.
    Raises UsageError (unknown candidate or rubric item, a score out of range, nothing graded)."""
    from harness.review import read_marks, review_result

    loaded = find_assignment(assignment)
    _require_results_dir(results_dir)
    stored = {r.candidate: (f, r) for f, r in newest_per_candidate(_stored(loaded, results_dir.resolve()))}
    by_id = {r.submission_id: (f, r) for f, r in stored.values()}
    if candidate not in stored and candidate not in by_id:
        known = ", ".join(sorted(stored)[:10]) or "none"
        raise UsageError(f"no result of {candidate!r} for {loaded.key} under {results_dir}; "
                         f"candidates: {known}")
    folder, _ = stored.get(candidate) or by_id[candidate]
    named, given, said = read_marks(loaded.spec, list(scores), list(comments), file)
    who = reviewer or named or _user()
    # the batch's lock on this submission: a concurrent (--force) re-grade cannot write between our
    # read and our write, and we mark the result as it is now, not as it was listed
    with exclusive(folder.parent / ".locks" / f"{folder.name}.lock"):
        result = load_result(folder)
        if result is None or not result.status.graded:
            state = result.status.value if result else "unreadable"
            raise UsageError(f"{folder.name} is {state} (ungraded): grade it before reviewing")
        reviewed = review_result(loaded.spec, result, reviewer=who, scores=given, comments=said)
        write_atomic(folder / "report.md", render_report(reviewed, folder=folder))
        save_result(reviewed, folder)
    outcome = ReviewOutcome(reviewed, folder)
    problems: list[str] = []
    try:  # the cohort page and the candidate's page show the new total (and go to the parent run)
        report(loaded.dir, results_dir=results_dir)
    except InfraError as exc:
        problems.append(f"{exc}; the review is saved, `harness report` rebuilds them")
    if log_to_mlflow:
        from harness.mlflow_sink import MlflowSink, default_tracking_uri
        from harness.sinks import publish_cohort

        try:
            sink = MlflowSink(tracking_uri=tracking_uri or default_tracking_uri(results_dir.resolve()))
            outcome.run_id = sink.update(reviewed, folder)
            publish_cohort(sink, loaded, results_dir.resolve(), {reviewed.key: outcome.run_id})  # new total
        except InfraError as exc:
            problems.append(f"{exc}; the review is saved, `harness log` logs it")
    outcome.warning = "; ".join(problems)
    return outcome


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        return "unknown"
