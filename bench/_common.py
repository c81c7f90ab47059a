"""Shared set-up for the benchmarks: trivial submissions and the noop assignment."""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

NOOP = Path(__file__).parent / "assignments" / "noop"


def make_submissions(root: Path, count: int) -> list[str]:
    """`count` trivial submissions with distinct content (so none is skipped as already graded)."""
    paths = []
    for i in range(count):
        folder = root / f"cand{i:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "README.md").write_text(f"trivial submission {i}\n")
        paths.append(str(folder))
    return paths


def bare_docker_run(image: str, count: int) -> list[float]:
    """Wall seconds of `docker run --rm --network none IMAGE true`, `count` times."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", "--network", "none", image, "true"], check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def describe(times: list[float]) -> str:
    return f"median {statistics.median(times):.3f} s, mean {statistics.fmean(times):.3f} s (n={len(times)})"
