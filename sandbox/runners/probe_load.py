"""The endpoint probe's load phases: the latency run at --rate, then the capacity search.

Both send the load inputs (LoadInputs: each pool row once while the pool lasts) and keep a random
sample of the answers for the host to check. A latency run that met the objective is the capacity
search's first step, and the sweep starts above its rate; each capacity step ends once its p99
interval excludes the objective (loadgen.StopRule). Each phase lands in the probe's Report
(`done`), and its run's start and end in report.data["phases"]. Runs inside the sandbox, a sibling
of probe.py; standard library and hdrhistogram only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
from typing import TypedDict

from capacity import capacity_search
from http11 import Response
from loadgen import KEEP_MAX_BYTES, LoadResult, StopRule, meets_objective, run_open_loop
from probe_checks import Target
from probe_correctness import AnswerError, check_answer

MAX_PROBLEM_CHARS = 500  # the host's reader refuses longer lines
MAX_SAMPLES = 5000  # load-phase answers kept in the report, over all runs (defaults: about 500)
OUT_OF_TIME = "the probe's time budget ran out"


def log(message: str) -> None:
    print(f"probe: {message}", file=sys.stderr, flush=True)


class LoadCheck(TypedDict):
    """report.data["load_check"]: the load inputs' pool and how it was used, and the sampled answers."""

    pool: int
    distinct: bool
    requests: int
    reused: bool
    samples: list[dict[str, object]]  # {input, phase, rate, status, prediction, problem}


def load_section(result: LoadResult, connections: int) -> dict:
    figures = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "kept"}
    return {**figures, "error_rate": result.error_rate, "connections": connections}



class LoadInputs:
    """The load phases' request bodies, each pool row sent once while the pool lasts, and a random
    sample of the answers checked into report.data["load_check"] (the host compares them with the
    reference). The sample is drawn from the OS's randomness: the server cannot tell it apart."""

    def __init__(self, pool: list[list[float]], *, distinct: bool, report, n_classes: int) -> None:
        self.bodies = [json.dumps({"instances": [row]}).encode() for row in pool]
        self.offset, self.n_classes, self.random = 0, n_classes, random.SystemRandom()
        self.section: LoadCheck = {"pool": len(pool), "distinct": distinct, "requests": 0, "reused": False,
                                   "samples": []}
        report.data["load_check"] = self.section

    def next_run(self, rate: float, seconds: float, sample: int, *,
                 surely_s: float | None = None) -> tuple[list[bytes], frozenset[int], int]:
        """Bodies for a run of `rate` x `seconds` requests (rotated past the rows already sent), the
        request indices whose answers to keep, and the pool offset of request 0. The kept ones are
        drawn from the first `surely_s` seconds (all of it by default): a run that may end early
        keeps its sample from the part that is surely sent."""
        total = math.ceil(rate * seconds)
        start = self.offset % len(self.bodies)
        self._advance(total)
        room = max(MAX_SAMPLES - len(self.section["samples"]), 0)
        among = min(total, math.ceil(rate * surely_s)) if surely_s is not None else total
        keep = frozenset(self.random.sample(range(among), min(sample, among, room)))
        needed = min(total, len(self.bodies))  # request i sends row (start + i) % pool
        rows = [self.bodies[(start + i) % len(self.bodies)] for i in range(needed)]
        return rows, keep, start

    def _advance(self, requests: int) -> None:
        self.offset += requests
        self.section["requests"] = self.offset
        self.section["reused"] = self.offset > len(self.bodies)

    def unsent(self, requests: int) -> None:
        """The last run ended early, `requests` short of its plan: the next run starts at those rows."""
        self._advance(-requests)

    def check(self, result: LoadResult, start: int, phase: str, rate: float) -> None:
        for index, status, body in result.kept:
            try:
                if body is None:
                    raise AnswerError(f"an answer over {KEEP_MAX_BYTES} bytes for one instance")
                predictions, problems = check_answer(Response(status, {}, body, True), 1, self.n_classes)
                prediction, problem = predictions[0], "; ".join(problems)
            except AnswerError as exc:
                prediction, problem = None, str(exc)
            self.section["samples"].append({
                "input": (start + index) % len(self.bodies), "phase": phase, "rate": round(rate, 3),
                "status": status, "prediction": prediction, "problem": problem[:MAX_PROBLEM_CHARS]})


def _step(rate: float, result: LoadResult, *, p99_ms: float, max_error_rate: float, phase: str) -> dict:
    return {"rate": round(rate, 3), "phase": phase, "p50_ms": result.p50_ms, "p90_ms": result.p90_ms,
            "p99_ms": result.p99_ms, "p99_ci_ms": result.p99_ci_ms, "error_rate": min(result.error_rate, 1.0),
            "achieved_rate": result.achieved_rate, "scheduled": result.scheduled, "errors": result.errors,
            "timeouts": result.timeouts, "duration_s": result.duration_s, "stopped": result.stopped,
            "window": result.window, "histogram": result.histogram,
            "ok": meets_objective(result, p99_ms=p99_ms, max_error_rate=max_error_rate)}


async def _measure(args: argparse.Namespace, target: Target, load: LoadInputs, *, phase: str, rate: float,
                   duration_s: float, warmup_s: float, sample: int,
                   stop_rule: StopRule | None = None) -> LoadResult:
    surely = warmup_s + stop_rule.min_s if stop_rule else None
    bodies, keep, start = load.next_run(rate, warmup_s + duration_s, sample, surely_s=surely)
    result = await run_open_loop(host=target.host, port=target.port, path="/predict", bodies=bodies,
                                 rate=rate, duration_s=duration_s, warmup_s=warmup_s, timeout_s=args.timeout,
                                 connections=args.connections, keep=keep, stop_rule=stop_rule)
    if result.stopped:
        load.unsent(math.ceil((warmup_s + duration_s) * rate) - math.ceil(warmup_s * rate) - result.scheduled)
    load.check(result, start, phase, rate)
    return result


async def load_phases(args: argparse.Namespace, report, target: Target, load: LoadInputs,
                       budget) -> None:
    """The latency run, then the capacity search, into `report` (the probe's Report), each within
    what `budget` (the probe's Budget) leaves them."""
    if not budget.fits("latency", budget.latency_s):
        report.skip_rest(OUT_OF_TIME)
        return
    report.begin("latency")
    latency = await _measure(args, target, load, phase="latency", rate=args.rate, duration_s=args.duration,
                             warmup_s=args.warmup, sample=args.load_sample)
    low, high = latency.p99_ci_ms
    log(f"latency at {args.rate:g}/s: p50 {latency.p50_ms:.2f} ms, p99 {latency.p99_ms:.2f} ms "
         f"(95% CI {low:.2f}-{high:.2f}), error rate {latency.error_rate:.2%}")
    report.done("latency", load_section(latency, args.connections))
    report.begin("capacity")
    # a latency run that met the objective is a capacity step at its rate, and the sweep starts above it
    known = meets_objective(latency, p99_ms=args.p99_ms, max_error_rate=args.max_error_rate) and \
        args.capacity_low <= args.rate <= args.capacity_high
    if known:
        report.steps.append(_step(args.rate, latency, p99_ms=args.p99_ms, max_error_rate=args.max_error_rate,
                                  phase="latency"))
    rule = StopRule(p99_ms=args.p99_ms, max_error_rate=args.max_error_rate, min_s=args.capacity_min,
                    every_s=args.capacity_check)

    async def measure(rate: float) -> LoadResult:
        result = await _measure(args, target, load, phase="capacity", rate=rate,
                                duration_s=args.capacity_duration, warmup_s=args.capacity_warmup,
                                sample=args.step_sample, stop_rule=rule)
        report.steps.append(_step(rate, result, p99_ms=args.p99_ms, max_error_rate=args.max_error_rate,
                                  phase="capacity"))
        return result

    search = await capacity_search(measure, low=args.capacity_low, high=args.capacity_high,
                                   p99_ms=args.p99_ms, max_error_rate=args.max_error_rate,
                                   factor=args.capacity_factor, refine=args.capacity_refine,
                                   settle_s=args.settle, retry=args.capacity_retry,
                                   known_pass=args.rate if known else None,
                                   stop=lambda: not budget.fits("capacity", budget.capacity_step_s))
    bound = " (or more)" if search.capped else f" (below {search.above:.1f}/s)"
    cut = f" (cut short: {OUT_OF_TIME})" if search.cut_short else ""
    log(f"capacity {search.capacity:.1f}/s{bound} in {len(report.steps)} steps{cut}")
    report.done("capacity", capacity_section(args, report.steps, capped=search.capped,
                                             cut_short=search.cut_short))


def capacity_section(args: argparse.Namespace, steps: list[dict], *, capped: bool, cut_short: bool) -> dict:
    """The capacity section from the steps measured: the highest rate that met the objective (the
    search only measures rates above a passing one while they pass, so that is its answer), and
    the bracket [capacity_low_rps, capacity_high_rps]: the lowest rate above it that failed (null
    when none did: capped, or cut short before one failed)."""
    capacity = max((step["rate"] for step in steps if step["ok"]), default=0.0)
    above = [step["rate"] for step in steps if not step["ok"] and step["rate"] > capacity]
    return {"capacity_rps": round(capacity, 3), "capacity_low_rps": round(capacity, 3),
            "capacity_high_rps": min(above, default=None), "capped": capped, "cut_short": cut_short,
            "objective_p99_ms": args.p99_ms, "max_error_rate": args.max_error_rate,
            "steps": sorted(steps, key=lambda step: step["rate"])}
