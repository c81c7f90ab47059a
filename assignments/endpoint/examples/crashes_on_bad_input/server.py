"""A batching model server that trusts its input.

HTTP runs in a background thread (the standard library's threading server); the main thread
owns the model and runs every request that is waiting as one batch. Good requests get correct
answers quickly. Nothing is validated: a body that is not JSON or has no "instances" gets a
500, and input the model cannot take (strings, a wrong number of features, an empty list) makes
the batch loop raise, which ends the main thread and with it the whole server.
"""

import importlib.util
import json
import os
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
PORT = json.loads((HERE / "serve.json").read_text())["port"]
MODEL_DIR = Path(os.environ.get("MODEL_DIR", "/data/model"))

jobs: queue.Queue = queue.Queue()


class Job:
    def __init__(self, instances):
        self.instances = instances
        self.done = threading.Event()
        self.answers: list = []


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
        if self.path == "/health":
            self.send_json(200, {"status": "ok"})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self):
        try:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            job = Job(json.loads(body)["instances"])
        except Exception as exc:
            self.send_json(500, {"error": repr(exc)})
            return
        jobs.put(job)
        job.done.wait()
        self.send_json(200, {"predictions": job.answers})


def batch_loop(reference, model) -> None:
    """Answer whatever is waiting in one forward pass, forever."""
    while True:
        waiting = [jobs.get()]
        while not jobs.empty():
            waiting.append(jobs.get_nowait())
        answers = reference.predict(model, [row for job in waiting for row in job.instances])
        for job in waiting:
            job.answers, answers = answers[:len(job.instances)], answers[len(job.instances):]
            job.done.set()


def main() -> None:
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("reference_model", MODEL_DIR / "model.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    model = reference.load(MODEL_DIR)
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    batch_loop(reference, model)


if __name__ == "__main__":
    main()
