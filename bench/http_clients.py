"""The probe's hand-written HTTP/1.1 client against clients built on h11 and on httptools, in one run.

    python bench/http_clients.py [--seconds 5] [--rounds 3]

The same open-loop load generator (`sandbox/runners/loadgen.py`, 32 keep-alive connections as the
probe uses) runs with each client in turn against a fresh trivial stub server on loopback:
(a) http11.Connection, (b) an asyncio client on h11, (c) one on httptools' llhttp response parser
(both in bench/_parser_clients.py, with the same bounds and errors). Measured:

1. client CPU per request: process time over the schedule / requests at 1600 req/s (the probe's
   top capacity step), with the scheduler's 1 ms busy-wait before each send turned off (it would
   otherwise fill the idle time and hide the cost). The figure includes the generator's own work
   (scheduling, histograms, asyncio's wake-ups), the same for every client: compare the deltas.
   Per request it falls as the rate rises (more requests per wake-up of the event loop);
2. p50 and p99 of the measured latency (from the scheduled send time) at 200 and 1000 req/s;
3. the highest rate each sustains on one core with schedule-lag p99 < 2 ms (in one of 3 runs);
4. the parser alone, no I/O: one request written and its response parsed, per call.

Runs are interleaved client by client, `--rounds` times, and the median round is reported. The bench
is pinned to CPU 0 and each stub to CPU 1 when there are two. The CPU other processes used meanwhile
is printed at the end: the figures are only as clean as that.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sandbox import RUNNERS_DIR  # noqa: E402

sys.path.insert(0, str(RUNNERS_DIR))  # the client runs in the sandbox, where its siblings are top level
import h11  # noqa: E402
import httptools  # noqa: E402
import loadgen  # noqa: E402
from http11 import Connection, build_request, parse_response  # noqa: E402

from bench._parser_clients import H11Connection, HttptoolsConnection  # noqa: E402
from bench.loadgen_vs_wrk import stub  # noqa: E402

CLIENTS: dict[str, type] = {"http11": Connection, "h11": H11Connection, "httptools": HttptoolsConnection}
CONNECTIONS = 32  # the probe's --connections default
PROBE_TOP_RATE = 1600  # the endpoint assignment's --capacity-high
SWEEP = (500, 1000, 1600, 2000, 3000, 4000, 6000, 8000, 10000, 12000)
TRIES = 3  # a rate passes when one of this many runs does: one preemption by another process is no limit
# an answer shaped like the endpoint's: a uvicorn-style head and a small JSON body
_ANSWER = (b"HTTP/1.1 200 OK\r\ndate: Tue, 01 Dec 2026 22:00:00 GMT\r\nserver: uvicorn\r\n"
           b"content-length: 38\r\ncontent-type: application/json\r\n\r\n"
           b'{"predictions":[[0.12,0.31,0.57]]}    ')


@dataclass(frozen=True)
class Run:
    client: str
    rate: float
    result: loadgen.LoadResult
    cpu_us: float  # this process's CPU time per request over the schedule (warm-up included)


@contextmanager
def using(client: str, marks: list[float], *, spin: bool = True) -> Iterator[None]:
    """The load generator with `client`'s connection class (and optionally no busy-wait).

    The process time at the start and end of the schedule goes into `marks`: that span leaves out
    the set-up (the pool, the histograms) and the summary at the end, which cost the same whatever
    the client and would otherwise weigh on the per-request figure as a fixed cost.
    """
    saved = loadgen.Connection, loadgen._SPIN_S, loadgen._schedule
    schedule = loadgen._schedule

    async def timed(*args: object) -> None:
        marks.append(time.process_time())
        await schedule(*args)
        marks.append(time.process_time())

    loadgen.Connection, loadgen._schedule = CLIENTS[client], timed
    if not spin:
        loadgen._SPIN_S = 0.0
    try:
        yield
    finally:
        loadgen.Connection, loadgen._SPIN_S, loadgen._schedule = saved


def measure(client: str, rate: float, seconds: float, *, warmup_s: float = 1.0, spin: bool = True) -> Run:
    marks: list[float] = []
    with stub() as port, using(client, marks, spin=spin):
        result = asyncio.run(loadgen.run_open_loop(
            port=port, path="/", body=b'{"features":[0.1,0.2,0.3,0.4]}', rate=rate, duration_s=seconds,
            warmup_s=warmup_s, timeout_s=5.0, connections=CONNECTIONS))
    if result.errors or result.timeouts:
        print(f"   warning: {client} at {rate:g}/s: {result.errors} errors, {result.timeouts} timeouts")
    return Run(client, rate, result, (marks[1] - marks[0]) / math.ceil((warmup_s + seconds) * rate) * 1e6)


def median_run(runs: list[Run], key: Callable[[Run], float]) -> float:
    return statistics.median(key(r) for r in runs)


def rounds(rate: float, seconds: float, count: int, *, spin: bool) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = {name: [] for name in CLIENTS}
    for i in range(count):
        for name in CLIENTS:
            run = measure(name, rate, seconds, spin=spin)
            out[name].append(run)
            print(f"   round {i + 1} {name:>9} {rate:>5g}/s: cpu {run.cpu_us:6.1f} us/req, "
                  f"p50 {run.result.p50_ms:.3f} ms, p99 {run.result.p99_ms:.3f} ms, "
                  f"lag p99 {run.result.lag_p99_ms:.3f} ms")
    return out


def cpu_per_request(seconds: float, count: int) -> dict[str, float]:
    print(f"1. client CPU per request at {PROBE_TOP_RATE} req/s, busy-wait off "
          f"({count} rounds of {seconds:g} s)")
    runs = rounds(PROBE_TOP_RATE, seconds, count, spin=False)
    return {name: median_run(r, lambda x: x.cpu_us) for name, r in runs.items()}


def latency(seconds: float, count: int) -> dict[tuple[str, int], tuple[float, float]]:
    out = {}
    for rate in (200, 1000):
        print(f"2. measured latency at {rate} req/s ({count} rounds of {seconds:g} s)")
        runs = rounds(rate, seconds, count, spin=True)
        for name, r in runs.items():
            out[name, rate] = (median_run(r, lambda x: x.result.p50_ms),
                               median_run(r, lambda x: x.result.p99_ms))
    return out


def max_rate(seconds: float) -> dict[str, float]:
    print(f"3. highest rate with schedule-lag p99 < 2 ms, one core ({CONNECTIONS} connections, "
          f"{seconds:g} s, best of {TRIES})")
    best = dict.fromkeys(CLIENTS, 0.0)
    for name in CLIENTS:
        for rate in SWEEP:
            for _ in range(TRIES):
                res = measure(name, rate, seconds, warmup_s=0.5).result
                ok = res.lag_p99_ms < 2.0 and res.error_rate <= 0.01 and res.achieved_rate >= 0.98 * rate
                print(f"   {name:>9} {rate:>6} req/s: lag p99 {res.lag_p99_ms:.3f} ms, achieved "
                      f"{res.achieved_rate:.0f}/s, p99 {res.p99_ms:.3f} ms -> {'ok' if ok else 'FAIL'}")
                if ok:
                    break
            if not ok:
                break
            best[name] = rate
    return best


def _h11_cycle(payload: bytes) -> Callable[[], None]:
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(method=b"POST", target=b"/predict",
                          headers=[(b"Host", b"127.0.0.1:8000"), (b"Content-Type", b"application/json"),
                                   (b"Content-Length", str(len(payload)).encode())])

    def cycle() -> None:
        conn.send(request)
        conn.send(h11.Data(data=payload))
        conn.send(h11.EndOfMessage())
        conn.receive_data(_ANSWER)
        while not isinstance(conn.next_event(), h11.EndOfMessage):
            pass
        conn.start_next_cycle()
    return cycle


def _httptools_cycle(payload: bytes) -> Callable[[], None]:
    class Sink:
        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

        def on_message_begin(self) -> None:
            self.headers, self.body = {}, bytearray()

        def on_body(self, body: bytes) -> None:
            self.body += body

    parser = httptools.HttpResponseParser(Sink())

    def cycle() -> None:
        build_request("127.0.0.1", 8000, "POST", "/predict", payload)
        parser.feed_data(_ANSWER)
        parser.get_status_code()
    return cycle


def _http11_cycle(payload: bytes) -> Callable[[], None]:
    def cycle() -> None:
        build_request("127.0.0.1", 8000, "POST", "/predict", payload)
        parse_response(_ANSWER, eof=False)
    return cycle


def parser_alone(count: int = 50_000) -> dict[str, float]:
    print(f"4. parser alone: one request written and its response parsed, no I/O ({count} calls, best of 5)")
    payload = b'{"features":[0.1,0.2,0.3,0.4]}'
    out = {}
    for name, make in (("http11", _http11_cycle), ("h11", _h11_cycle), ("httptools", _httptools_cycle)):
        cycle, times = make(payload), []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(count):
                cycle()
            times.append((time.perf_counter() - start) / count * 1e6)
        out[name] = min(times)
        print(f"   {name:>9}: {out[name]:.2f} us per request/response")
    return out


class NoiseMeter:
    """The CPU that other processes used, from /proc/stat less this process and its waited-for
    children (the stubs): how undisturbed a stretch of measurement was."""

    def __init__(self) -> None:
        self._mark = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait
        own = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        return busy, sum(r.ru_utime + r.ru_stime for r in own), time.monotonic()

    def since_last(self) -> str:
        (busy0, own0, wall0), (busy1, own1, wall1) = self._mark, self._read()
        self._mark = (busy1, own1, wall1)
        others = (busy1 - busy0) - (own1 - own0)
        return (f"other processes used {others:.1f} CPU-s in {wall1 - wall0:.0f} s "
                f"({others / (wall1 - wall0):.2f} of a core)")


def summary(cpu: dict[str, float], lat: dict, best: dict[str, float], alone: dict[str, float]) -> None:
    print("\nsummary (medians of the rounds; deltas against http11)")
    print(f"{'client':>10} {'cpu us/req':>11} {'% core':>7} {'p50@200':>9} {'p99@200':>9} "
          f"{'p50@1000':>9} {'p99@1000':>9} {'max rate':>9} {'parse us':>9}")
    for name in CLIENTS:
        print(f"{name:>10} {cpu[name]:>11.1f} {cpu[name] * PROBE_TOP_RATE / 1e4:>6.1f}% "
              f"{lat[name, 200][0]:>9.3f} {lat[name, 200][1]:>9.3f} {lat[name, 1000][0]:>9.3f} "
              f"{lat[name, 1000][1]:>9.3f} {best[name]:>9.0f} {alone[name]:>9.2f}")
    for name in ("h11", "httptools"):
        extra = cpu[name] - cpu["http11"]
        p50 = {rate: lat[name, rate][0] - lat["http11", rate][0] for rate in (200, 1000)}
        print(f"{name}: {extra:+.1f} us/request client CPU ({extra * PROBE_TOP_RATE / 1e4:+.1f}% of the "
              f"probe's core at {PROBE_TOP_RATE} req/s); p50 {p50[200]:+.3f} ms at 200/s, "
              f"{p50[1000]:+.3f} ms at 1000/s; p99 {lat[name, 1000][1] - lat['http11', 1000][1]:+.3f} ms "
              f"at 1000/s; max rate {best[name]:.0f} vs {best['http11']:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    two_cores = len(os.sched_getaffinity(0)) >= 2
    if two_cores:
        os.sched_setaffinity(0, {0})
    print(f"bench on CPU 0, stub on CPU 1: {two_cores}; h11 {h11.__version__}, "
          f"httptools {httptools.__version__}; load average {os.getloadavg()[0]:.2f}")
    whole, part = NoiseMeter(), NoiseMeter()
    alone = parser_alone()
    cpu = cpu_per_request(args.seconds, args.rounds)
    print(f"   noise: {part.since_last()}")
    lat = latency(args.seconds, args.rounds)
    print(f"   noise: {part.since_last()}")
    best = max_rate(3.0)
    print(f"   noise: {part.since_last()}")
    summary(cpu, lat, best, alone)
    print(f"noise over the whole run: {whole.since_last()}; load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
