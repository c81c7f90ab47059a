"""A working model server that answers its health check at the wrong path.

It validates requests and predicts correctly, but its author followed the Kubernetes habit and
serves the health check at /healthz. The contract asks for GET /health, which gets a 404 here, so
the server never looks ready and nothing else is tested.
"""

import importlib.util
import json
import math
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
PORT = json.loads((HERE / "serve.json").read_text())["port"]
MODEL_DIR = Path(os.environ.get("MODEL_DIR", "/data/model"))
MAX_BATCH, N_FEATURES, MAX_BODY = 64, 20, 1 << 20


def load_reference():
    spec = importlib.util.spec_from_file_location("reference_model", MODEL_DIR / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = load_reference()
model = reference.load(MODEL_DIR)


def valid(payload) -> bool:
    instances = payload.get("instances") if isinstance(payload, dict) else None
    return (isinstance(instances, list) and 1 <= len(instances) <= MAX_BATCH
            and all(isinstance(row, list) and len(row) == N_FEATURES for row in instances)
            and all(type(v) in (int, float) and math.isfinite(v) for row in instances for v in row))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # the base class's signature
        pass

    def send_json(self, status: int, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/healthz":
            self.send_json(200, {"status": "ok"})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if self.path != "/predict":
            self.send_json(404, {"error": "not found"})
        elif not 0 < length <= MAX_BODY:
            self.close_connection = True  # the body is not read
            self.send_json(413, {"error": "body missing or too large"})
        else:
            try:
                payload = json.loads(self.rfile.read(length))
            except ValueError:
                payload = None
            if not valid(payload):
                self.send_json(400, {"error": 'expected {"instances": [[20 finite numbers], ...]}'})
            else:
                self.send_json(200, {"predictions": reference.predict(model, payload["instances"])})


if __name__ == "__main__":
    torch.set_num_threads(1)
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
