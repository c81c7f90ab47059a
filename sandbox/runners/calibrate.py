"""Measure the reference server (reference_server.py) the way the probe measures a candidate's.

    python -s -E /opt/mlgrade/calibrate.py --out /output/calibration.json [--port 8000] [--rate 100]
        [--duration 2] [--warmup 0.5] [--connections 8] [--timeout 2]

Waits up to 10 s (--health-timeout) for GET /health, then one open-loop run (loadgen) of POST
/predict with one 20-feature instance per request. calibration.json: healthy, and the run's figures
(loadgen's LoadResult without its histogram; p99_ms, error_rate, ...), or a problem. Exit 0 when it
wrote the file. Loopback only; standard library and hdrhistogram only.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # siblings, even under `python -I`

from loadgen import finite, run_open_loop  # noqa: E402
from probe_checks import Target, wait_healthy  # noqa: E402

HEALTH_TIMEOUT_S = 10.0
INSTANCE = [round(0.1 * i - 1, 2) for i in range(20)]


async def calibrate(args: argparse.Namespace) -> dict:
    target = Target("127.0.0.1", args.port)
    deadline = time.monotonic() + args.health_timeout
    health = await wait_healthy(target, deadline=deadline, timeout_s=args.timeout)
    if not health.healthy:
        return {"healthy": False, "problem": f"the reference server did not start: {health.problem}"}
    body = json.dumps({"instances": [INSTANCE]}).encode()
    result = await run_open_loop(port=args.port, path="/predict", body=body, rate=args.rate,
                                 duration_s=args.duration, warmup_s=args.warmup, timeout_s=args.timeout,
                                 connections=args.connections)
    figures = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)
               if f.name not in ("kept", "histogram")}
    return {"healthy": True, **finite(figures), "error_rate": result.error_rate}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="calibrate.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--port", type=int, default=8000)
    for flag, default in (("--rate", 100.0), ("--duration", 2.0), ("--warmup", 0.5), ("--timeout", 2.0)):
        parser.add_argument(flag, type=float, default=default)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--health-timeout", type=float, default=HEALTH_TIMEOUT_S)
    args = parser.parse_args(argv)
    report = asyncio.run(calibrate(args))
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, allow_nan=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
