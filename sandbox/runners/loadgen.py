"""Open-loop HTTP load generator: the instrument behind the endpoint assignment's latency criterion.

Request i is scheduled at t0 + i/rate whatever the server does, and its latency runs from that
scheduled time to the end of the response. A server that stalls therefore cannot hide the stall by
slowing the client down (coordinated omission, which closed-loop tools such as wrk suffer from).
Latencies go into an HdrHistogram in microseconds (1 us .. 60 s, 3 significant digits).

The client is http11's bounded HTTP/1.1 keep-alive connection, in a pool: a due request waits for a
free connection and its latency keeps counting meanwhile. Each run also reports a 95% interval for
its p99 (a block bootstrap over its measured window: loadstats.py) and the window itself on the
monotonic clock, and may end early when that interval excludes an objective (`StopRule`: a
capacity step need not run its full duration to show that a server is far from the objective).
Only loopback addresses are accepted: the generator never sends traffic anywhere else. Runs inside
the sandbox (standard library and hdrhistogram only) and on the host; sibling modules are imported
as top-level modules.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram
from http11 import Connection, build_request, check_loopback
from loadstats import ANSWERED_ERROR, FAILED, OK, block_counts, p99_interval, verdict

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3
MAX_REQUESTS = 2_000_000  # a bound on one run, whatever the arguments
KEEP_MAX_BYTES = 64 << 10  # answers kept for checking (see run_open_loop's `keep`): at most this each
_SPIN_S = 0.001  # below this, the scheduler yields instead of sleeping: epoll timers round up to 1 ms
_IO_ERRORS = (OSError, EOFError, ValueError)  # http11's ClosedEarly and ProtocolError among them

__all__ = ["HIGHEST_US", "LOWEST_US", "LoadResult", "StopRule", "check_loopback", "finite", "meets_objective",
           "new_histogram", "percentiles_from", "record_seconds", "run_open_loop"]
_NAN = math.nan


@dataclass(frozen=True)
class LoadResult:
    """One open-loop run, measured window only (warm-up excluded). Latencies in milliseconds.

    `completed` counts full HTTP responses of any status; `errors` counts non-2xx responses plus
    connection and protocol failures; `timeouts` counts requests not answered within the timeout of
    their scheduled time. Percentiles are NaN when nothing completed. A run a StopRule ended early
    (`stopped`) reports the measured seconds it scheduled as duration_s.
    """

    rate: float  # target requests per second
    duration_s: float
    scheduled: int
    sent: int
    completed: int
    errors: int
    timeouts: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    achieved_rate: float  # responses per second over the measured window
    lag_p99_ms: float  # p99 of (actual send time - scheduled time): the generator's own delay
    uncorrected_p50_ms: float  # from the actual send time: what a closed-loop tool would report
    uncorrected_p99_ms: float
    histogram: str  # base64 HdrHistogram of the corrected latencies (us), for artifacts
    #: 95% block-bootstrap interval of p99 (loadstats.p99_interval); (NaN, NaN) when nothing completed
    p99_ci_ms: tuple[float, float] = (_NAN, _NAN)
    #: time.monotonic() of the first measured request's scheduled send and of the last measured
    #: request's answer or timeout: when the machine had to be quiet for these figures to hold
    window: tuple[float, float] = (_NAN, _NAN)
    stopped: str = ""  # "pass" / "fail": a StopRule ended the run before duration_s; "" ran it all
    #: (request index, status, body) of the answered requests whose index was in `keep`, for
    #: checking load-phase answers after the run (body None: over KEEP_MAX_BYTES); not a figure
    kept: tuple[tuple[int, int, bytes | None], ...] = field(default=(), repr=False, compare=False)

    @property
    def error_rate(self) -> float:
        """Failed (error or timeout) share of the scheduled requests; 1.0 when none was scheduled."""
        return (self.errors + self.timeouts) / self.scheduled if self.scheduled else 1.0


def finite(value):
    """`value` with NaN and infinities (nothing measured) as None, at any depth: for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_seconds(histogram: HdrHistogram, seconds: float) -> None:
    """Record a duration, clamped into the trackable range (0 -> 1 us, beyond 60 s -> 60 s)."""
    histogram.record_value(min(max(round(seconds * 1e6), LOWEST_US), HIGHEST_US))


def percentiles_from(histogram: HdrHistogram) -> dict[str, float]:
    """p50, p90, p99, p999, max and mean of a microsecond histogram, in milliseconds (NaN if empty)."""
    keys = ("p50", "p90", "p99", "p999", "max", "mean")
    if histogram.get_total_count() == 0:
        return dict.fromkeys(keys, math.nan)
    values = histogram.get_percentile_to_value_dict([50.0, 90.0, 99.0, 99.9])
    out = {key: values[pct] / 1000 for key, pct in zip(keys, (50.0, 90.0, 99.0, 99.9), strict=False)}
    out["max"] = histogram.get_max_value() / 1000
    out["mean"] = histogram.get_mean_value() / 1000
    return out


@dataclass(frozen=True)
class StopRule:
    """End a run early once its 95% interval excludes the objective (loadstats.verdict): p99 within
    `p99_ms` and at most `max_error_rate` failed, or clearly not. The first look comes after
    `min_s` measured seconds (plus the objective, so that every request counted is decided), then
    every `every_s`; the run's duration_s is the most it lasts."""

    p99_ms: float
    max_error_rate: float
    min_s: float = 1.0
    every_s: float = 0.5


@dataclass
class _Recorder:
    """Counters and histograms for the measured requests: index `first` (scheduled at
    `window_start`) and later, `size` of them at most; each one's latency and state, in order."""

    first: int
    window_start: float
    size: int
    latency: HdrHistogram = field(default_factory=new_histogram)
    lag: HdrHistogram = field(default_factory=new_histogram)
    uncorrected: HdrHistogram = field(default_factory=new_histogram)
    sent: int = 0
    completed: int = 0
    http_errors: int = 0
    io_errors: int = 0
    timeouts: int = 0
    last_done: float = 0.0
    last_resolved: float = 0.0  # the last answer or failure of a measured request
    keep: frozenset[int] = frozenset()
    kept: list[tuple[int, int, bytes | None]] = field(default_factory=list)
    seconds: list[float | None] = field(default_factory=list)  # latency of measured request j
    state: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self.seconds = [None] * self.size
        self.state = bytearray(self.size)

    def on_sent(self, index: int, scheduled: float, sent: float) -> None:
        if index >= self.first:
            self.sent += 1
            record_seconds(self.lag, sent - scheduled)

    def on_response(self, index: int, scheduled: float, sent: float, done: float, status: int) -> None:
        if index >= self.first:
            ok = 200 <= status < 300
            self.completed += 1
            self.http_errors += not ok
            self.last_done = done
            self.last_resolved = max(self.last_resolved, done)
            record_seconds(self.latency, done - scheduled)
            record_seconds(self.uncorrected, done - sent)
            self.seconds[index - self.first] = done - scheduled
            self.state[index - self.first] = OK if ok else ANSWERED_ERROR

    def on_failure(self, index: int, at: float, *, timeout: bool) -> None:
        if index >= self.first:
            self.timeouts += timeout
            self.io_errors += not timeout
            self.last_resolved = max(self.last_resolved, at)
            self.state[index - self.first] = FAILED

    def result(self, *, rate: float, duration_s: float, scheduled: int, end: float,
               stopped: str = "") -> LoadResult:
        # anything neither answered nor failed by the end (only if the run was cut short) timed out
        missing = scheduled - self.completed - self.io_errors - self.timeouts
        span = max(duration_s, self.last_done - self.window_start)
        pct, uncorrected = percentiles_from(self.latency), percentiles_from(self.uncorrected)
        low, high = p99_interval(self.seconds[:scheduled])
        return LoadResult(
            rate=rate, duration_s=duration_s, scheduled=scheduled, sent=self.sent,
            completed=self.completed, errors=self.http_errors + self.io_errors,
            timeouts=self.timeouts + max(missing, 0),
            p50_ms=pct["p50"], p90_ms=pct["p90"], p99_ms=pct["p99"], p999_ms=pct["p999"],
            max_ms=pct["max"], mean_ms=pct["mean"], achieved_rate=self.completed / span,
            lag_p99_ms=percentiles_from(self.lag)["p99"],
            uncorrected_p50_ms=uncorrected["p50"], uncorrected_p99_ms=uncorrected["p99"],
            histogram=self.latency.encode().decode("ascii"), p99_ci_ms=(low * 1000, high * 1000),
            window=(self.window_start, max(end if missing > 0 else self.last_resolved, self.window_start)),
            stopped=stopped, kept=tuple(sorted(self.kept)),
        )


class _Stopper:
    """A StopRule at work: asked by the scheduler before each request, True when the run may end."""

    def __init__(self, rule: StopRule, rec: _Recorder, t0: float, rate: float) -> None:
        self.rule, self.rec, self.t0, self.rate = rule, rec, t0, rate
        self.objective_s = rule.p99_ms / 1000
        self.next_at = rec.window_start + rule.min_s + self.objective_s
        self.verdict = ""
        self.at = 0  # the index of the first request not scheduled, once the verdict is in

    def __call__(self, due: float) -> bool:
        if due < self.next_at:
            return False
        self.next_at = due + self.rule.every_s
        # the measured requests scheduled at least the objective ago (from now: the scheduler asks
        # before it waits for `due`): each is answered, failed, or (still waiting) slower than it
        now = asyncio.get_running_loop().time()
        decided = math.floor((now - self.objective_s - self.t0) * self.rate) + 1 - self.rec.first
        decided = min(max(decided, 0), self.rec.size)
        counts = block_counts(self.rec.seconds[:decided], self.rec.state[:decided],
                              objective_s=self.objective_s)
        self.verdict = verdict(counts, max_error_rate=self.rule.max_error_rate) or ""
        self.at = round((due - self.t0) * self.rate)
        return bool(self.verdict)


async def _one_request(conn: Connection, payload: bytes, scheduled: float, timeout_s: float,
                       rec: _Recorder, index: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = scheduled + timeout_s
    if loop.time() >= deadline:  # expired while waiting for a free connection
        rec.on_failure(index, loop.time(), timeout=True)
        return
    try:
        async with asyncio.timeout_at(deadline):
            await conn.open()
            sent = loop.time()
            rec.on_sent(index, scheduled, sent)
            response = await conn.exchange(payload)
    except TimeoutError:
        conn.close()  # the answer may still arrive: the connection's state is unknown
        rec.on_failure(index, loop.time(), timeout=True)
    except _IO_ERRORS:
        conn.close()
        rec.on_failure(index, loop.time(), timeout=False)
    else:
        rec.on_response(index, scheduled, sent, loop.time(), response.status)
        if index in rec.keep:  # a body over the bound is kept as None: too big to be an answer
            body = response.body if len(response.body) <= KEEP_MAX_BYTES else None
            rec.kept.append((index, response.status, body))


async def _worker(conn: Connection, queue: asyncio.Queue[tuple[float, int]], payloads: list[bytes],
                  timeout_s: float, rec: _Recorder) -> None:
    while True:
        scheduled, index = await queue.get()
        try:
            await _one_request(conn, payloads[index % len(payloads)], scheduled, timeout_s, rec, index)
        finally:
            queue.task_done()


async def _schedule(queue: asyncio.Queue[tuple[float, int]], t0: float, rate: float, total: int,
                    stop: Callable[[float], bool] | None = None) -> int:
    """Put request i (its scheduled time and index) on the queue at t0 + i/rate (never earlier).
    The number of requests scheduled: `total`, or fewer when `stop(due)` said so first."""
    loop = asyncio.get_running_loop()
    for i in range(total):
        due = t0 + i / rate
        if stop is not None and stop(due):
            return i
        wait = due - loop.time()
        if wait > _SPIN_S:
            await asyncio.sleep(wait - _SPIN_S)
        while loop.time() < due:
            await asyncio.sleep(0)  # yield to the workers until due: finer than the loop's 1 ms timers
        queue.put_nowait((due, i))
    return total


def _validate(rate: float, duration_s: float, warmup_s: float, timeout_s: float, connections: int) -> int:
    """The number of requests to schedule. Raises ValueError on unusable arguments."""
    if not (rate > 0 and duration_s > 0 and warmup_s >= 0 and timeout_s > 0 and connections >= 1):
        raise ValueError("need rate > 0, duration_s > 0, warmup_s >= 0, timeout_s > 0, connections >= 1")
    total = math.ceil((warmup_s + duration_s) * rate)
    if total > MAX_REQUESTS:
        raise ValueError(f"{total} requests in one run is over the bound of {MAX_REQUESTS}")
    return total


async def run_open_loop(*, host: str = "127.0.0.1", port: int, path: str, body: bytes = b"",
                        bodies: Sequence[bytes] = (), rate: float, duration_s: float, warmup_s: float,
                        timeout_s: float, connections: int, method: str | None = None,
                        keep: frozenset[int] = frozenset(), stop_rule: StopRule | None = None) -> LoadResult:
    """Send `rate` requests per second for warmup_s + duration_s and measure the last duration_s.

    Request i carries bodies[i % len(bodies)] when `bodies` is given (so a server cannot answer
    from a one-entry cache), else `body`. `method` defaults to POST with a body and GET without.
    The answers to the requests whose index i is in `keep` are returned in `LoadResult.kept`.
    With `stop_rule`, the run ends as soon as its interval excludes the rule's objective (then
    `stopped` says which way, and duration_s is the measured time scheduled).
    Raises ValueError for a non-loopback host or unusable arguments; server failures are counted
    in the result, never raised.
    """
    check_loopback(host)
    total = _validate(rate, duration_s, warmup_s, timeout_s, connections)
    verb = method or ("POST" if body or bodies else "GET")
    payloads = [build_request(host, port, verb, path, b) for b in (bodies or [body])]
    loop = asyncio.get_running_loop()
    conns = [Connection(host, port) for _ in range(connections)]
    try:  # open the pool before t0 so connection set-up does not show as schedule lag
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(c.open() for c in conns), return_exceptions=True)
    except TimeoutError:
        pass  # the workers retry
    t0 = loop.time() + 0.01  # loop.time() is time.monotonic(): the window is on the host's clock too
    first = math.ceil(warmup_s * rate)
    rec = _Recorder(first=first, window_start=t0 + first / rate, size=total - first, keep=keep)
    stopper = _Stopper(stop_rule, rec, t0, rate) if stop_rule else None
    queue: asyncio.Queue[tuple[float, int]] = asyncio.Queue()
    workers = [asyncio.create_task(_worker(c, queue, payloads, timeout_s, rec)) for c in conns]
    try:
        await _schedule(queue, t0, rate, total, stopper)
        sent = stopper.at if stopper and stopper.verdict else total
        try:  # every request ends by its own deadline; this bound is a backstop
            async with asyncio.timeout_at(t0 + sent / rate + timeout_s + 1.0):
                await queue.join()
        except TimeoutError:
            pass
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for conn in conns:
            conn.close()
    scheduled = max(sent - first, 0)
    stopped = stopper.verdict if stopper else ""
    return rec.result(rate=rate, duration_s=scheduled / rate if stopped else duration_s, scheduled=scheduled,
                      end=loop.time(), stopped=stopped)


def meets_objective(result: LoadResult, *, p99_ms: float, max_error_rate: float) -> bool:
    """True when p99 is within the objective and the error rate at most the limit (NaN p99 fails)."""
    return result.scheduled > 0 and result.error_rate <= max_error_rate and result.p99_ms <= p99_ms
