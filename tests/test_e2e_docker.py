"""End to end through the real CLI, real Docker and a real MLflow store (sqlite), read back."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from harness.formats import markdown_cell
from tests.conftest import REPO, earned, json_lines, run_cli
from tests.test_intake import git_repo

pytestmark = [pytest.mark.docker, pytest.mark.slow]
EXAMPLES = REPO / "assignments" / "ranker" / "examples"
SLEEPY = REPO / "tests" / "fixtures" / "assignments" / "sleepy"


def mlflow_runs(results: Path, experiment: str, *, cohort: bool = False) -> list:
    """The candidates' runs of `experiment` (or, with `cohort`, its parent runs)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{results}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    runs = [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if ("mlgrade.cohort" in r.data.tags) == cohort]


def by_candidate(runs: list) -> dict:
    return {r.data.tags["candidate"]: r for r in runs}


@pytest.fixture(scope="module")
def graded_examples(tmp_path_factory):
    results = tmp_path_factory.mktemp("ranker-results")
    subs = sorted(str(p) for p in EXAMPLES.iterdir() if p.is_dir())
    proc = run_cli("grade", "ranker", *subs, "--jobs", "2", "--json", "--results", str(results))
    return results, proc


ENGINEERING = frozenset({"engineering"})


STRONG = ("good", "lightgbm_lambdamart", "xgboost_ranker")  # sound, tuned learners with tests


def test_examples_grade_in_the_order_a_reviewer_expects(graded_examples):
    _, proc = graded_examples
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = json_lines(proc.stdout)
    assert set(lines) == {*STRONG, "baseline", "bad_output", "broken"}
    # The popular stacks, installed from requirements.txt: LightGBM's LambdaMART loads (the base
    # image carries libgomp1) and XGBoost's XGBRanker comes from xgboost-cpu (no CUDA wheels).
    for name in STRONG:
        line = lines[name]
        assert line["status"] == "ok", (name, line["message"])
        assert line["criteria"]["hidden_tests"]["score"] == 1, name
        ndcg = line["criteria"]["ndcg"]
        # measured as a share of the oracle's gain over bm25 (README, "The ranker grader"): a
        # tuned model gets about two thirds of the way; none nears the oracle
        assert 0.55 < ndcg["metrics"]["ndcg_gain_share"] < 0.8, name
        assert ndcg["metrics"]["ndcg_at_10"] < ndcg["metrics"]["oracle_ndcg_at_10"] - 0.08, name
        assert ndcg["score"] > 0.9, name  # every sound, tuned method earns (nearly) full credit
    # the ladder: the three strong ones within a few points of each other, far above bm25 alone,
    # which is above its damaged copy; a crash earns nothing but its static code quality
    totals = {name: line["total_score"] for name, line in lines.items()}
    assert max(totals[n] for n in STRONG) - min(totals[n] for n in STRONG) < 8, totals
    assert min(totals[n] for n in STRONG) > 90 > 35 > totals["baseline"] > totals["bad_output"], totals
    assert lines["broken"]["status"] == "error" and earned(lines["broken"], skip=ENGINEERING) == 0
    # engineering counts only for a ranker better than bm25 (spec `requires`): neither the crash nor
    # the damaged bm25 copy earns anything, and bm25 alone only its passed contract tests
    assert totals["broken"] == totals["bad_output"] == 0, totals
    assert earned(lines["baseline"], groups={"engineering"}) == 0
    # bm25 alone is the scale's reference (share 0) and earns no NDCG credit; it passes the hidden
    # contract tests but not the learning one, and has no tests of its own
    baseline = lines["baseline"]["criteria"]
    assert baseline["ndcg"]["metrics"]["ndcg_gain_share"] == 0 and baseline["ndcg"]["score"] == 0
    assert totals["baseline"] > 0 and baseline["hidden_tests"]["metrics"]["points"] == 5
    ndcg = lines["good"]["criteria"]["ndcg"]
    assert ndcg["weight"] == 6 and "ndcg_at_10" in ndcg["metrics"]


def test_mlflow_has_one_comparable_run_per_submission(graded_examples):
    results, _ = graded_examples
    runs = mlflow_runs(results, "ranker@1.0")
    assert sorted(r.info.run_name for r in runs) == ["bad_output", "baseline", "broken (error)", "good",
                                                     "lightgbm_lambdamart", "xgboost_ranker"]
    good = by_candidate(runs)["good"]
    assert good.info.status == "FINISHED"
    assert {"total_score", "score.ndcg", "ndcg.ndcg_at_10", "ndcg.map", "ndcg.mrr",
            "train.seconds", "predict.seconds"} <= set(good.data.metrics)
    assert {"assignment_version", "harness_version", "backend"} <= set(good.data.params)
    assert {"mlgrade.content_hash", "mlgrade.image_id", "mlgrade.submission_id"} <= set(good.data.tags)
    assert good.data.tags["candidate"] == "good" and good.data.tags["status"] == "ok"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{results}/mlflow.db")
    names = {a.path for a in client.list_artifacts(good.info.run_id)}
    assert {"result.json", "report.md", "logs", "outputs"} <= names
    # The reviewer's entry point: one parent run holding the leaderboard, and the URL of the view
    # sorted by total score (tests/test_mlflow_views.py checks the view itself).
    (parent,) = mlflow_runs(results, "ranker@1.0", cohort=True)
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in runs)
    best = max(runs, key=lambda r: r.data.metrics["total_score"]).data.tags["candidate"]
    assert f"| 1 | {markdown_cell(best)} |" in parent.data.tags["mlflow.note.content"]
    ui = run_cli("ui", "--results", str(results))
    assert f"/#/experiments/{good.info.experiment_id}/runs?viewStateShareKey=leaderboard" in ui.stdout


def test_regrade_skips_and_results_lists_without_grading(graded_examples):
    results, _ = graded_examples
    subs = sorted(str(p) for p in EXAMPLES.iterdir() if p.is_dir())
    again = run_cli("grade", "ranker", *subs, "--results", str(results))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already graded" in again.stdout
    assert len(mlflow_runs(results, "ranker@1.0")) == len(subs)  # no duplicate runs
    assert len(mlflow_runs(results, "ranker@1.0", cohort=True)) == 1  # nor a second parent
    listed = run_cli("results", "ranker", "--json", "--results", str(results))
    assert listed.returncode == 0
    ranked = [json.loads(line)["candidate"] for line in listed.stdout.splitlines()]
    assert ranked[0] in STRONG


def test_report_and_logs_reach_the_result_folder(graded_examples):
    results, _ = graded_examples
    folder = next((results / "ranker" / "1.0").glob("broken-*"))
    report = (folder / "report.md").read_text()
    assert "broken" in report and "error" in report
    assert "Traceback" in (folder / "logs" / "train.log").read_text()


def test_sigkill_mid_batch_then_rerun_leaves_no_gap_and_no_duplicate(tmp_path):
    results = tmp_path / "results"
    subs = []
    for i in range(6):
        (tmp_path / f"s{i}").mkdir()
        (tmp_path / f"s{i}" / "README.md").write_text(f"submission {i}")
        subs.append(str(tmp_path / f"s{i}"))
    args = [sys.executable, "-m", "harness", "grade", str(SLEEPY), *subs, "--results", str(results)]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    folder = results / "sleepy" / "1.0"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(folder.glob("*/result.json"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(folder.glob("*/result.json")))
    assert 2 <= done_before < 6
    rerun = run_cli("grade", str(SLEEPY), *subs, "--results", str(results), "--json")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(json_lines(rerun.stdout)) == 6
    assert len(list(folder.glob("*/result.json"))) == 6
    runs = mlflow_runs(results, "sleepy@1.0")
    assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs)
    keys = [r.data.tags["mlgrade.result_key"] for r in runs]
    assert len(set(keys)) == 6
    left = docker.from_env().containers.list(all=True, filters={"label": "mlgrade.assignment=sleepy@1.0"})
    assert left == []  # containers of the killed process were reaped


def test_bad_spec_and_bad_input_exit_codes(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "assignment.yaml").write_text("schema_version: 1\nid: bad\nversion: 1.10\n")
    proc = run_cli("assignments", "validate", str(bad))
    assert proc.returncode == 3 and "version" in proc.stderr
    proc = run_cli("grade", "ranker", str(tmp_path / "does-not-exist"), "--results", str(tmp_path / "r"),
                   "--no-mlflow")
    assert proc.returncode == 4


def _default_sigint() -> None:
    # A shell starting a background job sets SIGINT to "ignore", and children inherit that;
    # give the harness the default a terminal would, so Ctrl-C reaches it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_kills_and_removes_running_containers(tmp_path, signum):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "README.md").write_text("waits")
    slow = REPO / "tests" / "fixtures" / "assignments" / "slow"
    client = docker.from_env()
    proc = subprocess.Popen([sys.executable, "-m", "harness", "grade", str(slow), str(tmp_path / "sub"),
                             "--results", str(tmp_path / "results"), "--no-mlflow"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    mine = {"label": f"mlgrade.owner={socket.gethostname()}:{proc.pid}"}  # this process's containers only
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not client.containers.list(filters=mine):
        time.sleep(0.2)
    assert client.containers.list(filters=mine), "the stage container never started"
    proc.send_signal(signum)
    # The stage would run for 120 s; a liveness bound, not a performance target.
    proc.wait(timeout=60)
    assert proc.returncode == 130, proc.stderr.read()
    assert client.containers.list(all=True, filters=mine) == []


def test_every_kind_of_source_is_graded_through_the_cli(tmp_path):
    import shutil
    import tarfile
    import zipfile

    probe = REPO / "tests" / "fixtures" / "assignments" / "probe"
    code = "open('/output/found.txt', 'w').write('hello')\n"
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "main.py").write_text(code)
    with zipfile.ZipFile(tmp_path / "zipped.zip", "w") as archive:
        archive.write(folder / "main.py", "zipped/main.py")
    with tarfile.open(tmp_path / "tarred.tar.gz", "w:gz") as archive:
        archive.add(folder / "main.py", "main.py")
    repo = tmp_path / "repo"
    shutil.copytree(folder, repo)
    git_repo(repo)  # the intake tests' helper: no host git config leaks in
    sources = [str(folder), str(tmp_path / "zipped.zip"), str(tmp_path / "tarred.tar.gz"), f"file://{repo}#HEAD"]
    proc = run_cli("grade", str(probe), *sources, "--json", "--no-mlflow", "--results", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = json_lines(proc.stdout)
    assert set(lines) == {"plain", "zipped", "tarred", "repo"}
    assert all(line["status"] == "ok" and line["total_score"] == 100 for line in lines.values())
    keys = {line["key"] for line in lines.values()}
    assert len(keys) == 4  # one result per candidate, though the code is the same
