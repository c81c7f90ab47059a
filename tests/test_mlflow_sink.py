"""The MLflow sink against a real sqlite tracking store, read back with MlflowClient (no mocks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.grading import CriterionResult
from harness.errors import InfraError
from harness.mlflow_fields import NOTE_TAG, RESULT_KEY_TAG
from harness.mlflow_sink import (
    MlflowSink,
    default_tracking_uri,
    experiment_name,
    ui_command,
)
from harness.report import render_report
from harness.results import StageRecord, Status, SubmissionResult, result_key, save_result


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def uri(store: Path) -> str:
    return f"sqlite:///{store / 'mlflow.db'}"


@pytest.fixture(scope="module")
def sink(uri: str) -> MlflowSink:
    return MlflowSink(tracking_uri=uri)


@pytest.fixture(scope="module")
def client(uri: str, sink: MlflowSink):
    from mlflow import MlflowClient  # here, so collecting the suite does not import mlflow

    return MlflowClient(tracking_uri=uri)


def make_result(*, version: str = "1.0.0", status: Status = Status.OK, ndcg_grader: str = "ranking:1",
                candidate: str = "alice") -> SubmissionResult:
    graders = {"ndcg": ndcg_grader, "code quality!": "lint:2"}
    key = result_key(assignment="ranker", version=version, candidate=candidate, content_hash="sha256:feed",
                     grader_versions=graders)
    graded = status.graded
    criteria = [
        CriterionResult(name="ndcg", grader="ranking", grader_version="1", score=0.75, weight=3,
                        metrics={"ndcg_at_10": 0.62, "ndcg_at_10_ci_low": 0.58, "ndcg_at_10_ci_high": 0.66,
                                 "p@10": 0.4},
                        explanation="NDCG@10 0.620 against 0.510 for bm25."),
        CriterionResult(name="style", grader="lint", grader_version="2", score=0.5, weight=1,
                        metrics={"warnings": 12.0}, explanation="12 lint warnings."),
    ] if graded else []
    stages = [StageRecord(name="train", status="ok", exit_code=0, seconds=2.5, peak_memory_bytes=96 << 20,
                          log_file="logs/train.log"),
              StageRecord(name="predict", status="ok", exit_code=0, seconds=0.75,
                          log_file="logs/predict.log")]
    return SubmissionResult(
        key=key, assignment="ranker", assignment_version=version, submission="/subs/alice.zip",
        submission_id=f"{candidate}-0123abcd", candidate=candidate, content_hash="sha256:feed",
        commit="abc123",
        status=status, total_score=68.75 if graded else None, criteria=criteria,
        stages=stages if graded else [], harness_version="0.1.0", backend="docker", image="mlgrade/ranker:1",
        image_id="sha256:1234", grader_versions=graders, started_at="2026-11-25T10:00:00+00:00",
        duration_s=4.0)


def make_folder(root: Path, result: SubmissionResult) -> Path:
    folder = root / result.submission_id
    (folder / "logs").mkdir(parents=True)
    (folder / "logs" / "train.log").write_text("epoch 1\nepoch 2\n")
    (folder / "logs" / "predict.log").write_text("done\n")
    (folder / "outputs").mkdir()
    (folder / "outputs" / "scores.csv").write_text("query_id,doc_id,score\nq1,d1,0.5\n")
    (folder / "outputs" / "leak.csv").symlink_to("/etc/hostname")  # must never be uploaded
    (folder / "artifacts" / "ndcg").mkdir(parents=True)
    (folder / "artifacts" / "ndcg" / "per_query.csv").write_text("query_id,ndcg\nq1,0.6\n")
    (folder / "report.md").write_text(render_report(result, folder))
    save_result(result, folder)
    return folder


def runs_with_key(client, experiment_id: str, key: str) -> list:
    return list(client.search_runs([experiment_id], filter_string=f"tags.`{RESULT_KEY_TAG}` = '{key}'"))


def test_log_creates_one_complete_run(sink: MlflowSink, client, store: Path, tmp_path: Path) -> None:
    result = make_result()
    folder = make_folder(tmp_path, result)
    run_id = sink.log(result, folder)

    experiment = client.get_experiment_by_name("ranker@1.0.0")
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [run_id]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "alice"
    assert run.info.artifact_uri.startswith((store / "mlartifacts").as_uri())  # not in the cwd

    params, tags = run.data.params, run.data.tags
    assert tags["mlgrade.submission_id"] == "alice-0123abcd"  # identity: tags, not params (the UI's
    assert tags["mlgrade.content_hash"] == "sha256:feed" and tags["mlgrade.commit"] == "abc123"  # compare
    assert tags["mlgrade.result_key"] == result.key and params["harness_version"] == "0.1.0"  # view plots
    assert tags["mlgrade.image_id"] == "sha256:1234" and params["backend"] == "docker"  # params)
    assert not {"submission_id", "content_hash", "result_key", "image_id"} & set(params)
    assert params["grader_version.ndcg"] == "ranking:1"
    assert params["grader_version.code quality_"] == "lint:2"  # "!" is not allowed in MLflow names

    metrics = run.data.metrics
    assert metrics["total_score"] == 68.75
    assert metrics["score.ndcg"] == 0.75 and metrics["score.style"] == 0.5
    assert metrics["ndcg.ndcg_at_10"] == 0.62 and metrics["ndcg.ndcg_at_10_ci_low"] == 0.58
    assert metrics["ndcg.p_10"] == 0.4 and metrics["style.warnings"] == 12.0
    assert metrics["train.seconds"] == 2.5 and metrics["train.peak_memory_mb"] == 96.0
    assert "predict.peak_memory_mb" not in metrics  # None: not measured

    tags = run.data.tags
    assert tags["candidate"] == "alice" and tags["status"] == "ok"
    assert tags["submission"] == "/subs/alice.zip" and tags[RESULT_KEY_TAG] == result.key
    assert tags[NOTE_TAG].startswith("# Grading report: alice") and "lint warnings" in tags[NOTE_TAG]

    top = {f.path for f in client.list_artifacts(run_id)}
    assert top == {"result.json", "report.md", "logs", "outputs", "artifacts"}
    assert {f.path for f in client.list_artifacts(run_id, "outputs")} == {"outputs/scores.csv"}
    grader_files = [f.path for f in client.list_artifacts(run_id, "artifacts/ndcg")]
    assert grader_files == ["artifacts/ndcg/per_query.csv"]
    copied = Path(client.download_artifacts(run_id, "result.json", str(tmp_path / "dl")))
    assert copied.read_bytes() == (folder / "result.json").read_bytes()


def test_log_is_idempotent(sink: MlflowSink, client, tmp_path: Path) -> None:
    result = make_result(version="1.1.0")
    folder = make_folder(tmp_path, result)
    first = sink.log(result, folder)
    assert sink.log(result, folder) == first
    assert sink.find_run(result) == first
    experiment = client.get_experiment_by_name(experiment_name(result))
    assert len(client.search_runs([experiment.experiment_id])) == 1
    replaced = sink.log(result, folder, replace=True)  # a forced re-grade
    assert replaced != first
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [replaced]


def test_run_left_unfinished_by_a_crash_is_replaced(sink: MlflowSink, client, store: Path,
                                                     tmp_path: Path) -> None:
    result = make_result(version="2.0.0")
    experiment_id = client.create_experiment(experiment_name(result),
                                             artifact_location=(store / "crash-artifacts").as_uri())
    crashed = client.create_run(experiment_id, tags={RESULT_KEY_TAG: result.key}).info.run_id  # left RUNNING
    assert sink.find_run(result) is None

    run_id = sink.log(result, make_folder(tmp_path, result))

    assert run_id != crashed
    runs = runs_with_key(client, experiment_id, result.key)
    assert [(r.info.run_id, r.info.status) for r in runs] == [(run_id, "FINISHED")]
    assert client.get_run(crashed).info.lifecycle_stage == "deleted"


@pytest.mark.parametrize("status", [Status.INFRA_ERROR, Status.REJECTED])
def test_ungraded_result_is_not_logged(sink: MlflowSink, client, status: Status, tmp_path: Path) -> None:
    result = make_result(version="3.0.0", status=status)
    with pytest.raises(ValueError, match="ungraded"):
        sink.log(result, make_folder(tmp_path, result))
    assert client.get_experiment_by_name("ranker@3.0.0") is None


def test_new_grader_version_makes_a_new_run_and_retires_the_old(sink: MlflowSink, client, tmp_path) -> None:
    # One run per submission: a re-grade under a new key (grader version, edited spec) replaces it.
    old, new = make_result(version="4.0.0"), make_result(version="4.0.0", ndcg_grader="ranking:2")
    assert old.key != new.key and old.submission_id == new.submission_id
    first = sink.log(old, make_folder(tmp_path / "old", old))
    second = sink.log(new, make_folder(tmp_path / "new", new))
    assert first != second
    experiment = client.get_experiment_by_name("ranker@4.0.0")
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [second]
    other = make_result(version="4.0.0", candidate="bob")  # another submission keeps its own run
    third = sink.log(other, make_folder(tmp_path / "bob", other))
    assert {r.info.run_id for r in client.search_runs([experiment.experiment_id])} == {second, third}


def test_unusable_store_raises_infra_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result = make_result(version="5.0.0")
    with pytest.raises(InfraError, match="MLflow"):
        MlflowSink(tracking_uri=f"sqlite:///{blocker / 'mlflow.db'}").log(result, tmp_path)


def test_unreachable_server_raises_infra_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    sink = MlflowSink(tracking_uri="http://127.0.0.1:9")  # discard port on loopback: nothing listens
    with pytest.raises(InfraError, match="127.0.0.1:9"):
        sink.log(make_result(version="5.0.0"), tmp_path)


def test_default_tracking_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    expected = f"sqlite:///{tmp_path.resolve() / 'results' / 'mlflow.db'}"
    assert default_tracking_uri(Path("results")) == expected
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert default_tracking_uri(Path("results")) == "http://127.0.0.1:5000"


def test_ui_command() -> None:
    command = ui_command("sqlite:////srv/results/mlflow.db")
    assert command.startswith("mlflow ui --backend-store-uri sqlite:////srv/results/mlflow.db")
    assert "--artifacts-destination /srv/results/mlartifacts" in command
    assert command.endswith("--host 127.0.0.1 --port 5000")
    assert ui_command("sqlite:////srv/r5000/mlflow.db", port=5077).endswith("--port 5077")
    assert ui_command("http://u:secret@127.0.0.1:5000") == "open http://u:***@127.0.0.1:5000 in a browser"


def test_importing_the_sink_does_not_import_mlflow() -> None:
    code = "import sys, harness.mlflow_sink; sys.exit('mlflow' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0



def test_the_failure_reason_is_a_tag_the_runs_list_can_show(sink: MlflowSink, client, tmp_path: Path) -> None:
    reason = "TypeError: LGBMRanker.fit() got an unexpected keyword argument 'early_stopping_rounds'"
    failed = make_result(version="6.0.0", status=Status.ERROR).model_copy(update={
        "message": f"stage train: error: exited with code 1: {reason}", "reason": reason})
    run = client.get_run(sink.log(failed, make_folder(tmp_path, failed)))
    assert run.data.tags["reason"] == reason and run.data.tags["status"] == "error"
    ok = make_result(version="6.0.1")
    assert "reason" not in client.get_run(sink.log(ok, make_folder(tmp_path / "ok", ok))).data.tags
