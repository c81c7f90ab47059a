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


REPO = Path(__file__).resolve().parents[1]


def examples(assignment: str) -> list[str]:
    """The shipped example submissions of `assignment`, in name order."""
    return sorted(str(p) for p in (REPO / "assignments" / assignment / "examples").iterdir() if p.is_dir())


def grade_examples(assignment: str, results: Path,
                   *flags: str) -> tuple[float, subprocess.CompletedProcess, list]:
    """`harness grade ASSIGNMENT EXAMPLES... --json --jobs 2 --results RESULTS FLAGS` in a subprocess, as an
    operator runs it: its wall seconds, the process, and its `--json` lines."""
    import json
    import sys

    command = [sys.executable, "-m", "harness", "grade", assignment, *examples(assignment), "--json",
               "--jobs", "2", "--results", str(results), *flags]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    return seconds, proc, [json.loads(raw) for raw in proc.stdout.splitlines() if raw.strip()]
