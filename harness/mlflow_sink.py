"""Log a graded SubmissionResult to MLflow as one run. The result folder stays the source of truth.

One experiment per assignment version (`<assignment>@<version>`), one run per submission
(run name = candidate), identified by the tag `mlgrade.result_key`, so logging is idempotent:
a finished run with the key is reused, an unfinished one (a process killed mid-log) is deleted
and logged afresh. The run is marked FINISHED only after everything is logged.

mlflow is imported only when a sink is created (it costs about a second); every MLflow call
goes through an explicit `MlflowClient(tracking_uri=...)`, never the global fluent state.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from harness import mlflow_fields as fields
from harness import mlflow_view as view
from harness.core.text import one_line
from harness.errors import InfraError
from harness.mlflow_fields import NOTE_TAG, RESULT_KEY_TAG, SUBMISSION_TAG, VALUE_CHARS
from harness.mlflow_relocate import relocate_artifacts
from harness.results import RESULT_FILE, SubmissionResult

ARTIFACTS_DIR = "mlartifacts"  # next to a sqlite database, so nothing lands in the cwd
UI_HOST, UI_PORT = "127.0.0.1", 5000
ARTIFACT_FILES = (RESULT_FILE, "report.md")
ARTIFACT_DIRS = ("logs", "outputs", "artifacts", "review")

COHORT_TAG = "mlgrade.cohort"
PARENT_TAG = "mlflow.parentRunId"  # the UI nests a run under this one
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # result keys are hex; anything else is not quoted in filters
_MAX_PARAMS, _MAX_ENTITIES = 100, 1000  # MLflow's log_batch limits
#: MLflow's HTTP client retries 7 times with doubling backoff and a 120 s timeout (minutes per call
#: on a server that went away); a batch logs dozens of calls: a few seconds, then it says so
#: (harness.sinks.MlflowResults stops calling). Set in the environment, these are the user's.
_UNANSWERED = re.compile(r"Max retries exceeded.*?Caused by (\w+)", re.DOTALL)
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


def default_tracking_uri(results_root: Path) -> str:
    """`MLFLOW_TRACKING_URI` if set, else a sqlite database in `results_root`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{results_root.resolve() / 'mlflow.db'}"


def artifact_root(tracking_uri: str) -> Path | None:
    """Where runs' artifacts go for a sqlite store (`<db folder>/mlartifacts`); None for other stores."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not database or database == ":memory:":
        return None
    return Path(database).resolve().parent / ARTIFACTS_DIR


def ui_command(tracking_uri: str, *, port: int = UI_PORT) -> str:
    """How a reviewer browses the runs: an `mlflow ui` command, or the server's address to open."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {_redact(tracking_uri)} in a browser"
    command = ["mlflow", "ui", "--backend-store-uri", tracking_uri]
    root = artifact_root(tracking_uri)
    if root is not None:  # where experiments created from the UI keep their artifacts
        command += ["--artifacts-destination", str(root)]
    command += ["--host", UI_HOST, "--port", str(port)]
    return shlex.join(command)


def ui_base(tracking_uri: str, *, port: int = UI_PORT) -> str:
    """The address of the UI for `tracking_uri`: the server itself, or the local `mlflow ui`."""
    if tracking_uri.startswith(("http://", "https://")):
        return _redact(tracking_uri).rstrip("/")
    return f"http://{UI_HOST}:{port}"


def leaderboard_urls(tracking_uri: str, *, port: int = UI_PORT) -> list[tuple[str, str]]:
    """(experiment name, URL of its leaderboard view) for each experiment the harness published.
    A sqlite store that does not exist yet is not created. Raises InfraError."""
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        return []
    found = MlflowSink(tracking_uri=tracking_uri).published_experiments()
    base = ui_base(tracking_uri, port=port)
    return sorted((e.name, view.view_url(base, e.experiment_id)) for e in found)


def experiment_name(result: SubmissionResult) -> str:
    return f"{result.assignment}@{result.assignment_version}"


class MlflowSink:
    """Logs results to the MLflow tracking store at `tracking_uri`.

    `artifacts` overrides where new experiments keep artifacts (default: `artifact_root(tracking_uri)`;
    for an http server, the server decides). Raises InfraError when MLflow cannot be reached.
    """

    def __init__(self, *, tracking_uri: str, artifacts: Path | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.artifacts = artifacts.resolve() if artifacts else artifact_root(tracking_uri)
        own = artifact_root(tracking_uri)
        if own is not None:  # a results folder copied or moved: its runs' artifacts are here now
            relocate_artifacts(own.parent / Path(tracking_uri.split("?", 1)[0]).name, own)
        for name, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        # a server's client prints "View run ... at: URL" to stdout, where `--json` writes its lines
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        with self._guard("client setup"):
            from mlflow import MlflowClient

            for noisy in ("mlflow", "alembic"):  # schema-migration chatter on a new sqlite store;
                logging.getLogger(noisy).setLevel(logging.WARNING)  # after the import, which sets INFO

            self._client = MlflowClient(tracking_uri=tracking_uri)

    def ping(self) -> bool:
        """Whether the store answers a cheap query (after a failure: gone, or only that call). A
        server's /health, once, within 5 s: not through MLflow's client and its retries."""
        parts = urlsplit(self.tracking_uri)
        if parts.scheme in ("http", "https") and not parts.username:
            import urllib.request

            try:
                health = urlunsplit((*parts[:2], parts.path.rstrip("/") + "/health", "", ""))
                with urllib.request.urlopen(health, timeout=5) as answer:  # noqa: S310 - http(s) only, above
                    return answer.status == 200
            except OSError:
                return False
        try:
            with self._guard("check"):
                self._client.search_experiments(max_results=1)
            return True
        except InfraError:
            return False

    def find_run(self, result: SubmissionResult) -> str | None:
        """The id of the FINISHED run logged for `result.key`, or None. Raises InfraError."""
        _check_key(result.key)
        with self._guard("search"):
            experiment = self._client.get_experiment_by_name(experiment_name(result))
            if experiment is None or experiment.lifecycle_stage != "active":
                return None
            runs = self._runs_with_key(experiment.experiment_id, result.key)
        return min((r.info.run_id for r in runs if r.info.status == "FINISHED"), default=None)

    def log(self, result: SubmissionResult, folder: Path, *, replace: bool = False) -> str:
        """Log `result` (and the files of its `folder`) once; return the run id.

        `replace` deletes a finished run with the same key first (for a forced re-grade).
        Raises ValueError for an ungraded result (infra error, rejected), InfraError when MLflow fails.
        """
        if not result.status.graded:
            raise ValueError(f"{result.submission_id}: {result.status.value} is ungraded; not logged")
        _check_key(result.key)
        with self._guard("logging"):
            experiment_id = self._experiment(result)
            runs = self._runs_with_key(experiment_id, result.key)
            finished = [r for r in runs if r.info.status == "FINISHED"]
            keep = min(finished, key=lambda r: r.info.run_id) if finished and not replace else None
            for run in runs:  # unfinished runs (killed mid-log) and duplicates from a race
                if run is not keep:
                    self._client.delete_run(run.info.run_id)
            if keep is not None:
                return keep.info.run_id
            run_id = self._log_run(experiment_id, result, folder)
            self._retire_superseded(experiment_id, result, run_id)
            return run_id

    def update(self, result: SubmissionResult, folder: Path) -> str:
        """Bring the run of `result.key` up to date after a manual review: its metrics (stamped
        with the review's time, so they supersede the graded ones and logging the same review
        twice adds nothing new), tags, description, result.json and report.md. A result never
        logged is logged. Returns the run id. Raises InfraError when MLflow fails."""
        run_id = self.find_run(result)
        if run_id is None:
            return self.log(result, folder)
        from mlflow.entities import Metric

        at = _epoch_ms(result.review.at) if result.review else _epoch_ms(result.started_at)
        with self._guard("updating"):
            metrics = [Metric(k, v, at, 0) for k, v in fields.metrics(result).items()]
            for batch, _ in _batches(metrics, []):
                self._client.log_batch(run_id, metrics=batch, synchronous=True)
            for key, value in fields.tags(result, folder).items():
                self._client.set_tag(run_id, key, value)
            for name in ARTIFACT_FILES:
                path = folder / name
                if path.is_file() and not path.is_symlink():
                    self._client.log_artifact(run_id, str(path))
        return run_id

    def tag_similarity(self, run_id: str, partners: list[tuple[str, float]], pages: list[Path]) -> None:
        """Record on a run whom the batch's copy detection paired it with (tags `similarity.*`),
        and attach the side-by-side pages under `similarity/`. An empty list clears the flag of
        an earlier batch. Raises InfraError when MLflow fails."""
        listed = "; ".join(f"{name} ({score:.2f})" for name, score in partners)
        tags = {"similarity.flagged": "true" if partners else "false",
                "similarity.max": f"{max((s for _, s in partners), default=0.0):.3f}",
                "similarity.partners": one_line(listed, VALUE_CHARS)}
        with self._guard("tagging"):
            for key, value in tags.items():
                self._client.set_tag(run_id, key, value)
            for page in pages:
                self._client.log_artifact(run_id, str(page), artifact_path="similarity")

    def published_experiments(self) -> list[Any]:
        """The experiments that carry the leaderboard view. Raises InfraError."""
        with self._guard("listing experiments"):
            return list(self._client.search_experiments(filter_string=f"tags.`{view.VIEW_TAG}` != ''"))

    def publish_cohort(self, graded: list[tuple[SubmissionResult, str]], *, files: list[Path]) -> str:
        """The experiment's reviewer-facing parts, from `graded` (each result with its run id, all of
        one assignment version): the leaderboard view `harness ui` opens, and one parent run (tag
        `mlgrade.cohort`) whose children are the candidates' runs, whose description is the
        leaderboard, and which carries `files` (the cohort page) and the leaderboard as artifacts.
        Returns the experiment's id. Raises InfraError when MLflow fails."""
        if not graded:
            raise ValueError("no graded result to publish")
        results = [result for result, _ in graded]
        groups, criteria = view.columns(results)
        with self._guard("publishing the leaderboard"):
            experiment_id = self._experiment(results[0])
            state = view.leaderboard_state(groups=groups, criteria=criteria)
            self._client.set_experiment_tag(experiment_id, view.VIEW_TAG, view.view_tag(
                state, now_ms=round(datetime.now(UTC).timestamp() * 1000)))
            parent = self._cohort_run(experiment_id)
            for _, run_id in graded:
                if self._client.get_run(run_id).data.tags.get(PARENT_TAG) != parent:
                    self._client.set_tag(run_id, PARENT_TAG, parent)
            table = view.leaderboard_markdown(results)
            self._client.set_tag(parent, NOTE_TAG, fields.note(table, "leaderboard.md"))
            self._client.log_text(parent, table, "leaderboard.md")
            self._client.set_tag(parent, "mlgrade.candidates", str(len(results)))  # a metric would be charted
            for file in files:
                if file.is_file() and not file.is_symlink():
                    self._client.log_artifact(parent, str(file))
        return experiment_id

    def _cohort_run(self, experiment_id: str) -> str:
        """The experiment's parent run, created (FINISHED) on first use; duplicates from a race are
        left alone but the oldest is the one used."""
        found = self._client.search_runs([experiment_id], filter_string=f"tags.`{COHORT_TAG}` = 'true'",
                                         max_results=10, order_by=["attributes.start_time ASC"])
        if found:
            return found[0].info.run_id
        run = self._client.create_run(experiment_id, run_name=view.COHORT_RUN_NAME,
                                      tags={COHORT_TAG: "true", fields.STATUS_TAG: "cohort"})
        self._client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    # --- MLflow calls ----------------------------------------------------------------------------

    def _experiment(self, result: SubmissionResult) -> str:
        from mlflow.exceptions import MlflowException

        name = experiment_name(result)
        experiment = self._client.get_experiment_by_name(name)
        if experiment is None:
            location = None
            if self.artifacts is not None:
                location = (self.artifacts / re.sub(r"[^A-Za-z0-9._-]", "_", name)).as_uri()
            tags = {"mlgrade.assignment": result.assignment, "mlgrade.version": result.assignment_version,
                    "mlflow.experimentKind": "custom_model_development"}  # the UI's runs view, not GenAI
            try:
                return self._client.create_experiment(name, artifact_location=location, tags=tags)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            experiment = self._client.get_experiment_by_name(name)  # another process created it first
            if experiment is None:
                raise InfraError(f"MLflow experiment {name!r} was reported to exist but cannot be found")
        if experiment.lifecycle_stage != "active":
            eid = experiment.experiment_id
            raise InfraError(f"MLflow experiment {name!r} (id {eid}) is deleted: restore it with `mlflow "
                             f"experiments restore --experiment-id {eid}` or purge it with `mlflow gc`")
        return experiment.experiment_id

    def _retire_superseded(self, experiment_id: str, result: SubmissionResult, run_id: str) -> None:
        """One run per submission: runs of the same submission under an older key (an edited spec,
        a new grader version) are deleted, which MLflow keeps restorable until `mlflow gc`."""
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", result.submission_id):  # never quoted into a filter
            return
        query = f"tags.`{SUBMISSION_TAG}` = '{result.submission_id}'"
        runs = self._client.search_runs([experiment_id], filter_string=query, max_results=100)
        for run in runs:
            if run.info.run_id != run_id and run.data.tags.get(RESULT_KEY_TAG) != result.key:
                self._client.delete_run(run.info.run_id)

    def _runs_with_key(self, experiment_id: str, key: str) -> list[Any]:
        """Active (not deleted) runs carrying `key`, whatever their status."""
        runs = self._client.search_runs([experiment_id], filter_string=f"tags.`{RESULT_KEY_TAG}` = '{key}'",
                                        max_results=100)
        return list(runs)

    def _log_run(self, experiment_id: str, result: SubmissionResult, folder: Path) -> str:
        start = _epoch_ms(result.started_at)
        run = self._client.create_run(experiment_id, start_time=start, tags=fields.tags(result, folder),
                                      run_name=fields.run_name(result))
        run_id = run.info.run_id
        try:
            for metrics, params in _batches(_metrics(result, start), _params(result)):
                self._client.log_batch(run_id, metrics=metrics, params=params, synchronous=True)
            for path, artifact_path in _artifact_files(folder):
                self._client.log_artifact(run_id, str(path), artifact_path=artifact_path)
            self._client.set_terminated(run_id, "FINISHED", end_time=start + round(result.duration_s * 1000))
        except Exception:
            with suppress(Exception):  # best effort: the next log deletes the run whatever its status
                self._client.set_terminated(run_id, "FAILED")
            raise
        return run_id

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn MLflow, database and network failures into a one-line InfraError."""
        failures: tuple[type[BaseException], ...] = (OSError,)
        try:
            from mlflow.exceptions import MlflowException
            from sqlalchemy.exc import SQLAlchemyError

            failures += (MlflowException, SQLAlchemyError)
            yield
        except InfraError:
            raise
        except failures as exc:
            message = one_line(str(exc) or type(exc).__name__, 300)
            unanswered = _UNANSWERED.search(str(exc))
            if unanswered:  # urllib3's retries spelled out: what a reader needs is that it did not answer
                message = f"the server does not answer ({unanswered.group(1)})"
            raise InfraError(f"MLflow {action} failed ({_redact(self.tracking_uri)}): {message}") from exc
        except ImportError as exc:
            raise InfraError(f"MLflow is not installed ({exc.name}): pip install mlflow==3.17.2") from exc



def _params(result: SubmissionResult) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, v) for k, v in fields.params(result).items()]


def _metrics(result: SubmissionResult, timestamp: int) -> list[Any]:
    from mlflow.entities import Metric

    return [Metric(k, v, timestamp, 0) for k, v in fields.metrics(result).items()]


def _batches(metrics: list[Any], params: list[Any]) -> Iterator[tuple[list[Any], list[Any]]]:
    """Split into log_batch calls within MLflow's limits (one call for a usual result)."""
    while metrics or params:
        batch_params, params = params[:_MAX_PARAMS], params[_MAX_PARAMS:]
        room = _MAX_ENTITIES - len(batch_params)
        batch_metrics, metrics = metrics[:room], metrics[room:]
        yield batch_metrics, batch_params


def _artifact_files(folder: Path) -> Iterator[tuple[Path, str | None]]:
    """(file, artifact folder) for the result's files that exist; links are never followed."""
    for name in ARTIFACT_FILES:
        path = folder / name
        if path.is_file() and not path.is_symlink():
            yield path, None
    for name in ARTIFACT_DIRS:
        top = folder / name
        if not top.is_dir() or top.is_symlink():
            continue
        for root, dirs, files in os.walk(top):  # os.walk does not descend into linked folders
            dirs.sort()
            for file in sorted(files):
                path = Path(root, file)
                if path.is_file() and not path.is_symlink():
                    yield path, path.parent.relative_to(folder).as_posix()


# --- helpers -------------------------------------------------------------------------------------


def _check_key(key: str) -> None:
    if not _KEY.match(key):
        raise ValueError(f"result key {key!r} is not a plain token; was result.json edited by hand?")


def _epoch_ms(iso: str) -> int:
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        moment = datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _redact(uri: str) -> str:
    """`uri` without a password, for messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


__all__ = ["MlflowSink", "artifact_root", "default_tracking_uri", "experiment_name", "ui_command"]
