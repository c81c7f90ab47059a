"""A team MLflow server on PostgreSQL, for real: `scripts/team_mlflow.sh` starts Debian's PostgreSQL
(on a Unix socket) and `mlflow server` on 127.0.0.1; the harness logs there over HTTP, and what it
logged is read back through the server's REST API, not through the harness. Then the server goes
away mid-batch: the results stay on disk and `harness log` feeds them in later."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._cluster import free_port
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="needs Docker (scripts/setup.sh)")
EXAMPLES = REPO / "assignments" / "ranker" / "examples"


class TeamServer:
    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def script(self, command: str) -> None:
        done = subprocess.run(["bash", str(REPO / "scripts" / "team_mlflow.sh"), command, str(self.folder),
                               str(self.port)], capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]

    def get(self, path: str, **query: str) -> dict:
        with urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(query)}", timeout=30) as r:
            return json.load(r)

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.load(r)

    def runs(self) -> dict[str, dict]:
        """The submissions' runs of the ranker's experiment, by candidate, as the REST API has them."""
        experiment = self.get("/api/2.0/mlflow/experiments/get-by-name", experiment_name="ranker@1.0")
        found = self.post("/api/2.0/mlflow/runs/search",
                          {"experiment_ids": [experiment["experiment"]["experiment_id"]]}).get("runs", [])
        by_candidate = {}
        for run in found:
            tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
            if "mlgrade.submission_id" in tags:
                assert tags["candidate"] not in by_candidate, "two runs of one submission"
                by_candidate[tags["candidate"]] = run
        return by_candidate


@pytest.fixture
def server() -> Iterator[TeamServer]:
    # short: PostgreSQL's socket path must fit in 107 bytes; reachable by the postgres user
    folder = Path(tempfile.mkdtemp(prefix="mlpg-", dir="/tmp"))  # noqa: S108
    started = TeamServer(folder)
    started.script("start")
    yield started
    started.script("stop")
    shutil.rmtree(folder, ignore_errors=True)


def test_results_logged_to_a_team_server_read_back_through_its_rest_api(server, tmp_path):
    proc = run_cli("grade", "ranker", str(EXAMPLES / "good"), str(EXAMPLES / "baseline"), "--json",
                   "--results", str(tmp_path), "--tracking-uri", server.url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]  # stdout stays JSON lines only
    runs = server.runs()
    assert sorted(runs) == ["baseline", "good"]
    for line in lines:
        run = runs[line["candidate"]]
        assert run["info"]["status"] == "FINISHED"
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert metrics["total_score"] == line["total_score"]
        # the report, uploaded through the server's artifact proxy, is the one on disk
        artifact_uri = run["info"]["artifact_uri"]
        assert artifact_uri.startswith("mlflow-artifacts:/")
        path = artifact_uri.removeprefix("mlflow-artifacts:/") + "/report.md"
        with urllib.request.urlopen(f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{path}",
                                    timeout=30) as r:
            served = r.read()
        on_disk = next(tmp_path.glob(f"ranker/1.0/{line['candidate']}-*/report.md")).read_bytes()
        assert served == on_disk


def test_a_server_gone_mid_batch_leaves_the_results_on_disk_for_harness_log(server, tmp_path):
    names = ["good", "baseline", "broken"]
    proc = subprocess.Popen([sys.executable, "-m", "harness", "grade", "ranker",
                             *(str(EXAMPLES / n) for n in names), "--json", "--results", str(tmp_path),
                             "--tracking-uri", server.url], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("ranker/1.0/*/result.json")):
        assert time.monotonic() < deadline and proc.poll() is None, "nothing was graded"
        time.sleep(0.2)
    server.script("stop")
    out, err = proc.communicate(timeout=600)  # not minutes of retries per call: it says so and goes on
    assert proc.returncode == 5, err[-3000:]
    assert "not logged to MLflow" in err and "does not answer" in err, err[-3000:]
    graded = {json.loads(line)["candidate"]: json.loads(line) for line in out.splitlines()}
    assert set(graded) == set(names)
    assert {line["status"] for line in graded.values()} == {"ok", "error"}  # all graded all the same
    server.script("start")  # back, with the same database
    logged = run_cli("log", "ranker", "--results", str(tmp_path), "--tracking-uri", server.url)
    assert logged.returncode == 0, logged.stderr[-3000:]
    runs = server.runs()
    assert sorted(runs) == sorted(names)
    for name, run in runs.items():
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert metrics["total_score"] == graded[name]["total_score"]
