"""`harness check ASSIGNMENT SUBMISSION --run`: the stages on the public data only, in the grading
sandbox (the local backend here, one short run per test), and the checklist of what will fail.
Each test also holds the run to its promise: no hidden path mounted (hidden data, data sets that are
not public such as abtest's hidden re-runs or endpoint's probe inputs, hidden tests), no hidden stage
run, nothing written under the results folder but the image and data cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness import api, check_run
from harness.cli import app
from harness.data import materialize
from tests.conftest import REPO

LOCAL = ("--backend", "local", "--allow-weaker-isolation")
pytestmark = pytest.mark.filterwarnings("ignore:the local backend isolates")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("check-results")


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> list[check_run.CheckReport]:
    """The reports the CLI's runs returned (a spy: the real run_check runs)."""
    seen: list[check_run.CheckReport] = []
    real = check_run.run_check

    def spy(*args: object, **kwargs: object) -> check_run.CheckReport:
        seen.append(real(*args, **kwargs))  # type: ignore[arg-type]
        return seen[-1]

    monkeypatch.setattr(check_run, "run_check", spy)
    return seen


def check(assignment: str, submission: Path, results: Path) -> tuple[int, list[str]]:
    done = CliRunner().invoke(app, ["check", assignment, str(submission), "--run", *LOCAL,
                                    "--results", str(results)])
    assert done.exception is None or isinstance(done.exception, SystemExit), done.output
    return done.exit_code, done.output.splitlines()


def assert_nothing_hidden(report: check_run.CheckReport, assignment: str, results: Path) -> None:
    loaded = api.find_assignment(assignment)
    sets = materialize(loaded, cache_root=results / ".cache")
    private = [path for name, path in sets.visible.items() if name not in loaded.spec.data.public]
    hidden = [*sets.hidden.values(), *private, loaded.dir / "hidden", loaded.dir / "hidden_tests"]
    assert report.mounted, "the run mounted nothing: it did not run"
    touched = [m for m in report.mounted for h in hidden if m.resolve() == h.resolve()
               or h.resolve() in m.resolve().parents]
    assert touched == []
    assert "hidden_tests" not in report.stages
    written = [p for p in results.rglob("*") if p.is_file() and ".cache" not in p.relative_to(results).parts]
    assert written == []  # no result.json, report or MLflow store


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_a_ranker_writing_the_wrong_header_fails_the_check(tmp_path: Path, results: Path, reports: list
                                                           ) -> None:
    sub = write(tmp_path / "sub", {
        "train.py": "print('nothing to learn')\n",
        "predict.py": ("import csv\n"
                       "rows = list(csv.DictReader(open('/data/test/test.csv')))\n"
                       "with open('/output/scores.csv', 'w') as fh:\n"
                       "    fh.write('qid,docid,score\\n')\n"
                       "    fh.writelines(f\"{r['query_id']},{r['doc_id']},1.0\\n\" for r in rows)\n")})
    code, lines = check("ranker", sub, results)
    assert code == 4
    assert lines[-1].startswith("fail scores.csv: the first line 'qid,docid,score' is not a header naming "
                                "query_id,doc_id,score")
    assert "ok   stage train ran" in "\n".join(lines) and "ok   stage predict ran" in "\n".join(lines)
    assert "warn stage hidden_tests runs only when graded: it runs the hiring team's held-out tests" in lines
    assert_nothing_hidden(reports[-1], "ranker", results)


def test_a_training_script_that_raises_names_its_exception(tmp_path: Path, results: Path, reports: list
                                                           ) -> None:
    sub = write(tmp_path / "sub", {
        "train.py": ("def fit(rate):\n    if rate <= 0:\n"
                     "        raise ValueError('learning rate must be positive')\n\nfit(0)\n"),
        "predict.py": "raise SystemExit('never reached')\n"})
    code, lines = check("ranker", sub, results)
    assert code == 4
    (failed,) = [line for line in lines if line.startswith("fail ")]
    # as the grade report gives it (harness/_reasons.py): status, exit code, the exception line
    assert failed == "fail stage train: error: exited with code 1: ValueError: learning rate must be positive"
    assert not any("stage predict" in line for line in lines)  # blocked by train, as in grading
    assert_nothing_hidden(reports[-1], "ranker", results)


def test_answers_failing_the_schema_fail_the_check_on_the_public_run_only(tmp_path: Path, results: Path,
                                                                         reports: list) -> None:
    answers = {"design": {}, "analysis": {}, "srm": {"p_value": 0.5, "detected": False}}  # no decision
    sub = write(tmp_path / "sub", {"analyze.py": (
        "import argparse, json, pathlib\n"
        "p = argparse.ArgumentParser(); p.add_argument('--data-dir'); p.add_argument('--output-dir')\n"
        "a = p.parse_args()\n"
        f"pathlib.Path(a.output_dir, 'answers.json').write_text(json.dumps({answers!r}))\n")})
    code, lines = check("abtest", sub, results)
    assert code == 4
    assert [line[:5] + line[5:].split(" (")[0] for line in lines if "stage analyze" in line] == [
        "ok   stage analyze/public ran"]  # the public run; no_effect, clear_win and srm are hidden
    # jsonschema's own message for a missing required property
    assert "fail public/answers.json does not match answers.schema.json: at the top level: " \
           "'decision' is a required property" in lines
    assert_nothing_hidden(reports[-1], "abtest", results)


def test_the_kit_holds_nothing_hidden_and_checks_a_good_submission(tmp_path: Path, results: Path,
                                                                   reports: list) -> None:
    kit = tmp_path / "kit"
    written = api.export_kit("ranker", kit, results_dir=results)
    names = {p.relative_to(kit).as_posix() for p in kit.rglob("*")}
    assert {"BRIEF.md", "CHECK.md", "check.yaml", "starter/train.py", "data/train/train.csv",
            "data/test/test.csv"} <= names
    hidden = ("test_labels", "hidden_tests", "hidden", "qrels", "calibration")
    assert [n for n in names if any(word in n for word in hidden)] == []  # nothing hidden was written
    spec = (kit / "check.yaml").read_text()
    assert [word for word in hidden if word in spec] == []
    assert kit / "check.yaml" in written
    assert "harness check . path/to/your/submission --run" in (kit / "CHECK.md").read_text()
    good = tmp_path / "good"
    shutil.copytree(REPO / "assignments" / "ranker" / "examples" / "good", good)
    code, lines = check(str(kit), good, results)
    assert code == 0, lines
    assert [line.split(" (")[0] for line in lines if line.startswith("ok   stage")] == [
        "ok   stage train ran", "ok   stage predict ran", "ok   stage tests ran"]
    rows = sum(1 for _ in (kit / "data" / "test" / "test.csv").open()) - 1
    assert ("ok   scores.csv has the header query_id,doc_id,score and one finite score for each of the "
            f"{rows} test rows") in lines
    report = reports[-1]
    assert all(kit.resolve() not in m.resolve().parents or m.resolve().parent == (kit / "data").resolve()
               for m in report.mounted)  # of the kit, only its public data sets are mounted
    assert_nothing_hidden(report, "ranker", results)


def test_a_service_is_started_and_sent_one_prediction_without_its_hidden_probe(results: Path,
                                                                             reports: list) -> None:
    code, lines = check("endpoint", REPO / "assignments" / "endpoint" / "examples" / "naive", results)
    assert code == 0, lines
    assert "ok   GET /health answered 200 after" in "\n".join(lines)
    # the reference model.predict answers a label in 0..2 (assignments/endpoint/BRIEF.md)
    assert any(line.startswith("ok   POST /predict answered a valid prediction (label ") for line in lines)
    assert "stage serve/probe" in "\n".join(lines)
    assert_nothing_hidden(reports[-1], "endpoint", results)


@pytest.mark.parametrize("assignment", ["ranker", "abtest", "endpoint"])
def test_every_shipped_assignment_exports_a_kit_the_check_loads(assignment: str, tmp_path: Path,
                                                              results: Path) -> None:
    from harness.kit import load_kit

    api.export_kit(assignment, tmp_path / "kit", results_dir=results)
    loaded, full = load_kit(tmp_path / "kit"), api.find_assignment(assignment)
    private = {*full.spec.data.hidden, *(set(full.spec.data.visible) - set(full.spec.data.public))}
    text = (tmp_path / "kit" / "check.yaml").read_text()
    assert [name for name in private if name in text] == []  # e.g. test_labels, srm, probe_inputs
    assert set(loaded.spec.data.visible) == set(full.spec.data.public) and not loaded.spec.data.hidden
    assert not any(stage.pytest and stage.pytest.hidden for stage in loaded.spec.stages)
