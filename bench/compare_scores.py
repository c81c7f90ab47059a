"""Every shipped example's scores, saved from one version of the harness and compared with another's:
the check that a refactor changed no grade.

    python bench/compare_scores.py save before.json            # grade every example now, save the scores
    git checkout NEW && pip install -e . --no-deps
    python bench/compare_scores.py save after.json
    python bench/compare_scores.py diff before.json after.json # a line per changed score; exit 1 if any

`save` runs `harness grade ASSIGNMENT EXAMPLES... --json --no-mlflow --force` in the installed
harness, into a temporary results folder, and keeps each candidate's status, total and criterion
scores. The endpoint's timed criteria (latency, capacity, cold start) depend on the machine at that
moment, so `diff` leaves them and the totals built on them out unless `--timed` is given; it says
which it left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import grade_examples  # noqa: E402

ASSIGNMENTS = ("ranker", "abtest", "endpoint")
TIMED = {"endpoint": {"latency", "capacity", "cold_start"}}


def scores_of(assignment: str, results: Path) -> dict[str, dict]:
    _, proc, lines = grade_examples(assignment, results, "--no-mlflow", "--force")
    scores = {line["candidate"]: {"status": line["status"], "total": line["total_score"],
                                  "criteria": {name: c["score"] for name, c in line["criteria"].items()}}
              for line in lines}
    if not scores:
        raise SystemExit(f"{assignment}: no result (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return scores


def save(out: Path, assignments: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        found = {a: scores_of(a, Path(tmp) / "results") for a in assignments}
    out.write_text(json.dumps(found, indent=1, sort_keys=True))
    print(f"saved {sum(len(v) for v in found.values())} examples' scores to {out}")


def differences(before: dict, after: dict, *, timed: bool, tol: float = 1e-9) -> tuple[list[str], set[str]]:
    """Lines naming each changed status or score, and the timed criteria left out."""
    lines, left_out = [], set()
    for assignment in sorted(set(before) | set(after)):
        old, new = before.get(assignment, {}), after.get(assignment, {})
        skip = set() if timed else TIMED.get(assignment, set())
        for candidate in sorted(set(old) | set(new)):
            if candidate not in old or candidate not in new:
                lines.append(f"{assignment}/{candidate}: only in {'after' if candidate in new else 'before'}")
                continue
            a, b = old[candidate], new[candidate]
            if a["status"] != b["status"]:
                lines.append(f"{assignment}/{candidate}: status {a['status']} -> {b['status']}")
            for name in sorted(set(a["criteria"]) | set(b["criteria"])):
                if name in skip:
                    left_out.add(f"{assignment}.{name}")
                    continue
                x, y = a["criteria"].get(name), b["criteria"].get(name)
                if x is None or y is None or abs(x - y) > tol:
                    lines.append(f"{assignment}/{candidate}: {name} {x} -> {y}")
            x, y = a["total"], b["total"]
            if not skip and ((x is None) != (y is None) or (x is not None and abs(x - y) > 1e-6)):
                lines.append(f"{assignment}/{candidate}: total {x} -> {y}")
    return lines, left_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save")
    s.add_argument("out", type=Path)
    s.add_argument("--assignments", nargs="+", default=list(ASSIGNMENTS))
    d = sub.add_parser("diff")
    d.add_argument("before", type=Path)
    d.add_argument("after", type=Path)
    d.add_argument("--timed", action="store_true", help="compare the endpoint's timed criteria too")
    args = parser.parse_args()
    if args.command == "save":
        save(args.out, args.assignments)
        return
    before, after = (json.loads(p.read_text()) for p in (args.before, args.after))
    lines, left_out = differences(before, after, timed=args.timed)
    count = sum(len(v) for v in after.values())
    for line in lines:
        print(line)
    print(f"{count} examples compared; {len(lines)} differences"
          + (f"; left out (timed): {', '.join(sorted(left_out))}" if left_out else ""))
    raise SystemExit(1 if lines else 0)


if __name__ == "__main__":
    main()
