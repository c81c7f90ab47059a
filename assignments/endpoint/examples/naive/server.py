"""A correct, careful, slow model server: Flask's built-in server, one request at a time.

It validates every request like a production server would, but it loads the model from disk
for every request ("so that it always serves the latest weights"), runs each instance through
the model on its own, and serves from Flask's development server without threads.
"""

import importlib.util
import json
import math
import os
from pathlib import Path

from flask import Flask, jsonify, request

HERE = Path(__file__).resolve().parent
PORT = json.loads((HERE / "serve.json").read_text())["port"]
MODEL_DIR = Path(os.environ.get("MODEL_DIR", "/data/model"))
MAX_BATCH = 64
N_FEATURES = 20

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 1 << 20


def fail(status: int, message: str):
    return jsonify(error=message), status


def load_reference():
    """model.py from MODEL_DIR, imported afresh."""
    spec = importlib.util.spec_from_file_location("reference_model", MODEL_DIR / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def problem(payload) -> str:
    """What is wrong with a /predict payload, or "" if nothing is."""
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        return 'expected an object {"instances": [[...], ...]}'
    instances = payload["instances"]
    if not 1 <= len(instances) <= MAX_BATCH:
        return f"{len(instances)} instances; send 1 to {MAX_BATCH}"
    for i, row in enumerate(instances):
        if not isinstance(row, list) or len(row) != N_FEATURES:
            return f"instance {i}: expected a list of {N_FEATURES} numbers"
        for value in row:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"instance {i}: {value!r} is not a number"
            if isinstance(value, float) and not math.isfinite(value):
                return f"instance {i}: features must be finite"
            if isinstance(value, int) and abs(value) > 1e300:
                return f"instance {i}: {value} is too large"
    return ""


@app.get("/health")
def health():
    return jsonify(status="ok")


@app.post("/predict")
def predict():
    if not request.is_json:
        return fail(415, "send Content-Type: application/json")
    payload = request.get_json(silent=True)
    if payload is None:
        return fail(400, "invalid JSON")
    message = problem(payload)
    if message:
        return fail(400, message)
    reference = load_reference()
    model = reference.load(MODEL_DIR)
    answers = [reference.predict(model, [row])[0] for row in payload["instances"]]
    return jsonify(predictions=answers)


@app.errorhandler(404)
@app.errorhandler(405)
@app.errorhandler(413)
def http_error(exc):
    return fail(exc.code, exc.description)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=PORT, threaded=False)
