"""A tidy FastAPI model server with one bug in the maths.

pydantic validates every request (strict numbers, finite, 20 per instance, 1 to 64 instances)
and every error comes back as a JSON 4xx; uvicorn serves it on one worker. The model itself is
rewritten for speed: the forward pass is done by hand in numpy from the state_dict, and the
softmax normalises over axis 0 (the batch) instead of axis 1 (the classes). Each column of the
batch then sums to 1 instead of each row: a single instance gets probabilities [1, 1, 1] and
label 0, and in a batch the labels depend on the other instances.
"""

import json
import os
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

HERE = Path(__file__).resolve().parent
PORT = json.loads((HERE / "serve.json").read_text())["port"]
MODEL_DIR = Path(os.environ.get("MODEL_DIR", "/data/model"))
MAX_BATCH = 64
N_FEATURES = 20

Feature = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Instance = Annotated[list[Feature], Field(min_length=N_FEATURES, max_length=N_FEATURES)]


class PredictRequest(BaseModel):
    instances: Annotated[list[Instance], Field(min_length=1, max_length=MAX_BATCH)]


class Prediction(BaseModel):
    label: int
    probabilities: list[float]


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class NumpyModel:
    """The TabularClassifier's forward pass in float32 numpy, read from the state_dict."""

    def __init__(self, model_dir: Path):
        state = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True)
        self.mean, self.scale = state["mean"].numpy(), state["scale"].numpy()
        self.layers = [(state[f"net.{i}.weight"].numpy().T, state[f"net.{i}.bias"].numpy())
                       for i in (0, 2, 4)]  # the three Linear layers of model.net

    def predict(self, instances: list[list[float]]) -> list[dict]:
        h = (np.asarray(instances, dtype=np.float32) - self.mean) / self.scale
        for i, (weight, bias) in enumerate(self.layers):
            h = h @ weight + bias
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0)
        logits = h.astype(np.float64)
        exp = np.exp(logits - logits.max(axis=0, keepdims=True))
        probabilities = exp / exp.sum(axis=0, keepdims=True)
        return [{"label": int(np.argmax(p)), "probabilities": p.tolist()} for p in probabilities]


app = FastAPI()
model = NumpyModel(MODEL_DIR)


@app.exception_handler(RequestValidationError)
async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    where = ("/".join(map(str, e["loc"])) + ": " + e["msg"] for e in exc.errors()[:3])
    return JSONResponse({"error": "; ".join(where)}, status_code=422)


@app.exception_handler(HTTPException)
async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.post("/predict")
def predict(body: PredictRequest) -> PredictResponse:
    return PredictResponse(predictions=model.predict(body.instances))


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", access_log=False)
