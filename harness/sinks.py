"""Where graded results go besides result.json: a sink the batch hands each graded item to, and
tells when the batch is done. MLflow is the built-in one (`MlflowResults`); the JSON results on
disk stay the record, so a sink that refuses a result never loses it (`harness log` re-feeds).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness.errors import InfraError
from harness.results import SubmissionResult, load_result, newest_per_candidate, stored_results
from harness.spec import Assignment

if TYPE_CHECKING:
    from harness.batch import BatchItem, BatchReport
    from harness.mlflow_sink import MlflowSink


class ResultSink(Protocol):
    uri: str  # where it writes, as the operator is told

    def log(self, item: BatchItem, *, replace: bool) -> str | None:
        """Record one graded item; its id there (an MLflow run id), or None where the sink refused
        it (the reason appended to the item's message). Never raises for a refusal."""

    def after_batch(self, assignment: Assignment, report: BatchReport, results_dir: Path) -> None:
        """The round's updates once the batch is done (leaderboard, copy flags); what fails goes
        to `report.warnings` or the similarity problems, never an exception."""


class MlflowResults:
    """The MLflow sink: one run per graded submission, the copy flags on both runs of a pair, and
    the experiment's leaderboard view and parent run over every candidate's newest result."""

    def __init__(self, tracking_uri: str) -> None:
        from harness.mlflow_sink import MlflowSink

        self.uri = tracking_uri
        self.mlflow = MlflowSink(tracking_uri=tracking_uri)
        #: set when the store stopped answering: the rest of the batch does not wait on it again
        self.unreachable = ""

    def log(self, item: BatchItem, *, replace: bool) -> str | None:
        assert item.folder is not None  # the batch hands on only what it saved
        if self.unreachable:
            item.result.message = f"{item.result.message} [not logged to MLflow: {self.unreachable}]"
            return None
        try:
            return self.mlflow.log(item.result, item.folder, replace=replace)
        except InfraError as exc:  # the JSON result is safe; a re-run logs it
            item.result.message = f"{item.result.message} [not logged to MLflow: {exc}]"
            self._check(exc)
            return None

    def _check(self, failure: InfraError) -> None:
        if not self.unreachable and not self.mlflow.ping():
            self.unreachable = f"{failure}; not tried again in this batch (`harness log` logs it later)"

    def after_batch(self, assignment: Assignment, report: BatchReport, results_dir: Path) -> None:
        report.tracking_uri = self.uri
        if self.unreachable:
            report.warnings.append(f"MLflow stopped answering: {self.unreachable}; the copy flags and the "
                                   "leaderboard there were not updated")
            return
        tag_similarity(self.mlflow, report)
        known = {i.result.key: i.run_id for i in report.items if i.run_id}
        try:
            report.experiment_id = publish_cohort(self.mlflow, assignment, results_dir, known)
        except InfraError as exc:  # the runs are logged; the next grade or `harness log` publishes
            report.warnings.append(f"the MLflow leaderboard was not updated: {exc}")


def publish_cohort(sink: MlflowSink, assignment: Assignment, results_dir: Path,
                   known: dict[str, str]) -> str | None:
    """The experiment's leaderboard view and parent run, over every candidate's newest graded result;
    the experiment's id (None when nothing is graded). `known`: result key -> run id already found."""
    root = results_dir / assignment.spec.id / assignment.spec.version
    graded: list[tuple[SubmissionResult, str]] = []
    for _, result in newest_per_candidate(stored_results(root)):
        run_id = known.get(result.key) or (sink.find_run(result) if result.status.graded else None)
        if run_id is not None:
            graded.append((result, run_id))
    if not graded:
        return None
    from harness.cohort import INDEX_FILE, record_runs

    record_runs(root, {result.submission_id: run_id for result, run_id in graded})  # the page's links
    return sink.publish_cohort(graded, files=[root / INDEX_FILE])


def tag_similarity(sink: MlflowSink, report: BatchReport) -> None:
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
            if not sink.ping():  # gone: the others would wait on it too
                found.problems.append("the rest were not tagged: MLflow stopped answering")
                return


def _run_of(sink: MlflowSink, folder: Path) -> str | None:
    result = load_result(folder)
    return sink.find_run(result) if result is not None else None
