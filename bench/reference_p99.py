"""The reference server's p99 in the endpoint image: the machine check's idle figure and bound.

    python bench/reference_p99.py [--count 10] [--load 0 2]

Runs the calibration the machine check runs before every endpoint measurement (the reference
server and calibrate.py, in the endpoint image, under the endpoint spec's limits, on the host
plan's cores) `--count` times with each number of busy-loop processes in `--load` running
beside it (started and stopped by the bench; nothing leaves the host), and prints p50/p99 of
each run's p99 and how many runs the spec's bound calls busy. The spec's reference_p99_ms is the
idle median; max_reference_p99_ms must sit above the idle runs and below the loaded ones.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness._quiet import CALIBRATION_FILE, calibration_request  # noqa: E402
from harness.backends import docker_runtime  # noqa: E402
from harness.spec import load_assignment  # noqa: E402
from sandbox import RUNNERS_DIR, make_writable_dir  # noqa: E402
from sandbox.docker import DockerBackend  # noqa: E402

ENDPOINT = Path(__file__).resolve().parents[1] / "assignments" / "endpoint"


def _spin() -> None:
    while True:
        pass


def measure(backend: DockerBackend, image: str, count: int, quiet) -> list[float]:
    assignment = load_assignment(ENDPOINT)
    stage = next(s for s in assignment.spec.stages if s.probe is not None)
    limits = assignment.spec.stage_limits(stage)
    p99s = []
    for _ in range(count):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            make_writable_dir(out, *backend.run_as)
            request = calibration_request(quiet, image=image, limits=limits, probe_limits=limits,
                                          runners=RUNNERS_DIR, output=out)
            backend.run(request)
            report = json.loads((out / CALIBRATION_FILE).read_text())
            p99s.append(report.get("p99_ms") or float("nan"))
    return p99s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--load", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--rate", type=float, help="requests/s of the reference run (default: the spec's)")
    parser.add_argument("--duration", type=float, help="its measured seconds (default: the spec's)")
    args = parser.parse_args()
    assignment = load_assignment(ENDPOINT)
    quiet = next(s.probe.quiet for s in assignment.spec.stages if s.probe is not None)
    chosen = {"rate": args.rate, "duration": args.duration}
    quiet = quiet.model_copy(update={k: v for k, v in chosen.items() if v})
    runtime = docker_runtime(assignment, cache=Path("results/.cache"), retries=0, backoff_s=0.0)
    backend, image = runtime.backend, runtime.image
    print(f"reference server at {quiet.rate:g} requests/s for {quiet.duration:g} s, image {image}; "
          f"spec: idle {quiet.reference_p99_ms:g} ms, busy beyond {quiet.max_reference_p99_ms:g} ms")
    for load in args.load:
        spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(load)]
        for p in spinners:
            p.start()
        try:
            p99s = measure(backend, image, args.count, quiet)
        finally:
            for p in spinners:
                p.kill()
        busy = sum(v > quiet.max_reference_p99_ms for v in p99s)
        print(f"{load} busy loop(s): p99 median {statistics.median(p99s):.2f} ms, min {min(p99s):.2f}, "
              f"max {max(p99s):.2f} (n={len(p99s)}); called busy: {busy}/{len(p99s)}")
    backend.close()


if __name__ == "__main__":
    main()
