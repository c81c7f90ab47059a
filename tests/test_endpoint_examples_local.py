"""The endpoint example servers and the starter, run on the host (no Docker) on loopback.

Each server is copied to a temporary folder whose serve.json gets a free port, then started with
the command from its serve.json (`python` is this interpreter), its own folder as the working
directory and MODEL_DIR pointing at a freshly generated model, as the harness's runner does.
Answers are compared with the reference predictions written by the assignment's generator,
which tests/test_endpoint_model.py checks against an independent forward pass. The Docker
end-to-end run, with the harness's probe, is tested elsewhere.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

ASSIGNMENT = Path(__file__).resolve().parents[1] / "assignments" / "endpoint"
EXAMPLES = ASSIGNMENT / "examples"
SCHEMA = json.loads((ASSIGNMENT / "starter" / "serve.schema.json").read_text())
SECRET = 287164013861046328101838950627346937523  # drawn once with secrets.randbits(128)
SERVERS = ("fast", "naive", "crashes_on_bad_input", "wrong_predictions", "never_healthy", "starter")
TOLERANCE = 0.02  # the brief's: every probability within this of the reference
JSON = {"Content-Type": "application/json"}


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    log: Path


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer (connection refused, reset or timed out)
    body: bytes = b""

    def json(self):
        return json.loads(self.body)


def request(server: Server, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None, timeout: float = 10) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.read(1 << 20))
    except (OSError, http.client.HTTPException):
        return Answer(0)
    finally:
        connection.close()


def predict(server: Server, instances: list) -> Answer:
    return request(server, "POST", "/predict", json.dumps({"instances": instances}).encode(), JSON)


def wait_healthy(server: Server, path: str = "/health", deadline: float = 90) -> bool:
    """Poll until `path` answers 200; False if the process exits first or the deadline passes."""
    end = time.monotonic() + deadline
    while time.monotonic() < end and server.process.poll() is None:
        if request(server, "GET", path, timeout=2).status == 200:
            return True
        time.sleep(0.1)
    return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(name: str, root: Path, model_dir: Path) -> Server:
    folder = root / name
    shutil.copytree(ASSIGNMENT / "starter" if name == "starter" else EXAMPLES / name, folder)
    manifest = json.loads((folder / "serve.json").read_text())
    manifest["port"] = _free_port()
    (folder / "serve.json").write_text(json.dumps(manifest))
    program, *args = manifest["command"]
    command = [sys.executable if program == "python" else program, *args]
    env = {**os.environ, "MODEL_DIR": str(model_dir), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    log = root / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server(name, manifest["port"], process, log)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("endpoint-data")
    (root / "hidden").mkdir()
    (root / "hidden" / "seed.txt").write_text(f"{SECRET}\n")
    generator = ASSIGNMENT / "data" / "generate.py"
    spec = importlib.util.spec_from_file_location("endpoint_generate_local", generator)
    generate = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = generate
    spec.loader.exec_module(generate)
    generate.materialize(root / "data", root / "hidden")
    return root / "data"


@pytest.fixture(scope="module")
def servers(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    root = tmp_path_factory.mktemp("endpoint-servers")
    started: dict[str, Server] = {}
    try:
        for name in SERVERS:  # all at once: each spends seconds importing torch
            started[name] = _start(name, root, data / "model")
        yield started
    finally:
        for server in started.values():
            server.process.kill()
            server.process.wait(timeout=30)


@pytest.fixture(scope="module")
def batch(data: Path) -> tuple[list, list]:
    """16 probe inputs, one of every edge-case kind first, and their reference answers."""
    inputs = json.loads((data / "probe_inputs" / "inputs.json").read_text())
    reference = json.loads((data / "reference" / "predictions.json").read_text())
    kinds = json.loads((data / "reference" / "inputs_meta.json").read_text())["kinds"]
    picked = [kinds.index(k) for k in dict.fromkeys(kinds)]  # the first input of each kind
    picked += [i for i in range(len(inputs)) if i not in picked][:16 - len(picked)]
    return [inputs[i] for i in picked], [reference[i] for i in picked]


def _within_tolerance(answer: dict, expected: dict) -> bool:
    pairs = zip(answer["probabilities"], expected["probabilities"], strict=True)
    return answer["label"] == expected["label"] and all(abs(a - e) <= TOLERANCE for a, e in pairs)


def _healthy(servers: dict[str, Server], name: str) -> Server:
    server = servers[name]
    assert wait_healthy(server), f"{name} never became healthy:\n{server.log.read_text()[-2000:]}"
    return server


BAD_REQUESTS = {
    "invalid_json": ("POST", "/predict", b'{"instances": [[1, 2', JSON),
    "wrong_content_type": ("POST", "/predict", json.dumps({"instances": [[1.0] * 20]}).encode(),
                           {"Content-Type": "text/plain"}),
    "wrong_feature_count": ("POST", "/predict", json.dumps({"instances": [[1.0] * 19]}).encode(), JSON),
    "batch_over_max": ("POST", "/predict", json.dumps({"instances": [[1.0] * 20] * 65}).encode(), JSON),
    "nan_values": ("POST", "/predict", b'{"instances": [[NaN' + b", 1" * 19 + b"]]}", JSON),
    "inf_values": ("POST", "/predict", b'{"instances": [[1e999' + b", 1" * 19 + b"]]}", JSON),
    "huge_body": ("POST", "/predict", json.dumps({"instances": [[123.456789] * 20] * 30_000}).encode(), JSON),
    "unknown_route": ("POST", "/nope", b"{}", JSON),
}


def test_serve_json_files_follow_the_schema() -> None:
    validator = Draft202012Validator(SCHEMA)
    Draft202012Validator.check_schema(SCHEMA)
    for folder in [ASSIGNMENT / "starter", *(EXAMPLES / n for n in SERVERS if n != "starter")]:
        assert not list(validator.iter_errors(json.loads((folder / "serve.json").read_text()))), folder
    for bad in ({"command": [], "port": 8000}, {"command": "python server.py", "port": 8000},
                {"command": ["python"], "port": 80}, {"command": ["python"], "port": 8000, "env": {}},
                {"command": ["x" * 257], "port": 8000}, {"port": 8000}):
        assert list(validator.iter_errors(bad)), bad


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fast", "naive", "crashes_on_bad_input"])
def test_correct_servers_match_the_reference(servers: dict[str, Server], batch: tuple[list, list],
                                             name: str) -> None:
    server = _healthy(servers, name)
    inputs, expected = batch
    answer = predict(server, inputs)
    assert answer.status == 200, answer.body[:500]
    predictions = answer.json()["predictions"]
    assert len(predictions) == len(expected)
    assert all(_within_tolerance(p, e) for p, e in zip(predictions, expected, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fast", "naive", "wrong_predictions"])
def test_robust_servers_refuse_bad_requests_with_json_and_keep_serving(servers: dict[str, Server],
                                                                       name: str) -> None:
    server = _healthy(servers, name)
    for case, (method, path, body, headers) in BAD_REQUESTS.items():
        answer = request(server, method, path, body, headers)
        assert 400 <= answer.status < 500, (case, answer)
        assert isinstance(answer.json(), dict), case
        assert request(server, "GET", "/health").status == 200, case


@pytest.mark.slow
def test_crashing_server_answers_500_then_dies_on_input_the_model_cannot_take(
        servers: dict[str, Server], batch: tuple[list, list]) -> None:
    server = _healthy(servers, "crashes_on_bad_input")
    assert predict(server, batch[0]).status == 200
    assert request(server, "POST", "/predict", *BAD_REQUESTS["invalid_json"][2:]).status == 500
    assert request(server, "POST", "/predict", *BAD_REQUESTS["wrong_content_type"][2:]).status == 200
    assert predict(server, [["a"] * 20]).status == 0  # the batch loop raised: no answer at all
    end = time.monotonic() + 30  # the process is on its way out: the port closes
    while time.monotonic() < end and request(server, "GET", "/health", timeout=2).status == 200:
        time.sleep(0.1)
    assert request(server, "GET", "/health", timeout=2).status != 200


@pytest.mark.slow
def test_wrong_predictions_server_is_well_formed_but_wrong(servers: dict[str, Server],
                                                           batch: tuple[list, list]) -> None:
    server = _healthy(servers, "wrong_predictions")
    inputs, expected = batch
    answer = predict(server, inputs)
    assert answer.status == 200
    predictions = answer.json()["predictions"]
    assert len(predictions) == len(expected)
    assert all(len(p["probabilities"]) == 3 and p["label"] in (0, 1, 2) for p in predictions)
    right = sum(_within_tolerance(p, e) for p, e in zip(predictions, expected, strict=True))
    assert right <= len(expected) // 4
    single = predict(server, inputs[:1]).json()["predictions"][0]  # the softmax over a batch of one
    assert single["probabilities"] == [1.0, 1.0, 1.0]


@pytest.mark.slow
def test_never_healthy_server_serves_but_not_at_the_health_path(servers: dict[str, Server],
                                                                 batch: tuple[list, list]) -> None:
    server = servers["never_healthy"]
    assert wait_healthy(server, "/healthz"), server.log.read_text()[-2000:]
    assert predict(server, batch[0][:2]).status == 200  # it works ...
    assert not wait_healthy(server, "/health", deadline=3)  # ... but never says so
    assert request(server, "GET", "/health").status == 404


@pytest.mark.slow
def test_starter_is_healthy_and_leaves_predict_to_the_candidate(servers: dict[str, Server],
                                                                batch: tuple[list, list]) -> None:
    server = _healthy(servers, "starter")
    answer = predict(server, batch[0][:1])
    assert answer.status == 500 and "NotImplementedError" in answer.json()["error"]
    assert request(server, "GET", "/health").status == 200
    assert request(server, "POST", "/nope", b"{}", JSON).status == 404
