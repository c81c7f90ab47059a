"""Harness overhead per stage container on a warm image, against bare `docker run` in the same run.

    python bench/overhead.py [--count 20]

Prints the median per-stage cost of (a) `docker run --rm --network none IMAGE true`, (b) the docker
backend alone running `true` with every limit applied, (c) a whole graded submission (intake, hashing,
two stages, reading outputs, grading, result.json, report.md; MLflow off) divided by its two stages.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import NOOP, bare_docker_run, describe, make_submissions  # noqa: E402
from harness import api  # noqa: E402
from sandbox import Limits, RunRequest  # noqa: E402
from sandbox.docker import DockerBackend  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20)
    count = parser.parse_args().count
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        warm = api.grade(NOOP, make_submissions(root / "warm", 1), results_dir=root / "results",
                         log_to_mlflow=False)  # builds or reuses the image
        image = warm.items[0].result.image
        bare = bare_docker_run(image, count)
        backend = DockerBackend()
        request = RunRequest(name="bench", command=("true",), image=image, limits=Limits(timeout_s=60))
        stage = []
        for _ in range(count):
            start = time.perf_counter()
            backend.run(request)
            stage.append(time.perf_counter() - start)
        subs = make_submissions(root / "subs", count)
        per_submission = []
        for sub in subs:
            start = time.perf_counter()
            api.grade(NOOP, [sub], results_dir=root / "results", log_to_mlflow=False)
            per_submission.append(time.perf_counter() - start)
    per_stage = [t / 2 for t in per_submission]
    print(f"image: {image}")
    print(f"bare docker run (per container):          {describe(bare)}")
    print(f"docker backend run (per stage container): {describe(stage)}")
    print(f"whole submission / 2 stages:              {describe(per_stage)}")
    backend_overhead = statistics.median(stage) - statistics.median(bare)
    print(f"overhead per stage, backend vs bare:      {backend_overhead:+.3f} s")
    print(f"overhead per stage, submission vs bare:   "
          f"{statistics.median(per_stage) - statistics.median(bare):+.3f} s (target <= +0.300 s)")


if __name__ == "__main__":
    main()
