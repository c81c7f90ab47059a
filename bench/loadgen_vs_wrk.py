"""The open-loop load generator against wrk, in one run, on loopback stub servers.

    python bench/loadgen_vs_wrk.py [--seconds 5]

1. p50 at a moderate rate, generator vs wrk (trivial server, then one with a 2 ms injected delay).
   wrk is closed-loop, so it runs with one connection: neither tool saturates the server.
2. A server with a 1 ms delay that freezes once for 1 s: generator p99 vs wrk p99, and vs the
   generator's own latency-from-send p99 (what a closed-loop client without correction reports).
3. The highest open-loop rate the generator sustains on one core with schedule-lag p99 < 2 ms.

The bench process (and wrk) are pinned to CPU 0 and the stub server to CPU 1 when there are two.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sandbox import RUNNERS_DIR  # noqa: E402

sys.path.insert(0, str(RUNNERS_DIR))  # the generator runs in the sandbox, where its siblings are top level
from loadgen import LoadResult, run_open_loop  # noqa: E402

WRK = "/usr/bin/wrk"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_TWO_CORES = len(os.sched_getaffinity(0)) >= 2


@contextmanager
def stub(*args: str) -> Iterator[int]:
    """A fresh stub server subprocess on 127.0.0.1 (pinned to CPU 1); yields its port."""
    cmd = [sys.executable, "-m", "bench.http_stub", "--lifetime", "120", *args]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        if _TWO_CORES:
            os.sched_setaffinity(proc.pid, {1})
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"stub did not start: {line!r}")
        yield int(line.split()[1])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wrk(port: int, connections: int, seconds: int) -> dict[str, float]:
    """Run wrk (closed loop) and parse its latency percentiles, in ms."""
    cmd = [WRK, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/"]
    print("   $", " ".join(cmd))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    found = {f"p{m[1]}": float(m[2]) * _UNITS[m[3]]
             for m in re.finditer(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    found["rate"] = float(rps[1]) if rps else float("nan")
    return found


def generate(port: int, rate: float, seconds: float, connections: int, warmup_s: float = 1.0) -> LoadResult:
    print(f"   generator: run_open_loop(port={port}, path='/', rate={rate:g}, duration_s={seconds:g}, "
          f"warmup_s={warmup_s:g}, timeout_s=5, connections={connections})")
    return asyncio.run(run_open_loop(port=port, path="/", body=b"", rate=rate, duration_s=seconds,
                                     warmup_s=warmup_s, timeout_s=5.0, connections=connections))


def p50_comparison(seconds: int) -> None:
    print("1. p50 at a moderate rate (1000 req/s for the generator; wrk -c1, closed loop)")
    for label, args in (("trivial server", ()), ("server with 2 ms injected delay", ("--delay-ms", "2"))):
        with stub(*args) as port:
            ref = wrk(port, 1, seconds)
        with stub(*args) as port:
            ours = generate(port, 1000, seconds, connections=4)
        print(f"   {label}: wrk p50 {ref['p50']:.3f} ms ({ref['rate']:.0f} req/s closed loop); "
              f"generator p50 {ours.p50_ms:.3f} ms (from send {ours.uncorrected_p50_ms:.3f} ms), "
              f"ratio {ours.p50_ms / ref['p50']:.2f}; schedule-lag p99 {ours.lag_p99_ms:.3f} ms")


def stall_comparison(seconds: int) -> None:
    print("2. Stall: 1 ms delay, one 1 s freeze 2 s after the first request")
    args = ("--delay-ms", "1", "--stall-at", "2", "--stall-ms", "1000")
    with stub(*args) as port:
        ref = wrk(port, 8, seconds + 1)
    with stub(*args) as port:
        ours = generate(port, 1000, seconds, connections=8)
    print(f"   wrk p99 {ref['p99']:.3f} ms ({ref['rate']:.0f} req/s); generator p99 {ours.p99_ms:.1f} ms, "
          f"p99.9 {ours.p999_ms:.1f} ms, max {ours.max_ms:.1f} ms, "
          f"from-send p99 {ours.uncorrected_p99_ms:.3f} ms; "
          f"generator/wrk p99 ratio {ours.p99_ms / ref['p99']:.2f}; "
          f"corrected/from-send p99 ratio {ours.p99_ms / ours.uncorrected_p99_ms:.0f}x")
    print("   note: wrk 4.x post-corrects its histogram (stats_correct, at the mean per-connection interval),"
          " so its p99 sees the stall too; the from-send p99 is the plain closed-loop view")


def max_rate(seconds: float) -> None:
    print("3. Highest open-loop rate with schedule-lag p99 < 2 ms (generator on one core, 16 connections)")
    best = 0.0
    for rate in (1000, 2000, 3000, 4000, 6000, 8000, 10000, 12000, 16000, 20000):
        with stub() as port:
            result = generate(port, rate, seconds, connections=16, warmup_s=0.5)
        ok = result.lag_p99_ms < 2.0 and result.error_rate <= 0.01 and result.achieved_rate >= 0.98 * rate
        print(f"   {rate:>6} req/s: lag p99 {result.lag_p99_ms:.3f} ms, "
              f"achieved {result.achieved_rate:.0f}/s, "
              f"p99 {result.p99_ms:.3f} ms, errors {result.errors}, timeouts {result.timeouts} "
              f"-> {'ok' if ok else 'FAIL'}")
        if not ok:
            break
        best = rate
    print(f"   highest sustained rate: {best:.0f} req/s (target >= 3000)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    seconds = parser.parse_args().seconds
    if _TWO_CORES:
        os.sched_setaffinity(0, {0})  # wrk inherits this: both clients get the same single core
    print(f"cores: bench+wrk on CPU 0, stub on CPU 1: {_TWO_CORES}")
    p50_comparison(seconds)
    stall_comparison(seconds)
    max_rate(3.0)


if __name__ == "__main__":
    main()
