"""Manual review (spec `rubric:`, `harness review`) and the re-grade diff.

Grading is played by the fake sandbox backend (tests/fakes.py) on the toy assignment, copied with
a rubric added; every expected total below is computed by hand in its comment from the toy's
weights (completion 1, answer 3) and the rubric's (memo 2 on 0-5 points, style 1 on 0-1).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness import api
from harness.cli import app
from harness.errors import SpecError
from harness.results import load_result
from harness.spec import load_spec
from tests.fakes import FIXTURES, ExactAnswerGrader, FakeBackend, install_fake_backend, make_submission, ok

REVIEW_FILES = "\nreview_files: {memo.md: 4k}\n"
RUBRIC = REVIEW_FILES + """rubric:
  - {name: memo, description: The memo makes the call and argues it, weight: 2, max_points: 5, file: memo.md}
  - {name: style, description: Readable code, weight: 1}
"""


def toy_with_rubric(tmp_path: Path, rubric: str = RUBRIC) -> Path:
    folder = tmp_path / "assignments" / "toy"
    shutil.copytree(FIXTURES / "assignments" / "toy", folder)
    with (folder / "assignment.yaml").open("a") as fh:
        fh.write(rubric)
    return folder


def grade(toy: Path, tmp_path: Path, subs: list[Path], backend: FakeBackend, **kwargs):
    install_fake_backend(backend)
    kwargs.setdefault("log_to_mlflow", False)
    return api.grade(toy, [str(s) for s in subs], results_dir=tmp_path / "results", backend="fake",
                     backoff_s=0.0, **kwargs)


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(("rubric", "message"), [
    ("rubric:\n  - {name: memo, description: a, weight: 1}\n  - {name: memo, description: b, weight: 1}\n",
     "rubric item names repeat"),
    ("rubric:\n  - {name: answer, description: a, weight: 1}\n", "name graders or groups already"),
    ("rubric:\n  - {name: memo, description: a, weight: 1, file: memo.md}\n", "is not one of review_files"),
    ("rubric:\n  - {name: memo, description: a, weight: 1, max_points: 0}\n", "greater than 0"),
    ("rubric:\n  - {name: memo, description: a, weight: 0}\n", "greater than 0"),
    ("rubric:\n  - {name: memo, description: a, weight: 1, points: 5}\n",
     "rubric.0.points: unknown key; did you mean .max_points.?"),
    ("rubric:\n  - {name: memo, description: a, weight: 1, visibility: soon}\n", "visibility 'soon'"),
])
def test_rubric_validation_names_the_problem(tmp_path, rubric, message):
    toy = toy_with_rubric(tmp_path, rubric)
    with pytest.raises(SpecError, match=message):
        load_spec(toy / "assignment.yaml")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The toy with a rubric, two candidates graded: right (answer 1) and wrong (answer 0)."""
    tmp_path = tmp_path_factory.mktemp("review")
    toy = toy_with_rubric(tmp_path)
    subs = [make_submission(tmp_path / "subs", n, {"memo.md": "Ship it."}) for n in ("right", "wrong")]
    grade(toy, tmp_path, subs, FakeBackend({("wrong", "answer"): ok("41")}))
    return toy, tmp_path


def copy_of(graded, tmp_path: Path) -> tuple[Path, Path]:
    toy, root = graded
    shutil.copytree(root, tmp_path / "copy")
    return tmp_path / "copy" / "assignments" / "toy", tmp_path / "copy"


def test_until_reviewed_the_total_is_over_the_automatic_criteria_and_provisional(graded):
    toy, root = graded
    found = {r.candidate: r for r in api.results(toy, results_dir=root / "results")}
    wrong = found["wrong"]
    # completion 1 x 1 + answer 0 x 3, over weight 4 (the pending memo and style count for nothing): 25
    assert wrong.total_score == 25.0
    assert wrong.pending_review == ["memo", "style"]
    line = wrong.summary_line()
    assert line["provisional"] is True and line["pending_review"] == ["memo", "style"]
    done = cli("results", str(toy), "--results", str(root / "results"), "--format", "csv")
    header, *rows = [row.split(",") for row in done.stdout.splitlines()]
    assert header[4:8] == ["total", "completion", "answer", "manual"]
    assert [(row[1], row[4], row[7]) for row in rows] == [("right", "100", "pending"),
                                                          ("wrong", "25", "pending")]
    table = cli("results", str(toy), "--results", str(root / "results"), "--format", "markdown").stdout
    assert table.count("total provisional: manual review pending") == 2


def test_harness_review_stores_who_when_and_scores_and_counts_them(graded, tmp_path):
    toy, root = copy_of(graded, tmp_path)
    done = cli("review", str(toy), "wrong", "--score", "memo=4", "--score", "style=0.5",
               "--comment", "memo=Makes the call; no interval.", "--reviewer", "ana",
               "--results", str(root / "results"), "--no-mlflow", "--json")
    assert done.exit_code == 0, done.output
    line = json.loads(done.stdout)
    # (completion 1x1 + answer 0x3 + memo 4/5 x 2 + style 0.5 x 1) / 7 = 3.1 / 7 = 44.2857 -> 44.29
    assert line["total_score"] == 44.29 and line["provisional"] is False
    stored = load_result(root / "results" / "toy" / "1.0" / line["submission_id"])
    assert stored is not None and stored.review is not None
    assert stored.review.reviewer == "ana" and stored.review.at.startswith("20")
    assert stored.review.items["memo"].value == 4 and stored.review.items["memo"].top == 5
    assert stored.review.items["memo"].comment == "Makes the call; no interval."
    scores = {c.name: c.score for c in stored.criteria}
    assert scores["memo"] == 0.8 and scores["style"] == 0.5
    report = (root / "results" / "toy" / "1.0" / line["submission_id"] / "report.md").read_text()
    assert "Reviewed by ana" in report and "provisional" not in report


def test_a_partial_review_from_a_file_keeps_the_total_provisional(graded, tmp_path):
    toy, root = copy_of(graded, tmp_path)
    marks = tmp_path / "review.yaml"
    marks.write_text("reviewer: bo\nscores: {memo: 4}\ncomments: {memo: fine}\n")
    done = cli("review", str(toy), "wrong", "--file", str(marks), "--results", str(root / "results"),
               "--no-mlflow", "--json")
    line = json.loads(done.stdout)
    # (1x1 + 0x3 + 0.8x2) / 6, style still pending: 2.6 / 6 = 43.33
    assert line["total_score"] == 43.33 and line["pending_review"] == ["style"]
    assert line["review"]["reviewer"] == "bo"


@pytest.mark.parametrize(("args", "message"), [
    (["--score", "clarity=3"], "unknown rubric item 'clarity'; the rubric of toy: memo, style"),
    (["--score", "memo=6"], "--score memo=6 is out of range: memo is scored from 0 to 5"),
    (["--score", "style=1.5"], "--score style=1.5 is out of range: style is scored from 0 to 1"),
    (["--score", "memo=good"], "the score must be a number"),
    (["--comment", "style=nice"], "style has no score yet"),
    ([], "nothing to record"),
])
def test_review_usage_errors_exit_2_with_one_line(graded, tmp_path, args, message):
    toy, root = copy_of(graded, tmp_path)
    before = (root / "results" / "toy" / "1.0").glob("wrong-*/result.json")
    text = next(before).read_text()
    done = cli("review", str(toy), "wrong", *args, "--results", str(root / "results"), "--no-mlflow")
    assert done.exit_code == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert next((root / "results" / "toy" / "1.0").glob("wrong-*/result.json")).read_text() == text


def test_manual_scores_survive_a_forced_regrade_of_the_same_content_only(tmp_path):
    toy = toy_with_rubric(tmp_path)
    sub = make_submission(tmp_path / "subs", "wrong", {"memo.md": "Ship it."})
    backend = FakeBackend({("wrong", "answer"): ok("41")})
    grade(toy, tmp_path, [sub], backend)
    api.review(toy, "wrong", results_dir=tmp_path / "results", scores=["memo=4", "style=0.5"],
               reviewer="ana", log_to_mlflow=False)
    again = grade(toy, tmp_path, [sub], backend, force=True).items[0].result
    assert again.review is not None and again.review.reviewer == "ana"
    assert again.pending_review == [] and again.total_score == 44.29  # 3.1 / 7, as reviewed
    (sub / "run.py").write_text("print('changed')\n")  # new content: a new submission to review
    changed = grade(toy, tmp_path, [sub], backend).items[0].result
    assert changed.review is None and changed.pending_review == ["memo", "style"]
    assert changed.total_score == 25.0  # (1x1 + 0x3) / 4, provisional again
    assert changed.summary_line()["provisional"] is True


def test_a_regrade_under_a_new_key_shows_what_changed(tmp_path, monkeypatch):
    toy = toy_with_rubric(tmp_path)
    sub = make_submission(tmp_path / "subs", "wrong", {"memo.md": "Ship it."})
    first = grade(toy, tmp_path, [sub], FakeBackend({("wrong", "answer"): ok("41")})).items[0]
    api.review(toy, "wrong", results_dir=tmp_path / "results", scores=["memo=4", "style=0.5"],
               reviewer="ana", log_to_mlflow=False)
    monkeypatch.setattr(ExactAnswerGrader, "version", "2")  # a new grader version: a new key
    second = grade(toy, tmp_path, [sub], FakeBackend({})).items[0]  # now answers 42, right
    assert second.folder == first.folder and second.result.key != first.result.key
    previous = second.result.previous
    assert previous is not None and previous.key == first.result.key and previous.total_score == 44.29
    # now (1x1 + 1x3 + 0.8x2 + 0.5x1) / 7 = 6.1 / 7 = 87.14; the answer went from 0 to 1
    assert second.result.total_score == 87.14
    line = json.loads(json.dumps(second.result.summary_line()))
    assert line["previous"]["total_change"] == 42.85  # 87.14 - 44.29
    assert line["previous"]["changed"] == {"answer": {"before": 0.0, "after": 1.0, "change": 1.0}}
    report = (second.folder / "report.md").read_text()
    assert "## Changes since the previous grading" in report
    # a change is written to the precision of what changed: totals to 2 decimals, criterion scores to 3
    assert "44.29 → 87.14 (+42.85)" in report and "| answer | 0.000 | 1.000 | +1.000 |" in report
    assert "New grader versions: answer." in report
    rows = cli("results", str(toy), "--results", str(tmp_path / "results"), "--json").stdout.splitlines()
    assert json.loads(rows[0])["previous"]["key"] == first.result.key


def test_adding_a_rubric_regrades_nothing(tmp_path):
    plain = tmp_path / "plain"
    toy = toy_with_rubric(plain, REVIEW_FILES)
    sub = make_submission(tmp_path / "subs", "right")
    grade(toy, plain, [sub], FakeBackend({}))
    (toy / "assignment.yaml").write_text((toy / "assignment.yaml").read_text().replace(REVIEW_FILES, RUBRIC))
    backend = FakeBackend({})
    item = grade(toy, plain, [sub], backend).items[0]
    assert item.skipped and backend.calls == []  # the same key: nothing ran again
    assert item.result.pending_review == ["memo", "style"]  # but the rubric's items are listed
    assert load_result(item.folder).pending_review == ["memo", "style"]


def test_mlflow_run_shows_the_review(tmp_path):
    from mlflow import MlflowClient  # here, so collecting the suite does not import mlflow

    toy = toy_with_rubric(tmp_path)
    sub = make_submission(tmp_path / "subs", "wrong", {"memo.md": "Ship it."})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    item = grade(toy, tmp_path, [sub], FakeBackend({("wrong", "answer"): ok("41")}), log_to_mlflow=True,
                 tracking_uri=uri).items[0]
    client = MlflowClient(tracking_uri=uri)
    before = client.get_run(item.run_id)
    assert before.data.metrics["total_score"] == 25.0 and before.data.tags["review"] == "pending: memo, style"
    outcome = api.review(toy, "wrong", results_dir=tmp_path / "results", scores=["memo=4", "style=0.5"],
                         reviewer="ana", tracking_uri=uri)
    again = api.review(toy, "wrong", results_dir=tmp_path / "results", scores=["memo=4"],
                       reviewer="ana", tracking_uri=uri)  # the same marks again: the same run
    assert outcome.run_id == again.run_id == item.run_id and not again.warning
    run = client.get_run(item.run_id)
    assert run.data.metrics["total_score"] == 44.29  # 3.1 / 7
    assert run.data.metrics["score.memo"] == 0.8 and run.data.metrics["group.manual"] == 70.0  # (1.6+0.5)/3
    assert run.data.tags["review"] == "done" and run.data.tags["review.reviewer"] == "ana"
    assert "Reviewed by ana" in run.data.tags["mlflow.note.content"]
    cohort = client.search_runs([run.info.experiment_id], filter_string="tags.`mlgrade.cohort` = 'true'")
    assert "| 44.3 |" in cohort[0].data.tags["mlflow.note.content"]  # the leaderboard shows the new total
    assert api.log_results(toy, results_dir=tmp_path / "results", tracking_uri=uri) == 1
    runs = client.search_runs([run.info.experiment_id],
                              filter_string=f"tags.`mlgrade.submission_id` = '{item.result.submission_id}'")
    assert [r.info.run_id for r in runs] == [item.run_id]  # `harness log` updated it, made no other
    assert client.get_run(item.run_id).data.metrics["total_score"] == 44.29


def test_gradescope_export_waits_for_the_review(graded, tmp_path):
    toy, root = copy_of(graded, tmp_path)
    first = api.export(toy, fmt="gradescope", results_dir=root / "results", out=tmp_path / "out")
    assert first.written == [] and len(first.skipped) == 2
    assert all("manual review pending (memo, style)" in line for line in first.skipped)
    api.review(toy, "wrong", results_dir=root / "results", scores=["memo=4", "style=0.5"], reviewer="ana",
               log_to_mlflow=False)
    second = api.export(toy, fmt="gradescope", results_dir=root / "results", out=tmp_path / "out")
    doc = json.loads(second.written[0].read_text())
    assert doc["score"] == 44.29  # 3.1 / 7
    # the tests add up to the score: memo 0.8 x 2/7 x 100 = 22.857
    memo = next(t for t in doc["tests"] if t["name"].endswith("memo"))
    assert memo["score"] == pytest.approx(22.857, abs=1e-3) and memo["tags"] == ["manual"]
    assert sum(t["score"] for t in doc["tests"]) == pytest.approx(44.29, abs=0.01)


def test_review_marks_the_result_on_disk_under_the_submission_lock(graded, tmp_path, monkeypatch):
    import contextlib

    from harness._workdirs import exclusive

    toy, root = copy_of(graded, tmp_path)
    folder = next((root / "results" / "toy" / "1.0").glob("wrong-*"))
    taken: list[Path] = []

    @contextlib.contextmanager
    def regrade_then_lock(path: Path):
        # a --force re-grade (harness.batch) holds this lock and writes result.json just before review
        # gets it: review must mark that result, not the one it listed earlier
        taken.append(path)
        regraded = load_result(folder)
        regraded.started_at = "2026-12-02T04:00:00+00:00"
        from harness.results import save_result
        save_result(regraded, folder)
        with exclusive(path):
            yield

    monkeypatch.setattr("harness.api.exclusive", regrade_then_lock, raising=False)
    api.review(toy, "wrong", results_dir=root / "results", scores=["memo=4"], reviewer="ana",
               log_to_mlflow=False)
    assert taken == [folder.parent / ".locks" / f"{folder.name}.lock"]  # the lock harness.batch takes
    stored = load_result(folder)
    assert stored.started_at == "2026-12-02T04:00:00+00:00" and stored.review.reviewer == "ana"


def test_review_rebuilds_the_pages_and_a_failure_to_write_them_is_a_warning(graded, tmp_path, monkeypatch):
    toy, root = copy_of(graded, tmp_path)
    version = root / "results" / "toy" / "1.0"
    api.review(toy, "wrong", results_dir=root / "results", scores=["memo=4", "style=0.5"], reviewer="ana",
               log_to_mlflow=False)
    # (1x1 + 0x3 + 0.8x2 + 0.5x1) / 7 = 44.29, as in test_harness_review_stores_who_when_and_scores
    assert "44.29" in (version / "index.html").read_text()
    assert "44.29" in next(version.glob("wrong-*/report.html")).read_text()

    def broken_writer(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("harness.cohort.write_cohort", broken_writer)
    outcome = api.review(toy, "right", results_dir=root / "results", scores=["memo=5"], reviewer="ana",
                         log_to_mlflow=False)
    assert "No space left" in outcome.warning and outcome.result.review is not None
    assert load_result(outcome.folder).review.reviewer == "ana"  # the review is kept


def test_an_invalid_submission_has_nothing_pending(tmp_path):
    from harness.results import Status

    toy = toy_with_rubric(tmp_path)
    sub = make_submission(tmp_path / "subs", "empty", {"memo.md": "Ship it."})
    (sub / "run.py").unlink()  # required: invalid, nothing runs
    first = grade(toy, tmp_path, [sub], FakeBackend({})).items[0].result
    again = grade(toy, tmp_path, [sub], FakeBackend({})).items[0]  # the rubric rebuilt on a skip, too
    for result in (first, again.result, load_result(again.folder)):
        assert result.status is Status.INVALID and result.pending_review == []
        assert result.summary_line()["provisional"] is False
        # every criterion 0 (the README's rule for an invalid submission), the rubric's included
        assert result.total_score == 0.0 and {c.name: c.score for c in result.criteria} == \
            {"completion": 0.0, "answer": 0.0, "memo": 0.0, "style": 0.0}
        assert all("invalid" in c.explanation for c in result.criteria if c.name in ("memo", "style"))
    reviewed = api.review(toy, "empty", results_dir=tmp_path / "results", scores=["memo=5"], reviewer="ana",
                          log_to_mlflow=False).result  # a reviewer can still mark them
    # (0x1 + 0x3 + 5/5 x 2 + 0 x 1) / 7 = 28.57; style stays 0, not pending
    assert reviewed.total_score == 28.57 and reviewed.pending_review == []
