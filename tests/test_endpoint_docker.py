"""The endpoint assignment end to end: the real CLI, a server container, the probe container in its
network namespace, a real MLflow store. The examples' order is what a reviewer would give them.

The probe's load phases are shortened (a shorter latency run and at most 2 s per capacity step;
the grid, the bisections, the objective and the thresholds are the spec's) so the suite stays
within CI's budget; `harness demo endpoint` runs the full spec.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil

import pytest

from tests.conftest import REPO, assert_flagged_busy, earned, grade_until_quiet, json_lines, run_cli
from tests.test_e2e_docker import by_candidate, mlflow_runs

pytestmark = [pytest.mark.docker, pytest.mark.slow]
ASSIGNMENT = REPO / "assignments" / "endpoint"
# health: 40 s, as the first server of a batch can take 15-25 s to import torch from a cold page cache
SHORTER = {'--health-timeout, "60"': '--health-timeout, "40"', '--duration, "10"': '--duration, "4"',
           '--warmup, "1"': '--warmup, "0.5"', '--capacity-duration, "4"': '--capacity-duration, "2"'}


@pytest.fixture(scope="module")
def shorter(tmp_path_factory):
    """The endpoint assignment with shortened load phases."""
    folder = tmp_path_factory.mktemp("endpoint-spec") / "endpoint"
    shutil.copytree(ASSIGNMENT, folder, ignore=shutil.ignore_patterns("examples"))
    spec = (folder / "assignment.yaml").read_text()
    for old, new in SHORTER.items():
        assert old in spec, old
        spec = spec.replace(old, new)
    (folder / "assignment.yaml").write_text(spec)
    return folder


@pytest.fixture(scope="module")
def graded(shorter, tmp_path_factory):
    results = tmp_path_factory.mktemp("endpoint-results")
    subs = sorted(str(p) for p in (ASSIGNMENT / "examples").iterdir() if p.is_dir())
    _, lines = grade_until_quiet(str(shorter), *subs, "--results", str(results))
    return results, lines


def quiet(lines: dict[str, dict], *names: str) -> bool:
    """Whether these candidates' timed criteria were graded. On a host that stayed busy through
    the re-runs they are flagged instead (checked in each test), and the comparisons of their
    speed are made where the machine allowed a measurement."""
    for name in names:
        if lines[name]["status"] == "machine_busy":
            assert_flagged_busy(lines[name])
            return False
    return True


def test_examples_order_as_a_reviewer_would(graded):
    _, lines = graded
    total = {name: line["total_score"] for name, line in lines.items()}
    assert set(total) == {"fast", "naive", "crashes_on_bad_input", "wrong_predictions", "never_healthy",
                          "fastapi_uvicorn", "flask_gunicorn"}
    # what no load on the machine can change: serving right and robustly, tests and code
    untimed = {name: earned(line, skip=frozenset({"load"})) for name, line in lines.items()}
    assert untimed["fast"] > untimed["crashes_on_bad_input"] > untimed["wrong_predictions"]
    assert untimed["naive"] > untimed["crashes_on_bad_input"]
    if quiet(lines, "fast"):
        assert total["fast"] >= 90
    if quiet(lines, "fast", "naive", "crashes_on_bad_input", "wrong_predictions"):
        assert total["fast"] > total["naive"] > total["crashes_on_bad_input"] > total["wrong_predictions"]
    # the popular stacks, written as candidates write them (their packages from requirements.txt):
    # correct, robust and reasonably fast, so with `fast` and above `naive`, whatever their order
    for name in ("fastapi_uvicorn", "flask_gunicorn"):
        crit = lines[name]["criteria"]
        assert lines[name]["status"] in ("ok", "machine_busy"), lines[name]["message"]
        assert crit["correctness"]["score"] == 1 and crit["robustness"]["score"] == 1, name
        assert crit["own_tests"]["score"] == 1, name
        if quiet(lines, name):
            assert crit["latency"]["score"] > 0.9, name
        if quiet(lines, name, "naive"):
            assert total[name] > total["naive"], (name, total)
    # A server that never becomes healthy earns nothing for the service, and so nothing for its
    # tests or code either (engineering `requires: [correctness]`)
    assert earned(lines["never_healthy"], skip=frozenset({"engineering"})) == 0
    assert untimed["never_healthy"] == 0 < untimed["wrong_predictions"]
    if quiet(lines, "never_healthy", "wrong_predictions"):
        assert total["never_healthy"] == 0 < total["wrong_predictions"] < 5  # 7% right: its correctness only


def test_each_measure_explains_the_failure_it_found(graded):
    _, lines = graded
    crit = {name: line["criteria"] for name, line in lines.items()}
    assert crit["fast"]["robustness"]["score"] == 1 and crit["fast"]["correctness"]["score"] == 1
    assert crit["crashes_on_bad_input"]["robustness"]["score"] < 0.5
    assert lines["crashes_on_bad_input"]["status"] == "error"  # the server died
    assert crit["wrong_predictions"]["correctness"]["score"] < 0.7
    assert crit["never_healthy"]["cold_start"]["score"] == 0
    if quiet(lines, "fast", "naive"):
        assert crit["naive"]["latency"]["metrics"]["p99_ms"] > crit["fast"]["latency"]["metrics"]["p99_ms"]


def test_mlflow_has_the_plots_the_histogram_and_peak_memory(graded):
    results, _ = graded
    from mlflow.tracking import MlflowClient

    runs = by_candidate(mlflow_runs(results, "endpoint@1.0"))
    fast = runs["fast"]
    assert {"score.latency", "latency.p99_ms", "capacity.capacity_rps", "serve.peak_memory_mb",
            "group.load"} <= set(fast.data.metrics)
    client = MlflowClient(tracking_uri=f"sqlite:///{results}/mlflow.db")
    latency = {a.path for a in client.list_artifacts(fast.info.run_id, "artifacts/latency")}
    assert {"artifacts/latency/latency.png", "artifacts/latency/latency.hgrm"} <= latency
    capacity = {a.path for a in client.list_artifacts(fast.info.run_id, "artifacts/capacity")}
    assert "artifacts/capacity/capacity.png" in capacity


def test_the_local_backend_grades_a_service_over_loopback(shorter, graded, tmp_path):
    # Two bubblewrap sandboxes, the probe's started in the server's network namespace: the same
    # verdicts as in Docker for a good server and one that dies on bad input.
    subs = [str(ASSIGNMENT / "examples" / name) for name in ("fast", "crashes_on_bad_input")]
    _, local = grade_until_quiet(str(shorter), *subs, "--backend", "local", "--allow-weaker-isolation",
                                 "--no-mlflow", "--results", str(tmp_path / "r"), timeout=900)
    docker = graded[1]
    for name in ("fast", "crashes_on_bad_input"):
        if quiet(local, name) and quiet(docker, name):
            assert local[name]["status"] == docker[name]["status"]
        for criterion in ("correctness", "robustness"):
            assert local[name]["criteria"][criterion]["score"] == pytest.approx(
                docker[name]["criteria"][criterion]["score"], abs=0.05), (name, criterion)
        # start-up seconds depend on the machine's load at that moment: healthy is what must agree
        assert local[name]["criteria"]["cold_start"]["metrics"]["healthy"] == 1
    # the latency was measured over loopback (how fast depends on the machine at that moment: the
    # grade's stability under load is the cpu-hog test's business below)
    latency = local["fast"]["criteria"]["latency"]
    if quiet(local, "fast"):
        assert latency["metrics"]["error_rate"] == 0 and latency["metrics"]["p99_ms"] > 0, latency
        assert latency["score"] > 0, latency


HOSTILE = REPO / "tests" / "fixtures" / "endpoint_hostile"


@pytest.fixture(scope="module")
def hostile(shorter, tmp_path_factory):
    results = tmp_path_factory.mktemp("endpoint-hostile")
    subs = sorted(str(p) for p in HOSTILE.iterdir() if p.is_dir())
    # two at a time: none of these is graded on its speed against a threshold near its own
    _, lines = grade_until_quiet(str(shorter), *subs, "--no-mlflow", "--jobs", "2", "--results", str(results))
    stored = [json.loads(p.read_text()) for p in results.rglob("result.json")]
    return {result["candidate"]: result for result in stored}, lines


def test_slow_broken_and_gaming_servers_are_graded_not_crashed_on(hostile):
    # Each once ended `infra_error` after three attempts, or scored like the fast example.
    hostile, lines = hostile
    expected = {"slow_blocking": "ok", "canned_single": "ok", "huge_int": "ok", "no_predict_route": "ok",
                "other_schema": "ok", "exits_at_start": "error"}
    assert {name: (result["status"] if quiet(lines, name) else expected[name], result["attempts"])
            for name, result in hostile.items()} == {name: (status, 1) for name, status in expected.items()}
    crit = {name: {c["name"]: c for c in result["criteria"]} for name, result in hostile.items()}
    slow = crit["slow_blocking"]
    assert slow["correctness"]["score"] == 1
    if quiet(lines, "slow_blocking"):
        assert slow["capacity"]["score"] == 0 and slow["latency"]["score"] < 0.5
        plotted = "capacity.png" in slow["capacity"]["details"]["artifacts"]
        assert plotted or "No plot:" in slow["capacity"]["explanation"]
    # canned answers to single instances: right on the correctness batches, no credit for speed
    canned = crit["canned_single"]
    assert canned["correctness"]["score"] == 1
    if quiet(lines, "canned_single"):
        assert canned["latency"]["score"] < 0.05 and canned["capacity"]["score"] < 0.05
        assert "sampled answers of the latency requests correct" in canned["latency"]["explanation"]
    # a 400-digit probability: that item is wrong (the first of each of the 32 batches of 16)
    assert crit["huge_int"]["correctness"]["score"] == pytest.approx(480 / 512)


def test_a_server_that_serves_no_valid_request_earns_no_robustness_or_cold_start(hostile):
    # A 404 to every /predict (the route is /api/v1/predict) and a 422 to every valid request
    # (it wants {"features": ...}): both refuse the bad requests too, and are up in seconds. They
    # once scored 26 to 32 of 100 with 0 of 512 right answers.
    hostile, lines = hostile
    for name, status in (("no_predict_route", "HTTP 404"), ("other_schema", "HTTP 422")):
        crit = {c["name"]: c for c in hostile[name]["criteria"]}
        assert crit["correctness"]["score"] == 0
        for criterion in ("robustness", "cold_start"):
            assert crit[criterion]["score"] == 0, (name, crit[criterion]["explanation"])
            assert crit[criterion]["metrics"]["measured_score"] > 0.5  # what it would have earned
            explanation = crit[criterion]["explanation"]
            assert "does not serve valid requests: 0/512 hidden inputs answered right" in explanation
            assert status in explanation  # the reason a reviewer can act on
        # nor do its tests and code (engineering `requires: [correctness]`), though it has some
        assert crit["code_quality"]["score"] == 0 < crit["code_quality"]["metrics"]["ungated_score"]
        if quiet(lines, name):
            assert hostile[name]["total_score"] == 0


def test_a_server_that_exits_at_start_is_reported_at_once_with_its_exception(hostile):
    # It imports torch, then a module it forgot to list in requirements.txt. It was polled for the
    # whole health timeout, and the note said only "exited with code 1".
    from sandbox._service import TOLD_DETAIL

    result = hostile[0]["exits_at_start"]
    assert result["status"] == "error"
    assert "ModuleNotFoundError: No module named 'pydantic_settings'" in result["message"]
    stages = {s["name"]: s for s in result["stages"]}
    assert stages["serve"]["detail"].startswith("exited by itself with code 1 before its probe was done")
    if "serve/probe" in stages:  # else the probe was told before it could even start listening for it
        assert stages["serve/probe"]["detail"] == TOLD_DETAIL  # ended because told, not at its timeout
        cold = next(c for c in result["criteria"] if c["name"] == "cold_start")
        assert "the server exited" in cold["explanation"] and "within 20 s" not in cold["explanation"]


def _spin() -> None:
    while True:
        pass


def test_under_a_cpu_hog_a_grade_is_close_to_the_idle_one_or_flagged_never_silently_low(shorter, graded,
                                                                                       tmp_path):
    """Before the machine check, `fast` graded beside busy processes scored 65 (96.8 idle) and
    nothing said why. Now: within 3 points of its idle grade, or latency and capacity ungraded."""
    folder = tmp_path / "endpoint"
    shutil.copytree(shorter, folder)
    spec = (folder / "assignment.yaml").read_text()
    assert "retries: 2, backoff: 10" in spec
    (folder / "assignment.yaml").write_text(spec.replace("retries: 2, backoff: 10", "retries: 0, backoff: 0"))
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(2)]  # the test's own, bounded
    for hog in hogs:
        hog.start()
    try:
        proc = run_cli("grade", str(folder), str(ASSIGNMENT / "examples" / "fast"), "--json", "--no-mlflow",
                       "--results", str(tmp_path / "results"), timeout=600)
    finally:
        for hog in hogs:
            hog.kill()
    line = json_lines(proc.stdout)["fast"]
    if line["status"] == "machine_busy":
        assert proc.returncode != 0
        assert_flagged_busy(line)
        report = next((tmp_path / "results").glob("endpoint/*/fast-*/report.md")).read_text()
        assert "| ungraded |" in report and "Machine during the timed phases" in report
    else:  # a machine with cores to spare for the hogs
        assert line["status"] == "ok", line
        if quiet(graded[1], "fast"):
            idle = graded[1]["fast"]["total_score"]
            assert abs(line["total_score"] - idle) <= 3, (line, idle)
