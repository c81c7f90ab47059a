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
which it left out. Hidden data comes from each checkout's install secret
(`assignments/*/hidden/seed.txt`): `save` records a fingerprint of each, and `diff` refuses two
saves graded from different secrets (copy the seed files across first).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO, grade_examples  # noqa: E402

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


def secrets_of(assignments: list[str]) -> dict[str, str]:
    """A fingerprint of each assignment's install secret (hidden/seed.txt): hidden data differs
    between installs, so two versions' scores compare only when graded from the same secret."""
    found = {}
    for assignment in assignments:
        seed = REPO / "assignments" / assignment / "hidden" / "seed.txt"
        found[assignment] = hashlib.sha256(seed.read_bytes()).hexdigest()[:16] if seed.is_file() else "none"
    return found


def save(out: Path, assignments: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        found = {a: scores_of(a, Path(tmp) / "results") for a in assignments}
    saved = {"secrets": secrets_of(assignments), "scores": found}
    out.write_text(json.dumps(saved, indent=1, sort_keys=True))
    print(f"saved {sum(len(v) for v in found.values())} examples' scores to {out}")


def load(path: Path) -> tuple[dict[str, str] | None, dict]:
    """(secret fingerprints or None if not recorded, scores)."""
    data = json.loads(path.read_text())
    return (data["secrets"], data["scores"]) if "scores" in data else (None, data)


def secret_mismatch(before: dict[str, str] | None, after: dict[str, str] | None) -> list[str]:
    """The assignments whose install secret differs between the two saves."""
    if before is None or after is None:
        return []
    return sorted(a for a in set(before) & set(after) if before[a] != after[a])


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
    (secrets_a, before), (secrets_b, after) = load(args.before), load(args.after)
    mismatch = secret_mismatch(secrets_a, secrets_b)
    if mismatch:  # every hidden score would differ for a reason that is not the code's
        raise SystemExit(f"not comparable: {', '.join(mismatch)} graded from different install secrets "
                         "(copy assignments/*/hidden/seed.txt from one checkout to the other and save again)")
    if secrets_a is None or secrets_b is None:
        print("note: a save without its install secrets' fingerprints; hidden data may differ")
    lines, left_out = differences(before, after, timed=args.timed)
    count = sum(len(v) for v in after.values())
    for line in lines:
        print(line)
    print(f"{count} examples compared; {len(lines)} differences"
          + (f"; left out (timed): {', '.join(sorted(left_out))}" if left_out else ""))
    raise SystemExit(1 if lines else 0)


if __name__ == "__main__":
    main()
