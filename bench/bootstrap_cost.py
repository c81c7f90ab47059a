"""What the load run's statistics cost (sandbox/runners/loadstats.py), in this process.

    python bench/bootstrap_cost.py [--repeats 20]

1. p99_interval (1,000 block resamples) for the largest run of the spec: 6,400 requests (a
   capacity step at 1,600/s for its 4 s maximum), and for the latency run's 1,000. It runs after
   a run, between steps.
2. One stopping look of a capacity step (block_counts + verdict, 400 resamples) at 6,400
   requests, with the latency near the objective (the resampling cannot be skipped). It runs on
   the load generator's event loop, so its time is schedule lag for the requests due meanwhile.
Median seconds of --repeats runs; latencies are a synthetic exponential tail (no server involved).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sandbox import RUNNERS_DIR  # noqa: E402

sys.path.insert(0, str(RUNNERS_DIR))  # as in the sandbox, where the runners' siblings are top level
from loadstats import OK, block_counts, p99_interval, verdict  # noqa: E402


def _median_s(job, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        job()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(1)  # noqa: S311 - synthetic data
    for n in (6400, 1000):
        latencies = [rng.expovariate(1 / 0.003) for _ in range(n)]
        seconds = _median_s(lambda v=latencies: p99_interval(v), args.repeats)
        print(f"p99_interval, {n} requests: {seconds * 1000:.0f} ms")
    near = [rng.expovariate(1 / 0.012) for _ in range(6400)]  # p99 about 55 ms: a straddling look
    state = bytes([OK]) * len(near)

    def look() -> None:
        verdict(block_counts(near, state, objective_s=0.05), max_error_rate=0.01)

    print(f"one stopping look, 6400 requests: {_median_s(look, args.repeats) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
