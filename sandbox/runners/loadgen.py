"""Open-loop HTTP load generator: the instrument behind the endpoint assignment's latency criterion.

Request i is scheduled at t0 + i/rate whatever the server does, and its latency runs from that
scheduled time to the end of the response. A server that stalls therefore cannot hide the stall by
slowing the client down (coordinated omission, which closed-loop tools such as wrk suffer from).
Latencies go into an HdrHistogram in microseconds (1 us .. 60 s, 3 significant digits).

The client is http11's bounded HTTP/1.1 keep-alive connection, in a pool: a due request waits for a
free connection and its latency keeps counting meanwhile. Only loopback addresses are accepted:
the generator never sends traffic anywhere else. Runs inside the sandbox (standard library and
hdrhistogram only) and on the host; sibling modules are imported as top-level modules.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram
from http11 import Connection, build_request, check_loopback

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3
MAX_REQUESTS = 2_000_000  # a bound on one run, whatever the arguments
KEEP_MAX_BYTES = 64 << 10  # answers kept for checking (see run_open_loop's `keep`): at most this each
_SPIN_S = 0.001  # below this, the scheduler yields instead of sleeping: epoll timers round up to 1 ms
_IO_ERRORS = (OSError, EOFError, ValueError)  # http11's ClosedEarly and ProtocolError among them

__all__ = ["HIGHEST_US", "LOWEST_US", "CapacitySearch", "LoadResult", "capacity_search", "check_loopback",
           "meets_objective", "new_histogram", "percentiles_from", "rate_grid", "record_seconds",
           "run_open_loop"]


@dataclass(frozen=True)
class LoadResult:
    """One open-loop run, measured window only (warm-up excluded). Latencies in milliseconds.

    `completed` counts full HTTP responses of any status; `errors` counts non-2xx responses plus
    connection and protocol failures; `timeouts` counts requests not answered within the timeout of
    their scheduled time. Percentiles are NaN when nothing completed.
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
    #: (request index, status, body) of the answered requests whose index was in `keep`, for
    #: checking load-phase answers after the run (body None: over KEEP_MAX_BYTES); not a figure
    kept: tuple[tuple[int, int, bytes | None], ...] = field(default=(), repr=False, compare=False)

    @property
    def error_rate(self) -> float:
        """Failed (error or timeout) share of the scheduled requests; 1.0 when none was scheduled."""
        return (self.errors + self.timeouts) / self.scheduled if self.scheduled else 1.0


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


@dataclass
class _Recorder:
    """Counters and histograms for the requests scheduled at or after `window_start`."""

    window_start: float
    latency: HdrHistogram = field(default_factory=new_histogram)
    lag: HdrHistogram = field(default_factory=new_histogram)
    uncorrected: HdrHistogram = field(default_factory=new_histogram)
    sent: int = 0
    completed: int = 0
    http_errors: int = 0
    io_errors: int = 0
    timeouts: int = 0
    last_done: float = 0.0
    keep: frozenset[int] = frozenset()
    kept: list[tuple[int, int, bytes | None]] = field(default_factory=list)

    def on_sent(self, scheduled: float, sent: float) -> None:
        if scheduled >= self.window_start:
            self.sent += 1
            record_seconds(self.lag, sent - scheduled)

    def on_response(self, scheduled: float, sent: float, done: float, status: int) -> None:
        if scheduled >= self.window_start:
            self.completed += 1
            self.http_errors += not 200 <= status < 300
            self.last_done = done
            record_seconds(self.latency, done - scheduled)
            record_seconds(self.uncorrected, done - sent)

    def on_failure(self, scheduled: float, *, timeout: bool) -> None:
        if scheduled >= self.window_start:
            if timeout:
                self.timeouts += 1
            else:
                self.io_errors += 1

    def result(self, *, rate: float, duration_s: float, scheduled: int) -> LoadResult:
        # anything neither answered nor failed by the end (only if the run was cut short) timed out
        missing = scheduled - self.completed - self.io_errors - self.timeouts
        span = max(duration_s, self.last_done - self.window_start)
        pct, uncorrected = percentiles_from(self.latency), percentiles_from(self.uncorrected)
        return LoadResult(
            rate=rate, duration_s=duration_s, scheduled=scheduled, sent=self.sent,
            completed=self.completed, errors=self.http_errors + self.io_errors,
            timeouts=self.timeouts + max(missing, 0),
            p50_ms=pct["p50"], p90_ms=pct["p90"], p99_ms=pct["p99"], p999_ms=pct["p999"],
            max_ms=pct["max"], mean_ms=pct["mean"], achieved_rate=self.completed / span,
            lag_p99_ms=percentiles_from(self.lag)["p99"],
            uncorrected_p50_ms=uncorrected["p50"], uncorrected_p99_ms=uncorrected["p99"],
            histogram=self.latency.encode().decode("ascii"), kept=tuple(sorted(self.kept)),
        )


async def _one_request(conn: Connection, payload: bytes, scheduled: float, timeout_s: float,
                       rec: _Recorder, index: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = scheduled + timeout_s
    if loop.time() >= deadline:  # expired while waiting for a free connection
        rec.on_failure(scheduled, timeout=True)
        return
    try:
        async with asyncio.timeout_at(deadline):
            await conn.open()
            sent = loop.time()
            rec.on_sent(scheduled, sent)
            response = await conn.exchange(payload)
    except TimeoutError:
        conn.close()  # the answer may still arrive: the connection's state is unknown
        rec.on_failure(scheduled, timeout=True)
    except _IO_ERRORS:
        conn.close()
        rec.on_failure(scheduled, timeout=False)
    else:
        rec.on_response(scheduled, sent, loop.time(), response.status)
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


async def _schedule(queue: asyncio.Queue[tuple[float, int]], t0: float, rate: float, total: int) -> None:
    """Put request i (its scheduled time and index) on the queue at t0 + i/rate (never earlier)."""
    loop = asyncio.get_running_loop()
    for i in range(total):
        due = t0 + i / rate
        wait = due - loop.time()
        if wait > _SPIN_S:
            await asyncio.sleep(wait - _SPIN_S)
        while loop.time() < due:
            await asyncio.sleep(0)  # yield to the workers until due: finer than the loop's 1 ms timers
        queue.put_nowait((due, i))


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
                        keep: frozenset[int] = frozenset()) -> LoadResult:
    """Send `rate` requests per second for warmup_s + duration_s and measure the last duration_s.

    Request i carries bodies[i % len(bodies)] when `bodies` is given (so a server cannot answer
    from a one-entry cache), else `body`. `method` defaults to POST with a body and GET without.
    The answers to the requests whose index i is in `keep` are returned in `LoadResult.kept`.
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
    t0 = loop.time() + 0.01
    rec = _Recorder(window_start=t0 + warmup_s, keep=keep)
    queue: asyncio.Queue[tuple[float, int]] = asyncio.Queue()
    workers = [asyncio.create_task(_worker(c, queue, payloads, timeout_s, rec)) for c in conns]
    try:
        await _schedule(queue, t0, rate, total)
        try:  # every request ends by its own deadline; this bound is a backstop
            async with asyncio.timeout_at(t0 + warmup_s + duration_s + timeout_s + 1.0):
                await queue.join()
        except TimeoutError:
            pass
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for conn in conns:
            conn.close()
    scheduled = total - math.ceil(warmup_s * rate)
    return rec.result(rate=rate, duration_s=duration_s, scheduled=scheduled)


def meets_objective(result: LoadResult, *, p99_ms: float, max_error_rate: float) -> bool:
    """True when p99 is within the objective and the error rate at most the limit (NaN p99 fails)."""
    return result.scheduled > 0 and result.error_rate <= max_error_rate and result.p99_ms <= p99_ms


@dataclass(frozen=True)
class CapacitySearch:
    """The outcome of `capacity_search`: the capacity and every measured step, sorted by rate."""

    capacity: float  # 0.0 when even the lowest rate failed
    curve: list[tuple[float, LoadResult]]
    capped: bool  # every rate up to `high` passed: the true capacity may be higher
    cut_short: bool = False  # `stop` said so before the search was over: capacity is a lower bound


def rate_grid(low: float, high: float, factor: float) -> list[float]:
    """Geometric rates from `low` to `high` inclusive, consecutive ones at most `factor` apart."""
    if not (0 < low < high and factor > 1):
        raise ValueError("need 0 < low < high and factor > 1")
    n = max(1, math.ceil(math.log(high / low) / math.log(factor) - 1e-9))
    return [low * (high / low) ** (k / n) for k in range(n + 1)]


async def capacity_search(measure: Callable[[float], Awaitable[LoadResult]], *, low: float, high: float,
                          p99_ms: float, max_error_rate: float = 0.01, factor: float = math.sqrt(2),
                          refine: int = 2, settle_s: float = 0.0, retry: int = 0,
                          stop: Callable[[], bool] | None = None) -> CapacitySearch:
    """The highest measured rate at which p99 <= p99_ms and the error rate <= max_error_rate.

    Rates of `rate_grid(low, high, factor)` are measured upwards and the sweep stops at the first
    failing one. That assumes a monotone server (one that fails at a rate fails at every higher
    rate), and it keeps the server out of deep overload, whose backlog would spill into later
    steps. A failing rate of the sweep is measured again up to `retry` times, and fails only if
    every measurement does: one stall (a busy machine, a garbage collection) is not a capacity.
    Then `refine` geometric bisections between the last passing and the first failing rate
    narrow the answer to within factor ** (1 / 2 ** refine) of the boundary. Capacity is 0.0 when
    `low` fails. `settle_s` passes before every step but the first, so a backlog can drain.
    `stop`, asked before every step, ends the search early (a time budget): the result says so.
    Raises ValueError on unusable arguments.
    """
    if refine < 0 or settle_s < 0 or retry < 0:
        raise ValueError("need refine >= 0, settle_s >= 0 and retry >= 0")
    grid = rate_grid(low, high, factor)
    curve: list[tuple[float, LoadResult]] = []

    async def passes(rate: float) -> bool:
        if curve and settle_s:
            await asyncio.sleep(settle_s)
        result = await measure(rate)
        curve.append((rate, result))
        return meets_objective(result, p99_ms=p99_ms, max_error_rate=max_error_rate)

    def stopped() -> bool:
        return stop is not None and stop()

    best, failed, cut = 0.0, None, False
    for rate in grid:
        if cut := stopped():
            break
        ok = await passes(rate)
        for _ in range(retry):
            if ok or (cut := stopped()):
                break
            ok = await passes(rate)
        if cut:
            break
        if not ok:
            failed = rate
            break
        best = rate
    if best and failed:
        for _ in range(refine):
            if cut := stopped():
                break
            mid = math.sqrt(best * failed)
            if await passes(mid):
                best = mid
            else:
                failed = mid
    return CapacitySearch(capacity=best, curve=sorted(curve, key=lambda point: point[0]),
                          capped=failed is None and not cut, cut_short=cut)
