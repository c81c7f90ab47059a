"""The endpoint probe: the harness's client, in a container next to a candidate's HTTP server.

    python /opt/mlgrade/probe.py --manifest /submission/serve.json --inputs /data/probe_inputs/inputs.json
        --out /output/probe.json [--host 127.0.0.1] [--health-timeout 60] [--rate 100] [--duration 10]
        [--warmup 2] [--timeout 2] [--capacity-low 25] [--capacity-high 1600] [--capacity-duration 4]
        [--p99-ms 50] [--max-error-rate 0.01] [--max-batch 64] [--n-features 20] [--n-classes 3]
        [--correctness-batch 16] ...

Phases, in order: manifest (the port from serve.json) -> cold start -> correctness -> robustness
-> latency at --rate -> capacity search. The harness starts the probe right after the server's
sandbox and tells it when the server started (MLGRADE_SERVICE_STARTED_AT), so the cold start,
and --health-timeout, count from the server's start, not from the probe's own start a fraction of
a second later: GET /health every 50 ms until a 200 or --health-timeout seconds.
The server is untrusted: every request has a timeout and a bounded answer, and whatever the server
does becomes a problem line in the report, never a crash or a hang of the probe.

probe.json (written atomically after every phase, so a probe killed midway leaves the phases it
finished; percentiles in ms, null where nothing was measured):
  version, manifest {port, problem}, cold_start {healthy, seconds, attempts, problem},
  correctness {inputs, sent, answered, predictions [{label, probabilities} | null], problems},
  robustness [{case, expected, status, json_body, ms, healthy_after, passed, problem}],
  latency {loadgen.LoadResult fields, error_rate, histogram (base64 HdrHistogram, us)},
  capacity {capacity_rps, capped, steps [{rate, p50_ms, p99_ms, error_rate, achieved_rate, ok, ...}]},
  skipped ["phase: why"], settings {the arguments}, probe_seconds.
Exit codes: 0 when the probe ran (whatever the server did), 1 when the harness's side failed
(unusable inputs file, a probe bug; the report is still written), 2 for bad arguments.
Loopback only: --host must be 127.0.0.1, ::1 or localhost. Standard library and hdrhistogram only.
"""

from __future__ import annotations

import os
import time


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
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # siblings, even under `python -I`

from http11 import check_loopback  # noqa: E402
from loadgen import LoadResult, capacity_search, meets_objective, run_open_loop  # noqa: E402
from manifest import ManifestError, load_manifest  # noqa: E402
from probe_checks import Health, Target, run_robustness, wait_healthy  # noqa: E402
from probe_correctness import load_inputs, run_correctness  # noqa: E402

VERSION = 1
MAX_PROBLEM_CHARS = 500  # the host's reader refuses longer lines
PHASES = ("cold_start", "correctness", "robustness", "latency", "capacity")


class Report:
    """probe.json under construction: phases done, phases skipped (and why), phases still pending."""

    def __init__(self, path: str, settings: dict, *, origin: float = T0) -> None:
        self.path, self.origin = path, origin
        self.data: dict = {"version": VERSION, "manifest": {"port": None, "problem": ""}, "cold_start": None,
                           "correctness": None, "robustness": [], "latency": None, "capacity": None,
                           "skipped": [], "settings": settings}
        self.pending = list(PHASES)

    def done(self, phase: str, section: object) -> None:
        self.data[phase] = section
        self.pending.remove(phase)
        self.write()

    def skip_rest(self, reason: str) -> None:
        self.data["skipped"] += [f"{phase}: {reason}"[:MAX_PROBLEM_CHARS] for phase in self.pending]
        self.pending.clear()

    def write(self) -> None:
        """Atomically replace the report file. Raises OSError."""
        unfinished = [f"{phase}: not run (the probe ended before it)" for phase in self.pending]
        data = {**self.data, "skipped": self.data["skipped"] + unfinished,
                "probe_seconds": round(time.monotonic() - PROBE_T0, 3)}
        text = json.dumps(_finite(data), allow_nan=False, separators=(",", ":"))
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".probe-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise


def _finite(value: object) -> object:
    """NaN and infinities become null: the report is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _log(message: str) -> None:
    print(f"probe: {message}", file=sys.stderr, flush=True)


def cold_start_section(health: Health, health_timeout: float, origin: float) -> dict:
    if health.healthy:
        return {"healthy": True, "seconds": round(health.at - origin, 3), "attempts": health.attempts,
                "problem": ""}
    return {"healthy": False, "seconds": None, "attempts": health.attempts,
            "problem": f"no 200 from GET /health within {health_timeout:g} s of the server's start "
                       f"({health.attempts} attempts; last: {health.problem})"}


def load_section(result: LoadResult, connections: int) -> dict:
    return {**dataclasses.asdict(result), "error_rate": result.error_rate, "connections": connections}


def _step(rate: float, result: LoadResult, *, p99_ms: float, max_error_rate: float) -> dict:
    return {"rate": round(rate, 3), "p50_ms": result.p50_ms, "p90_ms": result.p90_ms, "p99_ms": result.p99_ms,
            "error_rate": min(result.error_rate, 1.0), "achieved_rate": result.achieved_rate,
            "scheduled": result.scheduled, "errors": result.errors, "timeouts": result.timeouts,
            "ok": meets_objective(result, p99_ms=p99_ms, max_error_rate=max_error_rate),
            "histogram": result.histogram}


async def _load_phases(args: argparse.Namespace, report: Report, target: Target, bodies: list[bytes]) -> None:
    common = {"host": target.host, "port": target.port, "path": "/predict", "bodies": bodies,
              "timeout_s": args.timeout, "connections": args.connections}
    latency = await run_open_loop(rate=args.rate, duration_s=args.duration, warmup_s=args.warmup, **common)
    _log(f"latency at {args.rate:g}/s: p50 {latency.p50_ms:.2f} ms, p99 {latency.p99_ms:.2f} ms, "
         f"error rate {latency.error_rate:.2%}")
    report.done("latency", load_section(latency, args.connections))

    async def measure(rate: float) -> LoadResult:
        return await run_open_loop(rate=rate, duration_s=args.capacity_duration,
                                   warmup_s=args.capacity_warmup, **common)

    search = await capacity_search(measure, low=args.capacity_low, high=args.capacity_high,
                                   p99_ms=args.p99_ms, max_error_rate=args.max_error_rate,
                                   factor=args.capacity_factor,
                                   refine=args.capacity_refine, settle_s=args.settle)
    steps = [_step(rate, result, p99_ms=args.p99_ms, max_error_rate=args.max_error_rate)
             for rate, result in search.curve]
    _log(f"capacity {search.capacity:.1f}/s{' (or more)' if search.capped else ''} in {len(steps)} steps")
    report.done("capacity", {"capacity_rps": round(search.capacity, 3), "capped": search.capped,
                             "objective_p99_ms": args.p99_ms, "max_error_rate": args.max_error_rate,
                             "steps": steps})


async def run_phases(args: argparse.Namespace, report: Report, port: int, inputs: list[list[float]]) -> None:
    """Cold start, correctness, robustness, latency, capacity; each phase lands in `report`."""
    target = Target(args.host, port)
    health = await wait_healthy(target, deadline=report.origin + args.health_timeout, timeout_s=args.timeout)
    report.done("cold_start", cold_start_section(health, args.health_timeout, report.origin))
    cold = report.data["cold_start"]
    _log(f"healthy after {cold['seconds']:.2f} s" if health.healthy else cold["problem"])
    if not health.healthy:
        report.skip_rest("server not healthy")
        return
    correctness = await run_correctness(target, inputs, batch_size=args.correctness_batch,
                                        n_classes=args.n_classes, timeout_s=args.correctness_timeout)
    _log(f"correctness: {correctness['answered']}/{len(inputs)} answered")
    report.done("correctness", correctness)
    cases = await run_robustness(target, max_batch=args.max_batch, n_features=args.n_features,
                                 timeout_s=args.timeout)
    _log(f"robustness: {sum(c['passed'] for c in cases)}/{len(cases)} passed")
    report.done("robustness", cases)
    after = await wait_healthy(target, deadline=time.monotonic() + args.timeout, timeout_s=args.timeout)
    if not after.healthy:
        report.skip_rest(f"server not healthy after the robustness checks ({after.problem})")
        return
    bodies = [json.dumps({"instances": [row]}).encode() for row in inputs]
    await _load_phases(args, report, target, bodies)


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The CLI (see the module docstring). Exits 2 on bad arguments."""
    pos, count, nonneg = _number(float, 0), _number(int, 1, strict=False), _number(float, 0, strict=False)
    parser = argparse.ArgumentParser(prog="probe.py", description="Measure a model server on loopback.")
    for name in ("--manifest", "--inputs", "--out"):
        parser.add_argument(name, required=True)
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
               ("--capacity-factor", _number(float, 1), math.sqrt(2), "ratio of consecutive rates"),
               ("--capacity-refine", _number(int, 0, strict=False), 2, "bisections after the first failure"),
               ("--capacity-duration", pos, 4.0, "measured seconds per capacity step"),
               ("--capacity-warmup", nonneg, 1.0, "unmeasured seconds per capacity step"),
               ("--settle", nonneg, 0.5, "seconds of quiet between capacity steps"),
               ("--p99-ms", pos, 50.0, "latency objective of the capacity search"),
               ("--max-error-rate", nonneg, 0.01, "error share allowed in a capacity step"),
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


def main(argv: list[str] | None = None, *, origin: float = T0) -> int:
    """Run the probe; the exit code. `origin` (a time.monotonic() value) is where the cold start
    and --health-timeout count from: by default the server's start (see _service_start)."""
    args = parse_args(argv)
    report = Report(args.out, settings={k: v for k, v in vars(args).items() if k != "out"}, origin=origin)
    try:
        inputs = load_inputs(args.inputs, n_features=args.n_features)
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
    try:
        asyncio.run(run_phases(args, report, manifest.port, inputs))
    except Exception as exc:  # noqa: BLE001 - a probe bug: keep what was measured, say so, exit 1
        traceback.print_exc()
        report.skip_rest(f"probe error: {type(exc).__name__}: {exc}")
        report.write()
        return 1
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
