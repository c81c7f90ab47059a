"""The endpoint probe: the harness's client, in a container next to a candidate's HTTP server.

    python /opt/mlgrade/probe.py --manifest /submission/serve.json --inputs /data/probe_inputs/inputs.json
        --out /output/probe.json [--host 127.0.0.1] [--health-timeout 60] [--rate 100] [--duration 10]
        [--warmup 2] [--timeout 2] [--capacity-low 25] [--capacity-high 1600] [--capacity-factor 2]
        [--capacity-refine 3] [--capacity-duration 4] [--capacity-min 1] [--capacity-check 0.5]
        [--p99-ms 50] [--max-error-rate 0.01] [--max-batch 64] [--n-features 20] [--n-classes 3]
        [--correctness-batch 16] ...

Phases, in order: manifest (the port from serve.json) -> cold start -> correctness -> robustness
-> latency at --rate -> capacity search (capacity.py: a sweep of rates --capacity-factor apart
from --capacity-low, starting above --rate when the latency run met the objective, then
--capacity-refine bisections; each step ends once its p99 interval excludes the objective, after
--capacity-min and within --capacity-duration measured seconds). The load phases send
--load-inputs (inputs the server has not seen: correctness answers cached by input are no help),
each row once while the pool lasts, and a random sample of their answers (--load-sample per run)
is kept for the host to check.

Time budget: --budget seconds from the probe's start (default: MLGRADE_PROBE_BUDGET_S, which the
harness sets below the probe's own time limit). Each phase ends early enough to leave the later
ones their least time, a phase that cannot fit is skipped with that reason, and the report is
written whatever happens, so a server slow in every phase still gets every phase it could.

The harness starts the probe right after the server's sandbox and tells it when the server
started (MLGRADE_SERVICE_STARTED_AT), so the cold start, and --health-timeout, count from the
server's start, not from the probe's own start a fraction of a second later: GET /health every
50 ms until a 200 or --health-timeout seconds. When the server exits, the harness sends the probe
SIGHUP (sandbox/_service.py): a server that exits at start is reported at once ("the server
exited"), not after the whole health timeout.
The server is untrusted: every request has a timeout and a bounded answer, and whatever the server
does becomes a problem line in the report, never a crash or a hang of the probe.

probe.json (written atomically after every phase, so a probe killed midway leaves the phases it
finished; percentiles in ms, null where nothing was measured):
  version, manifest {port, problem}, cold_start {healthy, seconds, attempts, problem},
  correctness {inputs, sent, answered, predictions [{label, probabilities} | null], problems},
  robustness [{case, expected, status, json_body, ms, healthy_after, passed, problem}],
  latency {loadgen.LoadResult fields (p99_ci_ms [low, high]: 95% block bootstrap; window [start,
    end]: time.monotonic() of the measured part), error_rate, histogram (base64 HdrHistogram, us)},
  capacity {capacity_rps, capacity_low_rps, capacity_high_rps (the bracket; high null when no rate
    above failed), capped, cut_short, steps [{rate, phase, p50_ms, p99_ms, p99_ci_ms, error_rate,
    duration_s, stopped, window, ok, ...}]} (a step of phase "latency" is the latency run),
  load_check {pool, distinct, requests, reused, samples [{input, phase, rate, status, prediction, problem}]},
  skipped ["phase: why"], settings {the arguments}, budget_s, probe_seconds,
  phases {phase: [start, end]} (time.monotonic() of each phase run; the cold start's from the
    server's start; the host's clock too: containers share CLOCK_MONOTONIC),
  service_exited_s (seconds from the server's start to the harness's word that it exited, or null).
Exit codes: 0 when the probe ran (whatever the server did), 1 when the harness's side failed
(unusable inputs file, a probe bug; the report is still written), 2 for bad arguments.
Loopback only: --host must be 127.0.0.1, ::1 or localhost. Standard library and hdrhistogram only.
"""

from __future__ import annotations

import os
import signal
import time

SERVICE_EXITED_SIGNAL = signal.SIGHUP  # = sandbox._service.SERVICE_EXITED_SIGNAL
_EXITED_AT: list[float] = []  # time.monotonic() when the harness said the server had exited


def _on_service_exit(signum: int, frame: object) -> None:
    # Once is enough: the sandbox's pid 1 (`timeout`) passes the signal on to the probe and again
    # to its process group, and a second one during the interpreter's exit would kill it.
    signal.signal(signum, signal.SIG_IGN)
    if not _EXITED_AT:
        _EXITED_AT.append(time.monotonic())


if __name__ == "__main__":  # first of all: the harness may say so while the probe is still starting
    signal.signal(SERVICE_EXITED_SIGNAL, _on_service_exit)


def _service_start(now_mono: float, now_wall: float, started: str | None) -> float:
    """The cold start's origin on the monotonic clock: the service's start, which the sandbox
    backend passes in MLGRADE_SERVICE_STARTED_AT (wall-clock seconds), or else now. A value that
    is not a time up to 60 s before now is ignored."""
    try:
        behind = now_wall - float(started or "nan")
    except ValueError:
        return now_mono
    return now_mono - behind if 0 <= behind <= 60 else now_mono


SERVICE_STARTED_ENV = "MLGRADE_SERVICE_STARTED_AT"  # = sandbox._base.SERVICE_STARTED_ENV
PROBE_T0 = time.monotonic()
T0 = _service_start(PROBE_T0, time.time(), os.environ.get(SERVICE_STARTED_ENV))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # siblings, even under `python -I`

from http11 import check_loopback  # noqa: E402
from loadgen import finite, run_open_loop  # noqa: E402, F401 - probe.run_open_loop: the load phases' client, for tests
from manifest import ManifestError, load_manifest  # noqa: E402
from probe_checks import (  # noqa: E402
    Health,
    Target,
    case_worst_s,
    robustness_cases,
    run_robustness,
    wait_healthy,
)
from probe_correctness import load_inputs, run_correctness  # noqa: E402
from probe_load import (  # noqa: E402
    MAX_PROBLEM_CHARS,
    OUT_OF_TIME,
    LoadInputs,
    capacity_section,
    load_phases,
)
from probe_load import log as _log  # noqa: E402

VERSION = 1
PHASES = ("cold_start", "correctness", "robustness", "latency", "capacity")
BUDGET_ENV = "MLGRADE_PROBE_BUDGET_S"  # = harness._stages.PROBE_BUDGET_ENV


class Report:
    """probe.json under construction: phases done, phases skipped (and why), phases still pending."""

    def __init__(self, path: str, settings: dict, *, origin: float = T0) -> None:
        self.path, self.origin = path, origin
        self.data: dict = {"version": VERSION, "manifest": {"port": None, "problem": ""}, "cold_start": None,
                           "correctness": None, "robustness": [], "latency": None, "capacity": None,
                           "load_check": None, "skipped": [], "settings": settings, "phases": {}}
        self.pending = list(PHASES)
        self.steps: list[dict] = []  # capacity steps as they are measured
        self.began: dict[str, float] = {}  # phase -> when it started (time.monotonic())

    def begin(self, phase: str, at: float | None = None) -> None:
        """`phase` starts now, or `at` (a time.monotonic() value)."""
        self.began[phase] = time.monotonic() if at is None else at

    def done(self, phase: str, section: object) -> None:
        """`phase` found `section`; it ran from its begin() (or now) to now, on the monotonic clock."""
        now = time.monotonic()
        self.data[phase] = section
        self.data["phases"][phase] = [self.began.get(phase, now), now]
        self.pending.remove(phase)
        self.write()

    def skip_rest(self, reason: str) -> None:
        self.data["skipped"] += [f"{phase}: {reason}"[:MAX_PROBLEM_CHARS] for phase in self.pending]
        self.pending.clear()

    def write(self) -> None:
        """Atomically replace the report file. Raises OSError."""
        unfinished = [f"{phase}: not run (the probe ended before it)" for phase in self.pending]
        exited = round(max(_EXITED_AT[0] - self.origin, 0.0), 3) if _EXITED_AT else None
        data = {**self.data, "skipped": self.data["skipped"] + unfinished,
                "probe_seconds": round(time.monotonic() - PROBE_T0, 3), "service_exited_s": exited}
        text = json.dumps(finite(data), allow_nan=False, separators=(",", ":"))
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".probe-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise


def service_exited() -> bool:
    """Whether the harness has said that the server exited (SERVICE_EXITED_SIGNAL)."""
    return bool(_EXITED_AT)


def cold_start_section(health: Health, health_timeout: float, origin: float, *,
                       waited_s: float | None = None) -> dict:
    """The cold-start section; `waited_s`, when the time budget allowed less than health_timeout."""
    if health.healthy:
        return {"healthy": True, "seconds": round(health.at - origin, 3), "attempts": health.attempts,
                "problem": ""}
    if health.exited:
        after = f" {_EXITED_AT[0] - origin:.1f} s after its start" if _EXITED_AT else ""
        return {"healthy": False, "seconds": None, "attempts": health.attempts, "exited": True,
                "problem": f"the server exited{after}, before it answered 200 on GET /health "
                           f"({health.attempts} attempts; last: {health.problem or 'none'})"}
    within = f"{health_timeout:g} s"
    if waited_s is not None and waited_s < health_timeout:
        within = f"{max(waited_s, 0):.0f} s (all the probe's time budget allowed)"
    return {"healthy": False, "seconds": None, "attempts": health.attempts,
            "problem": f"no 200 from GET /health within {within} of the server's start "
                       f"({health.attempts} attempts; last: {health.problem})"}


class Budget:
    """When the probe must be done (a time.monotonic() value; inf without a budget), and how long
    each later phase needs at least, so an earlier phase stops in time to leave it that."""

    def __init__(self, deadline: float, args: argparse.Namespace) -> None:
        self.deadline = deadline
        cases = robustness_cases(max_batch=args.max_batch, n_features=args.n_features)
        self.robustness_s = sum(case_worst_s(case, args.timeout) for case in cases) + args.timeout
        # a load run: opening its connections (up to one timeout), the schedule, the last request's
        # timeout, loadgen's 1 s backstop after it, and 1 s for building the requests and exiting
        self.latency_s = 2 * args.timeout + args.warmup + args.duration + 2.0
        self.capacity_step_s = (2 * args.timeout + args.capacity_warmup + args.capacity_duration + args.settle
                                + 2.0)
        self._later = {"correctness": self.robustness_s + self.latency_s + self.capacity_step_s,
                       "robustness": self.latency_s + self.capacity_step_s,
                       "latency": self.capacity_step_s, "capacity": 0.0}

    def stop_at(self, phase: str) -> float:
        """The latest time `phase` may run to, leaving the later phases their least time."""
        return self.deadline - self._later[phase]

    def fits(self, phase: str, seconds: float) -> bool:
        return time.monotonic() + seconds <= self.stop_at(phase)


async def run_phases(args: argparse.Namespace, report: Report, port: int, inputs: list[list[float]],
                     load: LoadInputs, budget: Budget) -> None:
    """Cold start, correctness, robustness, latency, capacity; each phase lands in `report`."""
    target = Target(args.host, port)
    health_by = min(report.origin + args.health_timeout,
                    budget.stop_at("correctness") - args.correctness_timeout)
    report.begin("cold_start", report.origin)  # the server's start: the cold start counts from there
    health = await wait_healthy(target, deadline=health_by, timeout_s=args.timeout, exited=service_exited)
    report.done("cold_start", cold_start_section(health, args.health_timeout, report.origin,
                                                 waited_s=health_by - report.origin))
    cold = report.data["cold_start"]
    _log(f"healthy after {cold['seconds']:.2f} s" if health.healthy else cold["problem"])
    if not health.healthy:
        report.skip_rest("the server exited" if health.exited else "server not healthy")
        return
    report.begin("correctness")
    correctness = await run_correctness(target, inputs, batch_size=args.correctness_batch,
                                        n_classes=args.n_classes, timeout_s=args.correctness_timeout,
                                        stop_at=budget.stop_at("correctness"))
    _log(f"correctness: {correctness['answered']}/{len(inputs)} answered")
    report.done("correctness", correctness)
    report.begin("robustness")
    cases = await run_robustness(target, max_batch=args.max_batch, n_features=args.n_features,
                                 timeout_s=args.timeout, stop_at=budget.stop_at("robustness"))
    _log(f"robustness: {sum(c['passed'] for c in cases)}/{len(cases)} passed")
    report.done("robustness", cases)
    after = await wait_healthy(target, deadline=time.monotonic() + args.timeout, timeout_s=args.timeout,
                               exited=service_exited)
    if not after.healthy:
        why = "it exited" if after.exited else after.problem
        report.skip_rest(f"server not healthy after the robustness checks ({why})")
        return
    await load_phases(args, report, target, load, budget)


def _host(text: str) -> str:
    host = "127.0.0.1" if text == "localhost" else text  # never resolved: no DNS, no surprises
    try:
        check_loopback(host)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return host


def _number(kind: type, minimum: float, *, strict: bool = True):
    def parse(text: str):
        value = kind(text)
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            bound = f"{'>' if strict else '>='} {minimum:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range (must be {bound})")
        return value
    parse.__name__ = kind.__name__
    return parse


def _budget_from_env() -> float | None:
    try:
        value = float(os.environ.get(BUDGET_ENV, "nan"))
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The CLI (see the module docstring). Exits 2 on bad arguments."""
    pos, count, nonneg = _number(float, 0), _number(int, 1, strict=False), _number(float, 0, strict=False)
    parser = argparse.ArgumentParser(prog="probe.py", description="Measure a model server on loopback.")
    for name in ("--manifest", "--inputs", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--load-inputs", help="instances for the load phases (default: --inputs)")
    parser.add_argument("--budget", type=pos, default=_budget_from_env(),
                        help=f"seconds from the probe's start to finish within (default ${BUDGET_ENV})")
    options = [("--host", _host, "127.0.0.1", "loopback address of the server"),
               ("--health-timeout", pos, 60.0, "seconds from the server's start"),
               ("--timeout", pos, 2.0, "seconds per request (robustness, health, load)"),
               ("--correctness-timeout", pos, 10.0, "seconds per correctness batch"),
               ("--correctness-batch", count, 16, "instances per correctness request"),
               ("--rate", pos, 100.0, "requests/s of the latency run"),
               ("--duration", pos, 10.0, "measured seconds of the latency run"),
               ("--warmup", nonneg, 2.0, "unmeasured seconds before it"),
               ("--connections", count, 32, "keep-alive connections of the load generator"),
               ("--capacity-low", pos, 25.0, "lowest rate of the capacity search"),
               ("--capacity-high", pos, 1600.0, "highest rate of the capacity search"),
               ("--capacity-factor", _number(float, 1), 2.0, "ratio of consecutive rates"),
               ("--capacity-refine", _number(int, 0, strict=False), 3, "bisections after the first failure"),
               ("--capacity-retry", _number(int, 0, strict=False), 1, "re-measurements of a failing rate"),
               ("--capacity-duration", pos, 4.0, "most measured seconds per capacity step"),
               ("--capacity-min", pos, 1.0, "least measured seconds per capacity step"),
               ("--capacity-check", pos, 0.5, "seconds between a step's looks at its interval"),
               ("--capacity-warmup", nonneg, 1.0, "unmeasured seconds per capacity step"),
               ("--settle", nonneg, 0.5, "seconds of quiet between capacity steps"),
               ("--p99-ms", pos, 50.0, "latency objective of the capacity search"),
               ("--max-error-rate", nonneg, 0.01, "error share allowed in a capacity step"),
               ("--load-sample", count, 100, "answers of the latency run checked"),
               ("--step-sample", count, 20, "answers of each capacity step checked"),
               ("--max-batch", count, 64, "the documented maximum batch"),
               ("--n-features", count, 20, "features per instance"),
               ("--n-classes", count, 3, "classes per prediction")]
    for flag, kind, default, text in options:
        parser.add_argument(flag, type=kind, default=default, help=f"{text} (default %(default)s)")
    args = parser.parse_args(argv)
    if args.capacity_low >= args.capacity_high:
        parser.error("--capacity-low must be below --capacity-high")
    if args.n_features < 2:
        parser.error("--n-features must be at least 2")
    return args


async def _within(deadline: float, phases) -> None:
    async with asyncio.timeout_at(None if math.isinf(deadline) else deadline):
        await phases


def main(argv: list[str] | None = None, *, origin: float = T0, started: float = PROBE_T0) -> int:
    """Run the probe; the exit code. `origin` (a time.monotonic() value) is where the cold start
    and --health-timeout count from: by default the server's start (see _service_start); `started`
    is where --budget counts from: by default the probe's start."""
    args = parse_args(argv)
    report = Report(args.out, settings={k: v for k, v in vars(args).items() if k != "out"}, origin=origin)
    try:
        inputs = load_inputs(args.inputs, n_features=args.n_features)
        pool = load_inputs(args.load_inputs, n_features=args.n_features) if args.load_inputs else inputs
    except (OSError, ValueError) as exc:
        report.skip_rest(f"probe inputs unusable: {exc}")
        report.write()
        _log(f"probe inputs unusable: {exc}")
        return 1
    try:
        manifest = load_manifest(args.manifest)
    except ManifestError as exc:
        report.data["manifest"]["problem"] = str(exc)[:MAX_PROBLEM_CHARS]
        report.skip_rest("no usable serve.json")
        report.write()
        _log(str(exc))
        return 0
    report.data["manifest"]["port"] = manifest.port
    budget = Budget(started + args.budget if args.budget else math.inf, args)
    report.data["budget_s"] = args.budget
    load = LoadInputs(pool, distinct=bool(args.load_inputs), report=report, n_classes=args.n_classes)
    try:
        asyncio.run(_within(budget.deadline, run_phases(args, report, manifest.port, inputs, load, budget)))
    except TimeoutError:  # a backstop: every phase plans to end before the deadline
        if "capacity" in report.pending and report.steps:  # keep the steps measured
            report.done("capacity", capacity_section(args, report.steps, capped=False, cut_short=True))
        report.skip_rest(OUT_OF_TIME)
    except Exception as exc:  # noqa: BLE001 - a probe bug: keep what was measured, say so, exit 1
        traceback.print_exc()
        report.skip_rest(f"probe error: {type(exc).__name__}: {exc}")
        report.write()
        return 1
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
