"""A/A study of the endpoint grade: the same submission graded again and again, idle and under load.

    python bench/aa_latency.py [--repeats 10] [--examples fast naive] [--conditions idle load]
                               [--load 2] [--results DIR] [--json-out FILE]

Each example of assignments/endpoint/examples is graded `--repeats` times per condition with
`python -m harness grade endpoint EXAMPLE --force --json --no-mlflow --results DIR`:
`idle` with nothing started by the bench, `load` with `--load` busy-loop processes (pure CPU, no
I/O, no network) started before each grade and stopped after it (and in every exit path, Ctrl-C
included). The definitions of flagged, scored, spread, false alarm and silently low are in
bench/aa_stats.py. Printed: a table per example and condition, then the issue's targets with
pass/fail:

- idle: total spread <= 1 point of 100;
- load: every scored grade within 3 points of the idle median (none silently low);
- every condition: A/A false alarms (pairs of scored totals more than 5 apart) <= 5%.

`--json-out` keeps the raw grades and the summaries. A results folder outside the repository is
used (and reused: its data and image caches make later runs faster); results there are overwritten.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.aa_stats import (  # noqa: E402
    FALSE_ALARM_POINTS,
    LOW_MARGIN_POINTS,
    Grade,
    Summary,
    outside_band,
    parse_grade,
    silently_low,
    summarise,
)

EXAMPLES = REPO / "assignments" / "endpoint" / "examples"
GRADE_TIMEOUT_S = 900  # a grade that takes longer is recorded as failed
SPREAD_TARGET = 1.0
FALSE_ALARM_TARGET = 0.05


def _spin() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it; Ctrl-C must not print a trace
    while True:
        pass


@contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """`processes` busy-loop processes for the duration of the block; none left behind."""
    ctx = multiprocessing.get_context("fork")  # spawn would re-import __main__, which a caller may lack
    procs = [ctx.Process(target=_spin, daemon=True, name=f"aa-spin-{i}") for i in range(processes)]
    try:
        for proc in procs:
            proc.start()
        yield
    finally:
        for proc in procs:
            if proc.pid is not None:
                proc.kill()
        for proc in procs:
            if proc.pid is not None:
                proc.join(timeout=10)


def _stored_result(results: Path, submission_id: str) -> dict | None:
    """The result.json the grade wrote (its criteria may carry fields the --json line leaves out)."""
    if not submission_id or "/" in submission_id:
        return None
    for path in (results / "endpoint").glob(f"*/{submission_id}/result.json"):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None
    return None


def grade_once(example: str, results: Path) -> Grade:
    """One forced grade of `example`, parsed; a grade that produced no JSON line is a failed one."""
    cmd = [sys.executable, "-m", "harness", "grade", "endpoint", str(EXAMPLES / example), "--force", "--json",
           "--no-mlflow", "--results", str(results)]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=GRADE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Grade("bench_timeout", None, {}, False, f"no answer in {GRADE_TIMEOUT_S} s",
                     time.monotonic() - start)
    seconds = time.monotonic() - start
    for text in reversed(proc.stdout.splitlines()):
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and "status" in line:
            stored = _stored_result(results, str(line.get("submission_id", "")))
            return parse_grade(line, stored=stored, seconds=seconds)
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
    return Grade("no_json", None, {}, False, f"exit {proc.returncode}: {tail}", seconds)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(example: str, condition: str, summary: Summary, idle_median: float | None) -> list[str]:
    """The per-example, per-condition table (under 80 columns)."""
    lines = [f"{example}, {condition}: {summary.grades} grades, {summary.scored} scored, "
             f"{summary.flagged} flagged machine busy, {summary.failed} failed",
             f"  median {_fmt(summary.seconds_median, 0)} s per grade",
             f"  {'(scores of 100)':<18}{'median':>8}{'min':>8}{'max':>8}{'spread':>8}{'sd':>8}"]
    for name, (median, low, high, spread_, sd) in summary.columns.items():
        digits = 2 if "(ms)" in name else 1  # a fast server's p99 is a few ms
        lines.append(f"  {name:<18}{_fmt(median, digits):>8}{_fmt(low, digits):>8}{_fmt(high, digits):>8}"
                     f"{_fmt(spread_, digits):>8}{_fmt(sd, 2):>8}")
    alarms, pairs = summary.false_alarms
    lines.append(f"  false alarms (pairs > {FALSE_ALARM_POINTS:g} apart): {alarms} of {pairs}"
                 + (f" ({alarms / pairs:.0%})" if pairs else ""))
    if condition != "idle" and idle_median is not None:
        lines.append(f"  vs idle median {idle_median:.1f}: {silently_low(summary.totals, idle_median)} "
                     f"silently low (> {LOW_MARGIN_POINTS:g} below), "
                     f"{outside_band(summary.totals, idle_median)} outside +-{LOW_MARGIN_POINTS:g}")
    return lines


def targets(example: str, summaries: dict[str, Summary]) -> list[tuple[str, str, bool | None]]:
    """(what, measured, passed) for each target that applies; passed None when nothing to judge."""
    out: list[tuple[str, str, bool | None]] = []
    idle = summaries.get("idle")
    idle_median = idle.columns["total"][0] if idle else None
    if idle is not None:
        spread_ = idle.columns["total"][3]
        out.append((f"{example} idle: total spread <= {SPREAD_TARGET:g}", _fmt(spread_),
                    None if spread_ is None else spread_ <= SPREAD_TARGET))
    for condition, summary in summaries.items():
        if condition != "idle":
            low = None if idle_median is None else outside_band(summary.totals, idle_median)
            out.append((f"{example} {condition}: scored grades within +-{LOW_MARGIN_POINTS:g} of idle median",
                        "-" if low is None else f"{low} not, {summary.flagged} flagged",
                        None if low is None else low == 0))
        alarms, pairs = summary.false_alarms
        out.append((f"{example} {condition}: false alarms <= {FALSE_ALARM_TARGET:.0%}",
                    f"{alarms}/{pairs}", None if not pairs else alarms / pairs <= FALSE_ALARM_TARGET))
    return out


def run(examples: Sequence[str], conditions: Sequence[str], repeats: int, load: int,
        results: Path) -> dict[str, dict[str, list[Grade]]]:
    grades: dict[str, dict[str, list[Grade]]] = {e: {c: [] for c in conditions} for e in examples}
    for condition in conditions:
        for i in range(repeats):
            for example in examples:
                with cpu_load(load if condition == "load" else 0):
                    grade = grade_once(example, results)
                grades[example][condition].append(grade)
                flag = " FLAGGED" if grade.flagged else ""
                print(f"[{condition} {i + 1}/{repeats}] {example}: {grade.status} total {_fmt(grade.total)} "
                      f"latency {_fmt(grade.criteria.get('latency'))} capacity "
                      f"{_fmt(grade.criteria.get('capacity'))} in {grade.seconds:.0f} s{flag}"
                      + (f" ({grade.reason[:60]})" if grade.reason else ""), flush=True)
    return grades


def report(grades: dict[str, dict[str, list[Grade]]]) -> tuple[list[str], dict]:
    lines, raw = [], {}
    checks: list[tuple[str, str, bool | None]] = []
    for example, by_condition in grades.items():
        summaries = {c: summarise(g) for c, g in by_condition.items()}
        idle_median = summaries["idle"].columns["total"][0] if "idle" in summaries else None
        for condition, summary in summaries.items():
            lines += ["", *table(example, condition, summary, idle_median)]
        checks += targets(example, summaries)
        raw[example] = {c: {"grades": [asdict(g) for g in by_condition[c]], "summary": asdict(s)}
                        for c, s in summaries.items()}
    lines += ["", "targets"]
    for what, measured, passed in checks:
        verdict = "n/a" if passed is None else ("pass" if passed else "FAIL")
        lines.append(f"  {what:<56} {measured:>16} {verdict:>4}")
    return lines, raw


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--examples", nargs="+", default=["fast", "naive"])
    parser.add_argument("--conditions", nargs="+", choices=["idle", "load"], default=["idle", "load"])
    parser.add_argument("--load", type=int, default=2, help="busy-loop processes in the load condition")
    parser.add_argument("--results", type=Path, default=Path(tempfile.gettempdir()) / "mlgrade-aa-results")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the busy loops are stopped then too
    missing = [e for e in args.examples if not (EXAMPLES / e).is_dir()]
    if missing or args.repeats < 1 or args.load < 1:
        parser.error(f"need existing examples (missing: {missing}), --repeats >= 1, --load >= 1")
    print(f"A/A study: {args.examples} x {args.conditions} x {args.repeats}, load {args.load} "
          f"busy loops, results in {args.results}", flush=True)
    start = time.monotonic()
    grades = run(args.examples, args.conditions, args.repeats, args.load, args.results)
    lines, raw = report(grades)
    print("\n".join(lines))
    print(f"\n{time.monotonic() - start:.0f} s in all")
    if args.json_out:
        args.json_out.write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
