"""Helpers for testing the in-sandbox runners (sandbox/runners/) on the host.

Importing this module puts the runners' folder first on sys.path, as `python /opt/mlgrade/x.py`
does in the sandbox, so tests `import loadgen`, `import probe` like the runners import each other.
`model_server` serves a toy model over loopback HTTP (127.0.0.1 only) with switchable misbehaviour.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sandbox import RUNNERS_DIR

if str(RUNNERS_DIR) not in sys.path:
    sys.path.insert(0, str(RUNNERS_DIR))

N_FEATURES, N_CLASSES, MAX_BATCH = 20, 3, 64
MAX_BODY = 1 << 20


def toy_predict(instance: list[float]) -> dict:
    """The toy model: softmax over the first three features; label = argmax."""
    logits = instance[:N_CLASSES]
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    probabilities = [e / sum(exps) for e in exps]
    return {"label": probabilities.index(max(probabilities)), "probabilities": probabilities}


@dataclass(frozen=True)
class Behaviour:
    """How the toy server behaves. Defaults: a well-behaved server."""

    healthy_after_s: float = 0.0  # /health answers 503 until this long after the start
    never_healthy: bool = False
    on_bad_input: str = "4xx"  # "4xx", "500", "hang" (until the server stops) or "die"
    predict: Callable[[list[list[float]]], object] | None = None  # overrides the answer's JSON
    fail_when: Callable[[list[list[float]]], bool] | None = None  # answer 500 to such batches
    service_s: float = 0.0  # per /predict request, one request at a time


class _BadInput(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _validated(handler: BaseHTTPRequestHandler, body: bytes) -> list[list[float]]:
    if handler.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
        raise _BadInput(415, "Content-Type must be application/json")
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except ValueError as exc:
        raise _BadInput(400, f"invalid JSON: {exc}") from None
    instances = data.get("instances") if isinstance(data, dict) else None
    if not isinstance(instances, list) or not 1 <= len(instances) <= MAX_BATCH:
        raise _BadInput(400, f'"instances" must be a list of 1..{MAX_BATCH} instances')
    for row in instances:
        if not (isinstance(row, list) and len(row) == N_FEATURES and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in row)):
            raise _BadInput(400, f"each instance must be {N_FEATURES} finite numbers")
    return instances


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else head and body go out 40 ms apart (Nagle vs delayed ACK)
    server: _ToyServer

    def log_message(self, format, *args):  # the base class's signature
        pass

    def send_json(self, status: int, payload: object, *, close: bool = False) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            ready = not self.server.behaviour.never_healthy and time.monotonic() >= self.server.healthy_at
            self.send_json(200 if ready else 503, {"ready": ready})
        elif self.path == "/predict":
            self.send_json(405, {"error": "use POST"})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:  # answered without reading the body: the client sees a reset after it
            self.misbehave_or(413, "body too large", close=True)
            return
        body = self.rfile.read(length)
        if self.path != "/predict":
            self.send_json(404, {"error": "not found"})
            return
        try:
            instances = _validated(self, body)
        except _BadInput as exc:
            self.misbehave_or(exc.status, str(exc))
            return
        self.answer(instances)

    def answer(self, instances: list[list[float]]) -> None:
        behaviour = self.server.behaviour
        if behaviour.service_s:
            with self.server.serial:
                self.server.stopping.wait(behaviour.service_s)
        if behaviour.fail_when is not None and behaviour.fail_when(instances):
            self.send_json(500, {"error": "internal"})
        elif behaviour.predict is not None:
            self.send_json(200, behaviour.predict(instances))
        else:
            self.send_json(200, {"predictions": [toy_predict(row) for row in instances]})

    def misbehave_or(self, status: int, message: str, *, close: bool = False) -> None:
        mode = self.server.behaviour.on_bad_input
        if mode == "500":
            self.send_json(500, {"error": "Traceback ..."}, close=close)
        elif mode == "hang":
            self.server.stopping.wait(60)
            self.close_connection = True
        elif mode == "die":
            self.server.die()
            self.close_connection = True
        else:
            self.send_json(status, {"error": message}, close=close)


class _ToyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour
        self.healthy_at = time.monotonic() + behaviour.healthy_after_s
        self.serial = threading.Lock()
        self.stopping = threading.Event()
        self.dead = False

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # the probe hung up: expected
            super().handle_error(request, client_address)

    def die(self) -> None:
        """Stop listening at once (later connections are refused), as a crashed server would."""
        self.dead = True
        self.socket.close()
        threading.Thread(target=self.shutdown, daemon=True).start()


@contextmanager
def model_server(behaviour: Behaviour = Behaviour()) -> Iterator[int]:  # noqa: B008 - frozen, immutable
    """Serve the toy model on 127.0.0.1 in a background thread; yields the port."""
    server = _ToyServer(behaviour)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.stopping.set()
        if not server.dead:
            server.shutdown()
        thread.join(timeout=10)
        server.server_close()
