"""What a reviewer sees in MLflow, read back through MLflow's own API from a real sqlite store:
the leaderboard view the UI restores (`?viewStateShareKey=leaderboard`), the run names and rounded
metrics of the runs list, and the parent run that carries the leaderboard.

The view's field names are the MLflow UI's; that the UI renders them as intended was checked by
headless-Chromium screenshots of MLflow 3.17.2 (README, "Opening the results in MLflow"). This test pins what
those views rely on: the tag and its JSON, and that every column and chart names something the
runs really carry.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.grading import CriterionResult
from harness.mlflow_fields import run_name
from harness.mlflow_sink import COHORT_TAG, PARENT_TAG, MlflowSink, leaderboard_urls
from harness.mlflow_view import VIEW_TAG, leaderboard_markdown
from harness.results import Status, SubmissionResult, result_key, save_result

HOSTILE = "eve|<script>alert(1)</script>"


def _result(candidate: str, scores: tuple[float, float, float], *, status: Status = Status.OK,
            reason: str = "") -> SubmissionResult:
    ndcg, recall, lint = scores
    criteria = [
        CriterionResult(name="ndcg", group="ranking", grader="ranking", grader_version="1", score=ndcg,
                        weight=2, metrics={"ndcg_at_10": ndcg * 0.812345678912}, explanation="."),
        CriterionResult(name="recall", group="ranking", grader="ranking", grader_version="1", score=recall,
                        weight=1, explanation="."),
        CriterionResult(name="lint", group="engineering", grader="lint", grader_version="1", score=lint,
                        weight=1, explanation="."),
    ]
    total = round(100 * (2 * ndcg + recall + lint) / 4, 2)
    key = result_key(assignment="ranker", version="9.0", candidate=candidate,
                     content_hash="sha256:" + candidate, grader_versions={"ndcg": "1"})
    return SubmissionResult(
        key=key, assignment="ranker", assignment_version="9.0", submission=f"/subs/{candidate}",
        submission_id=f"{candidate[:3]}-0123abcd", candidate=candidate, content_hash="sha256:" + candidate,
        status=status, total_score=total, criteria=criteria, stages=[], harness_version="0.1.0",
        backend="docker", image="mlgrade/ranker:1", grader_versions={"ndcg": "1"},
        started_at="2026-12-02T10:00:00+00:00", duration_s=3.0, reason=reason,
        message=reason)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory):
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("views")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    sink = MlflowSink(tracking_uri=uri)
    # Hand-computed totals: alice (2*0.9 + 0.6 + 1) / 4 = 85.0; bob 0.2 -> 27.5; carol 1/3 each -> 33.33
    results = [_result("alice", (0.9, 0.6, 1.0)), _result("carol", (1 / 3, 1 / 3, 1 / 3)),
               _result("bob", (0.2, 0.2, 0.6), status=Status.ERROR, reason="KeyError: 'query_id'"),
               _result(HOSTILE, (0.0, 0.0, 0.0))]
    graded = []
    for result in results:
        folder = root / result.submission_id
        folder.mkdir()
        save_result(result, folder)
        graded.append((result, sink.log(result, folder)))
    page = root / "index.html"
    page.write_text("<html>cohort</html>")
    experiment_id = sink.publish_cohort(graded, files=[page])
    again = sink.publish_cohort(graded, files=[page])  # after the next batch: updated, not duplicated
    return MlflowClient(tracking_uri=uri), experiment_id, again, uri


def _state(client, experiment_id: str) -> dict:
    envelope = json.loads(client.get_experiment(experiment_id).tags[VIEW_TAG])
    assert envelope["name"] == "Leaderboard"  # the name the UI's Views menu lists
    return json.loads(envelope["state"])


def test_the_view_opens_sorted_by_total_score_with_the_ranking_columns(published) -> None:
    client, experiment_id, again, _ = published
    assert again == experiment_id
    state = _state(client, experiment_id)
    assert state["orderByKey"] == "metrics.`total_score`" and state["orderByAsc"] is False
    assert state["selectedColumns"][:3] == ["metrics.`total_score`", "metrics.`group.ranking`",
                                            "metrics.`group.engineering`"]
    assert {"tags.`status`", "tags.`reason`"} <= set(state["selectedColumns"])
    assert state["runsHiddenMode"] == "SHOW_ALL"  # all forty candidates, not the UI's first ten
    # What the UI does with that sort, done by the server: best first, the parent (no score) last.
    ordered = client.search_runs([experiment_id], order_by=["metrics.`total_score` DESC"])
    assert [r.data.tags.get("candidate") for r in ordered] == ["alice", "carol", "bob", HOSTILE, None]


def test_every_column_and_chart_names_a_metric_or_tag_the_runs_carry(published) -> None:
    client, experiment_id, _, _ = published
    state = _state(client, experiment_id)
    runs = [r for r in client.search_runs([experiment_id]) if COHORT_TAG not in r.data.tags]
    metrics = set().union(*(r.data.metrics for r in runs))
    tags = set().union(*(r.data.tags for r in runs))
    for column in state["selectedColumns"]:
        kind, key = column.split(".", 1)
        if key.strip("`") != "similarity.flagged":  # set only once copy detection has compared runs
            assert key.strip("`") in (metrics if kind == "metrics" else tags), column
    sections = [s["name"] for s in state["compareRunSections"]]
    assert sections == ["Total score", "Groups (0-100)", "Criteria (0-1)"]
    charted = [c["metricKey"] for c in state["compareRunCharts"]]
    assert charted == ["total_score", "group.ranking", "group.engineering", "score.ndcg", "score.recall",
                       "score.lint"]
    assert set(charted) <= metrics
    assert all(c["runsCountToCompare"] >= 40 for c in state["compareRunCharts"])


def test_run_names_carry_a_bad_status_and_values_are_rounded_for_reading(published) -> None:
    client, experiment_id, _, _ = published
    runs = {r.data.tags.get("candidate"): r for r in client.search_runs([experiment_id])}
    assert runs["bob"].info.run_name == "bob (error)" and runs["bob"].data.tags["status"] == "error"
    assert runs["alice"].info.run_name == "alice"
    carol = runs["carol"].data.metrics
    assert carol["total_score"] == 33.33 and carol["score.ndcg"] == 0.333
    assert carol["group.ranking"] == 33.3  # points out of 100, like the total and the summary table
    assert carol["ndcg.ndcg_at_10"] == 0.270782  # 0.812345678912 / 3 to six significant figures
    assert runs["alice"].data.metrics["group.ranking"] == 80.0  # (2 * 0.9 + 0.6) / 3


def test_one_parent_run_holds_the_leaderboard_and_every_candidate_run(published, tmp_path: Path) -> None:
    client, experiment_id, _, _ = published
    parents = client.search_runs([experiment_id], filter_string=f"tags.`{COHORT_TAG}` = 'true'")
    assert len(parents) == 1  # published twice, one parent
    parent = parents[0]
    children = [r for r in client.search_runs([experiment_id]) if r.info.run_id != parent.info.run_id]
    assert len(children) == 4 and all(r.data.tags[PARENT_TAG] == parent.info.run_id for r in children)
    assert parent.info.status == "FINISHED" and parent.data.tags["mlgrade.candidates"] == "4"
    assert parent.data.metrics == {}  # nothing of its own in the charts
    assert {f.path for f in client.list_artifacts(parent.info.run_id)} == {"index.html", "leaderboard.md"}
    table = Path(client.download_artifacts(parent.info.run_id, "leaderboard.md", str(tmp_path))).read_text()
    rows = [line for line in table.splitlines() if line[2:3].isdigit()]
    assert [row.split(" | ")[1] for row in rows[:3]] == ["alice", "carol", "bob"]
    assert parent.data.tags["mlflow.note.content"] == table  # the run's description in the UI


def test_candidate_text_in_the_leaderboard_is_one_escaped_cell() -> None:
    hostile = _result(HOSTILE + "\n| forged | row |", (0.5, 0.5, 0.5), reason="a|b\nc")
    table = leaderboard_markdown([hostile])
    row = table.splitlines()[-1]
    assert row.count(" | ") == 7  # #, candidate, status, total, 2 groups, seconds, reason: none forged
    assert "<script>" not in table and "\\<script\\>" in row and "a\\|b c" in row
    assert run_name(hostile.model_copy(update={"status": Status.TIMEOUT})).endswith(" (timeout)")


def test_the_printed_url_opens_each_experiments_leaderboard(published, tmp_path: Path) -> None:
    _, experiment_id, _, uri = published
    assert leaderboard_urls(uri, port=5077) == [
        ("ranker@9.0", f"http://127.0.0.1:5077/#/experiments/{experiment_id}/runs?viewStateShareKey=leaderboard")]
    missing = tmp_path / "none" / "mlflow.db"
    assert leaderboard_urls(f"sqlite:///{missing}") == [] and not missing.parent.exists()  # not created


def test_a_copied_results_folder_keeps_its_artifacts(tmp_path: Path) -> None:
    import shutil

    from mlflow import MlflowClient

    first = tmp_path / "grading-laptop" / "results"
    first.mkdir(parents=True)
    result = _result("alice", (0.9, 0.6, 1.0))
    folder = first / "ranker" / "alice"
    folder.mkdir(parents=True)
    save_result(result, folder)
    run_id = MlflowSink(tracking_uri=f"sqlite:///{first / 'mlflow.db'}").log(result, folder)
    copy = tmp_path / "shared-drive" / "results"
    shutil.copytree(first, copy)
    shutil.rmtree(first)  # the original is gone: only the copy's own artifacts can answer

    uri = f"sqlite:///{copy / 'mlflow.db'}"
    MlflowSink(tracking_uri=uri)  # what `harness ui`, `harness log` and `harness grade` open
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(run_id).info.artifact_uri.startswith((copy / "mlartifacts").as_uri())
    got = Path(client.download_artifacts(run_id, "result.json", str(tmp_path / "dl")))
    assert got.read_bytes() == (copy / "ranker" / "alice" / "result.json").read_bytes()
    MlflowSink(tracking_uri=uri)  # idempotent: opened again, nothing moves twice
    assert client.get_run(run_id).info.artifact_uri.startswith((copy / "mlartifacts").as_uri())


def test_a_store_whose_schema_is_unknown_is_left_as_it_is_with_a_warning(tmp_path: Path) -> None:
    import sqlite3

    from harness.mlflow_relocate import relocate_artifacts

    database = tmp_path / "mlflow.db"
    with sqlite3.connect(database) as con:  # not MLflow's schema: no experiments table
        con.execute("CREATE TABLE runs (run_uuid TEXT)")
    with pytest.warns(UserWarning, match="not re-pointed"):
        assert relocate_artifacts(database, tmp_path / "mlartifacts") == 0


def test_a_pending_manual_review_is_no_zero_in_the_runs_or_the_charts(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    result = _result("dana", (0.9, 0.6, 1.0))
    pending = CriterionResult(name="memo", group="manual", grader="manual", grader_version="1", score=0.0,
                              weight=2, explanation="not reviewed yet", ungraded="manual review pending")
    result = result.model_copy(update={"criteria": [*result.criteria, pending]})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sink = MlflowSink(tracking_uri=uri)
    folder = tmp_path / "dana"
    folder.mkdir()
    save_result(result, folder)
    run_id = sink.log(result, folder)
    experiment_id = sink.publish_cohort([(result, run_id)], files=[])
    client = MlflowClient(tracking_uri=uri)
    metrics = client.get_run(run_id).data.metrics
    assert "score.memo" not in metrics and "group.manual" not in metrics and metrics["score.ndcg"] == 0.9
    charted = {c["metricKey"] for c in _state(client, experiment_id)["compareRunCharts"]}
    assert not {"score.memo", "group.manual"} & charted
