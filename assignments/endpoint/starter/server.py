"""A starting point for the model server, standard library only (http.server + threads).

It reads its port from serve.json next to it, loads the model from MODEL_DIR, answers
GET /health, and leaves the real work as TODOs: checking a /predict request and answering it.
Until you write them, /predict answers 500. Keep, change or replace anything (the framework
included) as long as the contract in BRIEF.md holds.

    MODEL_DIR=../data/model python server.py     # then: curl -s localhost:8000/health
"""

import importlib.util
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
PORT = json.loads((HERE / "serve.json").read_text())["port"]
MODEL_DIR = Path(os.environ.get("MODEL_DIR", "/data/model"))
MAX_BATCH = 64
N_FEATURES = 20
MAX_BODY = 1 << 20  # bytes; a full batch needs far less


class BadRequest(Exception):
    """A request the server refuses: answered with `status` (4xx) and {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def load_reference():
    """The reference module: model.py from MODEL_DIR (TabularClassifier, load, predict)."""
    spec = importlib.util.spec_from_file_location("reference_model", MODEL_DIR / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = load_reference()
model = reference.load(MODEL_DIR)


def parse_request(body: bytes) -> list[list[float]]:
    """The instances of a /predict body; raises BadRequest for anything BRIEF.md says to refuse."""
    # TODO: parse the JSON and check it: an object with "instances", 1 to MAX_BATCH of them, each
    # a list of N_FEATURES finite numbers (NaN, Infinity and 1e999 are not finite).
    raise NotImplementedError("parse_request")


def predict(instances: list[list[float]]) -> list[dict]:
    """One {"label", "probabilities"} per instance, as reference.predict(model, instances) gives."""
    # TODO: answer, and make it fast (see BRIEF.md, "Speed").
    raise NotImplementedError("predict")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients may send many requests on one connection
    # The head and the body leave as two small writes: without this, Nagle's algorithm and the
    # client's delayed ACK add about 40 ms to every answer on a keep-alive connection.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # the base class's signature
        pass  # one line per request on stderr costs time under load

    def send_json(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/health":
            self.send_json(200, {"status": "ok"})  # the model is loaded before the port opens
        else:
            self.send_json(404, {"error": f"no route GET {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/predict":
            self.send_json(404, {"error": f"no route POST {self.path}"})
            return
        # TODO: check the Content-Type and the Content-Length (missing, or above MAX_BODY) before
        # reading the body; if you refuse a body without reading it, set self.close_connection.
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            self.send_json(200, {"predictions": predict(parse_request(body))})
        except BadRequest as exc:
            self.send_json(exc.status, {"error": str(exc)})
        except Exception as exc:  # a bug must cost one request, not the server
            self.send_json(500, {"error": f"internal error: {exc!r}"})


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
