"""A re-run that has nothing to grade: every submission already graded under the same key is
resumed, not run again. Times the first grade of an assignment's examples and the second, in the
real command line (a subprocess, as an operator runs it), MLflow on; the target is a second run at
least 20 times faster than the first.

    python bench/rerun.py [--assignment ranker] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import grade_examples  # noqa: E402


def grade(assignment: str, results: Path) -> tuple[float, list[dict]]:
    seconds, proc, lines = grade_examples(assignment, results)
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"grade failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assignment", default="ranker")
    parser.add_argument("--repeats", type=int, default=3, help="re-runs timed after the first grade")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        first, lines = grade(args.assignment, results)
        again = []
        for _ in range(args.repeats):
            seconds, rerun = grade(args.assignment, results)
            totals = {line["candidate"]: line["total_score"] for line in rerun}
            assert totals == {line["candidate"]: line["total_score"] for line in lines}, totals
            again.append(seconds)
    second = statistics.median(again)
    print(f"{args.assignment}: {len(lines)} examples, --jobs 2, MLflow on")
    print(f"first grade: {first:.1f} s; re-run with nothing to grade: median {second:.2f} s "
          f"({', '.join(f'{s:.2f}' for s in again)})")
    print(f"{first / second:.0f}x faster (target: at least 20x)")


if __name__ == "__main__":
    main()
