"""Throughput: N trivial submissions graded with --jobs 1 and --jobs 2 (MLflow logging on).

    python bench/throughput.py [--count 50]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import NOOP, make_submissions  # noqa: E402
from harness import api  # noqa: E402


def timed_batch(root: Path, count: int, jobs: int) -> float:
    subs = make_submissions(root / f"jobs{jobs}", count)
    start = time.perf_counter()
    report = api.grade(NOOP, subs, results_dir=root / f"results{jobs}", jobs=jobs)
    elapsed = time.perf_counter() - start
    assert report.exit_code == 0, [i.result.message for i in report.items if i.result.status.value != "ok"]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50)
    count = parser.parse_args().count
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        api.grade(NOOP, make_submissions(root / "warm", 1), results_dir=root / "warm-results",
                  log_to_mlflow=False)  # image build and MLflow import out of the timing
        import mlflow  # noqa: F401
        one = timed_batch(root, count, 1)
        two = timed_batch(root, count, 2)
    print(f"{count} trivial submissions, 2 stages each, MLflow sqlite logging on")
    print(f"--jobs 1: {one:.1f} s, {60 * count / one:.1f} submissions/min")
    print(f"--jobs 2: {two:.1f} s, {60 * count / two:.1f} submissions/min")
    print(f"speed-up: {one / two:.2f}x")


if __name__ == "__main__":
    main()
