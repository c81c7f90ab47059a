"""The prediction service: FastAPI on uvicorn.

GET /health   -> 200 {"status": "ok"} once the model is loaded
POST /predict -> {"predictions": [{"label": ..., "probabilities": [...]}, ...]}

Errors are JSON: FastAPI's own (422 for a body that fails validation, 404, 405) and ours
(413 for a body over 1 MB, 415 for a content type other than JSON).
"""

from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.inference import Classifier, load_model, model_dir
from app.schemas import MAX_BATCH, N_FEATURES, PredictRequest, PredictResponse

MAX_BODY_BYTES = 1 << 20  # a full batch of 64 is about 40 KB


@asynccontextmanager
async def lifespan(app: FastAPI):
    torch.set_num_threads(1)  # the sandbox has one CPU
    classifier = Classifier(load_model(model_dir()), N_FEATURES)
    classifier.warm_up(MAX_BATCH)
    app.state.classifier = classifier
    yield


app = FastAPI(title="tabular classifier", lifespan=lifespan)


@app.middleware("http")
async def check_body(request: Request, call_next):
    if request.method == "POST":
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return JSONResponse({"error": "send Content-Type: application/json"}, status_code=415)
    return await call_next(request)


@app.exception_handler(RequestValidationError)
async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default 422 echoes the offending input back, and a NaN in it cannot be
    # written as JSON: the answer to {"instances": [[NaN, ...]]} became a 500
    errors = [{"loc": list(error["loc"]), "msg": error["msg"]} for error in exc.errors()]
    return JSONResponse({"error": "invalid request body", "detail": errors}, status_code=422)


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@app.post("/predict", response_model=PredictResponse)
async def predict(body: PredictRequest, request: Request) -> dict:
    # the forward pass of a batch takes well under a millisecond: run it on the event loop
    # rather than paying for a hop to the thread pool
    return {"predictions": request.app.state.classifier.predict(body.instances)}
