"""Grading on a Dask cluster (README "Grading on several machines"): a scheduler and `harness
worker`s on 127.0.0.1, one slot each, the coordinator in this process.

    python bench/cluster.py dispatch [--count 40] [--workers 1 2 4]   # no-op stages
    python bench/cluster.py examples [--workers 1 2]                   # the ranker's examples

`dispatch` grades trivial submissions of the noop assignment (two `true` stages in Docker) and
prints, per worker count, the wall time, the submissions per second, and the coordinator's own
CPU seconds per submission (this process: intake, packing, Dask, unpacking, graders, results):
1 / that is the coordinator's ceiling in submissions per second, however many workers it has.
`examples` grades the ranker's six examples and prints the wall time per worker count. On one
machine the workers share its cores: the figures show the coordinator's cost and the transport,
not the speed-up of machines of their own.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._cluster import start_cluster  # noqa: E402
from bench._common import NOOP, REPO, make_submissions  # noqa: E402
from harness import api  # noqa: E402


def timed(assignment: Path | str, submissions: list[str], workers: int, tmp: Path) -> tuple[float, float]:
    """(wall seconds, coordinator CPU seconds) of one batch on a fresh cluster of `workers`."""
    (tmp / "cluster").mkdir()
    cluster = start_cluster(tmp / "cluster", tuple(f"w{i}" for i in range(workers)))
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        report = api.grade(assignment, submissions, results_dir=tmp / "results", cluster=cluster.address,
                           log_to_mlflow=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        cluster.stop()
    bad = [f"{i.result.candidate}: {i.result.message}" for i in report.items
           if i.result.status.value not in ("ok", "error")]
    if bad:
        raise SystemExit(f"not graded: {bad[:3]}")
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("dispatch", "examples"))
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+")
    args = parser.parse_args()
    counts = args.workers or ([1, 2, 4] if args.what == "dispatch" else [1, 2])
    for workers in counts:
        with tempfile.TemporaryDirectory(prefix="mlgrade-bench-") as name:
            tmp = Path(name)
            if args.what == "dispatch":
                subs = make_submissions(tmp / "subs", args.count)
                wall, cpu = timed(NOOP, subs, workers, tmp)
                print(f"{workers} worker(s), {len(subs)} no-op submissions: {wall:.1f} s wall, "
                      f"{len(subs) / wall:.2f} submissions/s; coordinator CPU {cpu / len(subs):.3f} s per "
                      f"submission (ceiling {len(subs) / cpu:.1f} submissions/s)", flush=True)
            else:
                subs = sorted(str(p) for p in (REPO / "assignments" / "ranker" / "examples").iterdir())
                wall, cpu = timed("ranker", subs, workers, tmp)
                print(f"{workers} worker(s), the ranker's {len(subs)} examples: {wall:.1f} s wall "
                      f"({wall / len(subs):.1f} s per submission); coordinator CPU {cpu:.1f} s", flush=True)


if __name__ == "__main__":
    main()
