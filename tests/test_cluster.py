"""Grading on a Dask cluster, for real: a `dask scheduler` and `harness worker` processes on
127.0.0.1, Docker sandboxes on the workers, the graders in the coordinator (README: "Grading on
several machines"). The reference is a local grade of the same examples on this machine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._cluster import Cluster, start_cluster
from tests.conftest import REPO, json_lines, run_cli

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="needs Docker (scripts/setup.sh)")

EXAMPLES = sorted(str(p) for p in (REPO / "assignments" / "ranker" / "examples").iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    started = start_cluster(tmp_path_factory.mktemp("cluster"), ("w1", "w2"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def local_grade(tmp_path_factory) -> dict[str, dict]:
    """The ranker examples graded on this machine: what a cluster's grade must equal."""
    results = tmp_path_factory.mktemp("local")
    proc = run_cli("grade", "ranker", *EXAMPLES, "--jobs", "2", "--no-mlflow", "--json",
                   "--results", str(results))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json_lines(proc.stdout)


def _scores(lines: dict[str, dict]) -> dict[str, tuple]:
    """Every candidate's status, total and each criterion's score and metrics (all deterministic
    for the ranker: no timed criterion)."""
    return {name: (line["status"], line["total_score"],
                   {c: (v["score"], v.get("metrics")) for c, v in line["criteria"].items()})
            for name, line in lines.items()}


def _mlflow_runs(results: Path) -> list:
    """The submissions' runs in the results folder's MLflow store (not the round's leaderboard run)."""
    import mlflow

    from harness.mlflow_fields import SUBMISSION_TAG

    client = mlflow.MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiments = client.search_experiments()
    return [run for e in experiments for run in client.search_runs([e.experiment_id])
            if SUBMISSION_TAG in run.data.tags]


def test_ranker_examples_on_two_workers_score_as_a_local_grade(cluster, local_grade, tmp_path):
    proc = run_cli("grade", "ranker", *EXAMPLES, "--json", "--results", str(tmp_path),
                   env={"HARNESS_CLUSTER": cluster.address})
    assert proc.returncode == 0, proc.stderr[-3000:]
    graded = json_lines(proc.stdout)
    assert _scores(graded) == _scores(local_grade)
    assert graded["good"]["total_score"] > 90 > graded["baseline"]["total_score"]  # the examples do differ
    # both workers ran stages: each unpacked the data it was sent
    for name in ("w1", "w2"):
        assert list((cluster.tmp / name / ".cache" / "worker" / "blobs").iterdir()), name
    # one MLflow run per submission, written by the coordinator, as a local grade writes them
    runs = _mlflow_runs(tmp_path)
    assert sorted(r.data.tags["candidate"] for r in runs) == sorted(graded)
    assert {r.data.metrics["total_score"] for r in runs} == {line["total_score"] for line in graded.values()}


def test_nothing_hidden_is_sent_to_a_worker(cluster, tmp_path, monkeypatch):
    """Everything the coordinator hands Dask (task arguments and scattered data) is serialised
    here and searched for the hidden labels and the install's secret seed; the visible training
    data must be found, so the search sees what travels."""
    from distributed import Client
    from distributed.protocol.pickle import dumps

    from harness import api
    from harness.data import materialize
    from harness.spec import SECRETS_DIR, load_assignment

    sent: list[bytes] = []
    real_submit, real_scatter = Client.submit, Client.scatter

    def submit(self, func, *args, **kwargs):
        sent.append(dumps((func, args, kwargs)))
        return real_submit(self, func, *args, **kwargs)

    def scatter(self, data, *args, **kwargs):
        sent.append(dumps(data))
        return real_scatter(self, data, *args, **kwargs)

    monkeypatch.setattr(Client, "submit", submit)
    monkeypatch.setattr(Client, "scatter", scatter)
    good = str(REPO / "assignments" / "ranker" / "examples" / "good")
    report = api.grade("ranker", [good], results_dir=tmp_path, cluster=cluster.address,
                       log_to_mlflow=False)
    assert report.exit_code == 0 and report.items[0].result.total_score > 90
    payload = b"".join(sent)
    assignment = load_assignment(REPO / "assignments" / "ranker")
    data = materialize(assignment, cache_root=tmp_path / ".cache")
    secrets = [p.read_bytes().strip() for p in (assignment.dir / SECRETS_DIR).iterdir() if p.is_file()]
    hidden = [p.read_bytes() for root in data.hidden.values() for p in sorted(root.rglob("*")) if p.is_file()]
    visible = [p.read_bytes() for p in sorted(data.visible["train"].rglob("*")) if p.is_file()]
    assert secrets and hidden and visible

    def windows(blob: bytes) -> list[bytes]:  # 256-byte pieces from across the file
        return [blob[i:i + 256] for i in range(0, max(len(blob) - 256, 1), max(len(blob) // 16, 1))]

    assert all(piece in payload for blob in visible for piece in windows(blob))
    assert not any(seed in payload for seed in secrets)
    assert not any(piece in payload for blob in hidden for piece in windows(blob))


def test_a_worker_killed_mid_submission_has_its_work_graded_once_elsewhere(cluster, local_grade, tmp_path):
    import docker

    proc = subprocess.Popen([sys.executable, "-m", "harness", "grade", "ranker", *EXAMPLES, "--json",
                             "--results", str(tmp_path), "--cluster", cluster.address],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = cluster.workers["w1"]
    client = docker.from_env()
    owner = f"{socket.gethostname()}:{victim.pid}"
    deadline = time.monotonic() + 300
    while not client.containers.list(filters={"label": f"mlgrade.owner={owner}"}):  # a stage is running
        assert time.monotonic() < deadline and proc.poll() is None, "w1 never ran a stage"
        time.sleep(0.2)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    assert _scores(json_lines(out)) == _scores(local_grade)
    runs = _mlflow_runs(tmp_path)
    assert len(runs) == len(EXAMPLES)  # graded once: no run twice
    # the dead worker's containers are removed when a worker starts again on this machine
    cluster.start_worker("w1")
    cluster.wait_for_workers(2)
    deadline = time.monotonic() + 60
    while client.containers.list(all=True, filters={"label": f"mlgrade.owner={owner}"}):
        assert time.monotonic() < deadline, "the killed worker's containers were left"
        time.sleep(0.5)


def test_a_worker_with_other_code_is_refused_naming_both_versions(tmp_path):
    """A worker whose harness differs by one line (a copy of the package, changed) is refused:
    every submission is infra_error with both versions named, and nothing is graded."""
    from harness.worker import code_fingerprint

    copy = tmp_path / "other"
    for package in ("harness", "sandbox", "graders"):
        shutil.copytree(REPO / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "harness" / "worker.py").open("a") as fh:
        fh.write("# another build\n")
    skewed = start_cluster(tmp_path)
    try:
        skewed.start_worker("old", env={"PYTHONPATH": str(copy)}, cwd=copy)
        skewed.wait_for_workers(1)
        good = str(REPO / "assignments" / "ranker" / "examples" / "good")
        proc = run_cli("grade", "ranker", good, "--json", "--no-mlflow", "--results", str(tmp_path / "r"),
                       "--cluster", skewed.address)
    finally:
        skewed.stop()
    assert proc.returncode == 5, proc.stderr[-2000:]
    line = json_lines(proc.stdout)["good"]
    assert line["status"] == "infra_error" and line["total_score"] is None
    assert f"the coordinator {code_fingerprint()}" in line["message"]
    other = line["message"].split("worker old runs harness ")[1].split(",")[0]
    assert other.startswith("0.") and other != code_fingerprint()


def test_the_scheduler_going_away_stops_the_batch_and_a_rerun_resumes(tmp_path):
    (tmp_path / "first").mkdir()
    lost = start_cluster(tmp_path / "first", ("solo",))
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "grade", "ranker", *EXAMPLES, "--json",
                             "--no-mlflow", "--results", str(results), "--cluster", lost.address],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not list(results.glob("ranker/1.0/*/result.json")):  # one graded
            assert time.monotonic() < deadline and proc.poll() is None, "nothing was graded"
            time.sleep(0.2)
        os.killpg(lost.scheduler.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        lost.stop()
    assert proc.returncode == 5, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: the Dask scheduler at {lost.address} went away"), err[-2000:]
    saved = {p: p.read_bytes() for p in results.glob("ranker/1.0/*/result.json")}
    # graded ones are kept; those in flight when it went away are ungraded, for the re-run
    kept = {p: raw for p, raw in saved.items() if json.loads(raw)["status"] in ("ok", "error")}
    assert kept and len(kept) < len(EXAMPLES)
    assert all(json.loads(raw)["message"] == "ungraded: cancelled"
               for p, raw in saved.items() if p not in kept)
    # a new cluster; the same command grades the rest and resumes what was kept
    (tmp_path / "second").mkdir()
    again = start_cluster(tmp_path / "second", ("solo",))
    try:
        rerun = run_cli("grade", "ranker", *EXAMPLES, "--json", "--no-mlflow", "--results", str(results),
                        "--cluster", again.address)
    finally:
        again.stop()
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    lines = json_lines(rerun.stdout)
    assert set(lines) == {Path(e).name for e in EXAMPLES}
    assert {line["status"] for line in lines.values()} <= {"ok", "error"}
    assert all(p.read_bytes() == raw for p, raw in kept.items())  # resumed, not graded again
