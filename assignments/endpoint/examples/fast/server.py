"""A fast, careful model server: aiohttp on one event loop, torch on one thread.

- The model is loaded and warmed up before the port opens, so /health is 200 from the first answer.
- Every request is validated before it reaches the model; a bad one gets a 4xx JSON error.
- Requests that arrive together are answered by one forward pass (opportunistic batching: a
  batch is run on the next turn of the event loop, so nothing waits for a batch to fill up).
"""

import asyncio
import importlib.util
import json
import math
import os
from pathlib import Path

import torch
from aiohttp import web

HERE = Path(__file__).resolve().parent
PORT = json.loads((HERE / "serve.json").read_text())["port"]
MODEL_DIR = Path(os.environ.get("MODEL_DIR", "/data/model"))
MAX_BATCH = 64
N_FEATURES = 20
MAX_BODY = 1 << 20  # 64 instances of 20 numbers need ~40 KB; anything far bigger is refused
READ_LIMIT = 64 << 20  # bodies up to this are read (then refused) so the client sees our answer


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _no_constants(name: str) -> float:
    raise BadRequest(400, f"{name} is not a number: features must be finite")


def parse(body: bytes) -> list[list[float]]:
    """The instances of a /predict body, as floats; BadRequest says what is wrong."""
    if len(body) > MAX_BODY:
        raise BadRequest(413, f"body of {len(body)} bytes; the limit is {MAX_BODY}")
    try:
        payload = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(400, f"invalid JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        raise BadRequest(400, 'expected an object {"instances": [[...], ...]}')
    instances = payload["instances"]
    if not 1 <= len(instances) <= MAX_BATCH:
        raise BadRequest(400, f"{len(instances)} instances; send 1 to {MAX_BATCH}")
    return [_row(i, row) for i, row in enumerate(instances)]


def _row(i: int, row: object) -> list[float]:
    if not isinstance(row, list) or len(row) != N_FEATURES:
        raise BadRequest(400, f"instance {i}: expected a list of {N_FEATURES} numbers")
    out = []
    for value in row:
        if type(value) not in (int, float):  # bool is an int subclass, and not a feature
            raise BadRequest(400, f"instance {i}: {value!r} is not a number")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise BadRequest(400, f"instance {i}: features must be finite")
        out.append(number)
    return out


class Batcher:
    """Runs the requests that are waiting together through the model, one forward pass."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.waiting: list[tuple[list[list[float]], asyncio.Future]] = []

    def submit(self, rows: list[list[float]]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append((rows, future))
        if len(self.waiting) == 1:
            loop.call_soon(self._run)
        return future

    def _run(self) -> None:
        waiting, self.waiting = self.waiting, []
        try:
            answers = infer(self.model, [row for rows, _ in waiting for row in rows])
        except Exception as exc:  # reported to every request of the batch
            for _, future in waiting:
                future.set_exception(exc)
            return
        start = 0
        for rows, future in waiting:
            future.set_result(answers[start:start + len(rows)])
            start += len(rows)


def infer(model: torch.nn.Module, rows: list[list[float]]) -> list[dict]:
    """Float32 logits, softmax in float64 (as the reference does), label = argmax."""
    with torch.inference_mode():
        logits = model(torch.tensor(rows, dtype=torch.float32))
    probabilities = torch.softmax(logits.double(), dim=1)
    labels = probabilities.argmax(dim=1).tolist()
    return [{"label": label, "probabilities": row}
            for label, row in zip(labels, probabilities.tolist(), strict=True)]


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    """Every error as a JSON body: our own, aiohttp's (404, 405, 413) and unexpected ones (500)."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return error(exc.status, str(exc))
    except web.HTTPException as exc:
        return error(exc.status, exc.reason)
    except Exception:  # a bug of ours must not take the server down
        return error(500, "internal error")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def predict(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        raise BadRequest(415, "send Content-Type: application/json")
    rows = parse(await request.read())
    answers = await request.app["batcher"].submit(rows)
    return web.json_response({"predictions": answers})


def load_model() -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("reference_model", MODEL_DIR / "model.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    model = reference.load(MODEL_DIR)
    infer(model, [[0.0] * N_FEATURES] * MAX_BATCH)  # warm-up: the first forward pass is slow
    return model


def main() -> None:
    torch.set_num_threads(1)  # one CPU: extra threads only contend
    app = web.Application(middlewares=[json_errors], client_max_size=READ_LIMIT)
    app["batcher"] = Batcher(load_model())
    app.router.add_get("/health", health)
    app.router.add_post("/predict", predict)
    web.run_app(app, host="127.0.0.1", port=PORT, access_log=None, print=None)


if __name__ == "__main__":
    main()
