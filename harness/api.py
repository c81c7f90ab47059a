"""The keyword-only Python API that the CLI is a thin layer over."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.batch import BatchItem, BatchReport, Event, run_batch
from harness.errors import InfraError, SpecError
from harness.results import SubmissionResult, leaderboard, load_result, newest_per_candidate, stored_results
from harness.spec import SPEC_FILE, Assignment, load_assignment

if TYPE_CHECKING:
    from harness.mlflow_sink import MlflowSink

DEFAULT_RESULTS = Path("results")


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
        known = ", ".join(a.name for a in sorted(assignments_root().glob(f"*/{SPEC_FILE}"))) or "none"
        raise SpecError(f"no assignment {str(name)!r}: no {SPEC_FILE} there or under {assignments_root()}; "
                        f"known: {known}")
    return load_assignment(path.resolve())


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


def grade(assignment: str | Path, submissions: Sequence[str], *, results_dir: Path = DEFAULT_RESULTS,
          jobs: int = 1, backend: str | None = None, force: bool = False, ref: str | None = None,
          tracking_uri: str | None = None, log_to_mlflow: bool = True, retries: int = 2,
          backoff_s: float = 2.0, allow_weaker_isolation: bool = False,
          on_event: Callable[[Event], None] | None = None) -> BatchReport:
    """Grade `submissions` (paths, archives, git repos) against `assignment`.

    Each result is saved under `results_dir/<id>/<version>/<submission id>/` as it finishes and,
    unless `log_to_mlflow` is False, logged as one MLflow run. Raises SpecError for a bad spec,
    InfraError when the sandbox cannot be prepared; a submission's own problems are results.
    """
    loaded = find_assignment(assignment)
    results_dir = results_dir.resolve()
    log_result, uri, sink = None, None, None
    if log_to_mlflow:
        from harness.mlflow_sink import MlflowSink, default_tracking_uri

        uri = tracking_uri or default_tracking_uri(results_dir)
        sink = MlflowSink(tracking_uri=uri)

        def log_result(item: BatchItem) -> str | None:
            try:
                return sink.log(item.result, item.folder, replace=force and not item.skipped)
            except InfraError as exc:  # the JSON result is safe; a re-run logs it
                item.result.message = f"{item.result.message} [not logged to MLflow: {exc}]"
                return None

    report = run_batch(assignment=loaded, submissions=list(submissions), results_dir=results_dir, jobs=jobs,
                       backend=backend or _default_backend(), force=force, ref=ref, retries=retries,
                       backoff_s=backoff_s, log_result=log_result, on_event=on_event,
                       backend_options={"acknowledge_weaker_isolation": allow_weaker_isolation})
    report.tracking_uri = uri
    if sink is not None:
        _tag_similarity(sink, report)
    return report


def _tag_similarity(sink: MlflowSink, report: BatchReport) -> None:
    """Flag both runs of every similar pair, and clear the flag of every other compared run."""
    found = report.similarity
    if not found.checked:  # disabled or failed: leave the tags as the last comparison set them
        return
    run_ids = {i.result.submission_id: i.run_id for i in report.items if i.run_id}
    for name, folder in found.compared.items():
        try:
            run_id = run_ids.get(name) or _run_of(sink, folder)
            if run_id is None:
                continue
            pages = [page for (a, b), page in found.pages.items() if name in (a, b)]
            sink.tag_similarity(run_id, found.partners(name), pages)
        except InfraError as exc:  # the results and the HTML report are safe on disk
            found.problems.append(f"{name}: not tagged in MLflow: {exc}")


def _run_of(sink: MlflowSink, folder: Path) -> str | None:
    result = load_result(folder)
    return sink.find_run(result) if result is not None else None


def results(assignment: str | Path, *, results_dir: Path = DEFAULT_RESULTS,
            latest_only: bool = True) -> list[SubmissionResult]:
    """What is already graded for the assignment's current version, best total score first.

    With `latest_only`, a candidate who submitted several versions appears once, with the newest.
    """
    found = _stored(find_assignment(assignment), results_dir)
    if latest_only:
        found = newest_per_candidate(found)
    return leaderboard([result for _, result in found])


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


def clean(*, images: bool = False) -> tuple[int, int]:
    """Remove stage containers whose harness process is gone (after kill -9) and, with `images`,
    the candidates' requirement images (rebuilt on demand). Returns (containers, images) removed."""
    import docker.errors

    from sandbox.docker import connect, reap_orphans

    client = connect()
    removed_images = 0
    try:
        containers = reap_orphans(client)
        for image in client.images.list(filters={"reference": "mlgrade/*-req"}) if images else []:
            try:
                client.images.remove(image.id, force=False)
                removed_images += 1
            except docker.errors.APIError:
                pass  # in use by a running stage
        return containers, removed_images
    finally:
        client.close()


def log_results(assignment: str | Path, *, results_dir: Path = DEFAULT_RESULTS,
                tracking_uri: str | None = None) -> int:
    """Feed MLflow from the JSON results on disk (idempotent). Returns how many results were logged."""
    from harness.mlflow_sink import MlflowSink, default_tracking_uri

    sink = MlflowSink(tracking_uri=tracking_uri or default_tracking_uri(results_dir.resolve()))
    logged = 0
    for folder, result in _stored(find_assignment(assignment), results_dir.resolve()):
        if result.status.graded:
            sink.log(result, folder)
            logged += 1
    return logged


def _stored(assignment: Assignment, results_dir: Path) -> list[tuple[Path, SubmissionResult]]:
    """(folder, result) for each result saved for the assignment's current version."""
    return stored_results(results_dir / assignment.spec.id / assignment.spec.version)
