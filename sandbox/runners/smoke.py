"""The self-check's probe of a service (`harness check --run`): what the graded probe would need
before it measures anything, and nothing that needs hidden inputs. GET /health until a 200 (within
--health-timeout seconds of the probe's start), then one POST /predict of a single instance (all
features 0.5), its answer checked as the graded probe checks a prediction. Writes --out as JSON:

    {"manifest": "" or the problem, "healthy_after_s": seconds or null, "health": "" or the last
     problem, "predict": "" or the problem, "prediction": the checked prediction or null}

and always exits 0: what the service did is the report, never this script's failure."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # siblings, even under `python -I`

from http11 import FetchError, fetch  # noqa: E402
from manifest import ManifestError, load_manifest  # noqa: E402
from probe_correctness import check_prediction  # noqa: E402

HOST = "127.0.0.1"


async def _healthy(port: int, deadline: float) -> tuple[float | None, str]:
    problem = "no answer"
    while time.monotonic() < deadline:
        try:
            response = await fetch(HOST, port, "GET", "/health", timeout_s=2.0)
            if response.status == 200:
                return time.monotonic(), ""
            problem = f"GET /health answered {response.status}"
        except FetchError as exc:
            problem = str(exc)
        await asyncio.sleep(0.1)
    return None, problem


async def _predict(port: int, n_features: int, n_classes: int) -> tuple[dict | None, str]:
    body = json.dumps({"instances": [[0.5] * n_features]}).encode()
    try:
        response = await fetch(HOST, port, "POST", "/predict", body=body, timeout_s=10.0)
    except FetchError as exc:
        return None, f"POST /predict: {exc}"
    if response.status != 200:
        return None, f"POST /predict answered {response.status}: {response.body[:120]!r}"
    try:
        data = json.loads(response.body)
    except ValueError:
        return None, f"POST /predict answered no JSON: {response.body[:80]!r}"
    predictions = data.get("predictions") if isinstance(data, dict) else None
    if not isinstance(predictions, list) or len(predictions) != 1:
        return None, 'POST /predict: the answer has no "predictions" list of one prediction per instance'
    prediction, problem = check_prediction(predictions[0], n_classes)
    return prediction, f"POST /predict: the prediction's {problem}" if problem else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smoke.py", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--health-timeout", type=float, default=60.0)
    parser.add_argument("--n-features", type=int, default=20)
    parser.add_argument("--n-classes", type=int, default=3)
    args = parser.parse_args(argv)
    started = time.monotonic()
    report: dict = {"manifest": "", "healthy_after_s": None, "health": "", "predict": "", "prediction": None}
    try:
        port = load_manifest(args.manifest).port
    except ManifestError as exc:
        report["manifest"] = str(exc)[:300]
    else:
        healthy, report["health"] = asyncio.run(_healthy(port, started + args.health_timeout))
        if healthy is not None:
            report["healthy_after_s"] = round(healthy - started, 2)
            report["prediction"], report["predict"] = asyncio.run(_predict(port, args.n_features,
                                                                           args.n_classes))
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(report, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
