"""Block-bootstrap intervals for a load run: the p99's 95% interval, and the capacity step's verdict.

A load run's requests are scheduled at a constant rate, so splitting them in scheduled order into
`BLOCKS` equal runs of consecutive requests splits the measured window into equal blocks of
scheduled time. Latencies within a block are correlated (a stall delays every request behind it),
so the bootstrap resamples whole blocks with replacement, never single requests: a 100 ms stall
that slowed 20 consecutive requests comes back in a resample as one unit, or not at all.

The p99 is the nearest-rank percentile HdrHistogram uses (the value at rank max(1, int(0.99 n +
0.5)) of the n answered requests). Requests that failed or timed out have no latency: they are left
out of the p99 and its interval exactly as the histogram leaves them out, and they count in the
error rate instead (`verdict` resamples both together). Standard library only: the probe runs with
`python -s -E`. The resampling is seeded, so the same measurement always gives the same interval.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

BLOCKS = 10
RESAMPLES = 1000  # for the reported interval: about 40 ms for 6,400 requests, after the run
VERDICT_RESAMPLES = 400  # for a stop decision during a run (about 1 ms), whose time is the generator's lag
CONFIDENCE = 0.95
SEED = 20261201  # fixed: the interval is a function of the measurement, not of the run
PCT = 99.0
WAITING, OK, ANSWERED_ERROR, FAILED = range(4)  # a request's state, as the load generator records it
_BITS = 26
_MASK = (1 << _BITS) - 1

__all__ = ["ANSWERED_ERROR", "BLOCKS", "CONFIDENCE", "FAILED", "OK", "RESAMPLES", "WAITING", "BlockCounts",
           "block_counts", "blocks_of", "p99_interval", "rank_at", "verdict"]


def rank_at(n: int, pct: float = PCT) -> int:
    """HdrHistogram's rank (1-based, ascending) of the `pct` percentile of n values."""
    return max(1, int(pct / 100 * n + 0.5))


def blocks_of(n: int, blocks: int = BLOCKS) -> list[range]:
    """Index ranges of `blocks` consecutive, nearly equal parts of n requests (fewer if n < blocks)."""
    parts = max(1, min(blocks, n))
    return [range(k * n // parts, (k + 1) * n // parts) for k in range(parts)]


def _quantile_pair(stats: list[float], confidence: float) -> tuple[float, float]:
    """The percentile interval of sorted bootstrap statistics (nearest rank at each tail)."""
    tail = (1 - confidence) / 2
    low = stats[max(0, math.ceil(tail * len(stats)) - 1)]
    high = stats[min(len(stats) - 1, math.ceil((1 - tail) * len(stats)) - 1)]
    return low, high


def p99_interval(latencies: Sequence[float | None], *, blocks: int = BLOCKS, resamples: int = RESAMPLES,
                 confidence: float = CONFIDENCE, seed: int = SEED) -> tuple[float, float]:
    """The `confidence` percentile-bootstrap interval of the p99 of the answered requests' latencies.

    `latencies` are in scheduled order, None for a request with no latency (failed or timed out).
    A resample with no answered request has p99 +inf. (NaN, NaN) when nothing was answered.
    """
    parts = blocks_of(len(latencies), blocks)
    answered = [[v for v in (latencies[i] for i in part) if v is not None] for part in parts]
    total = sum(len(values) for values in answered)
    if total == 0:
        return math.nan, math.nan
    # a resample holds at most len(parts) * the largest block; its p99 is among its top `keep` values
    most = len(parts) * max(len(values) for values in answered)
    keep = min(most, int((100 - PCT) / 100 * most) + 2)  # n - rank_at(n) + 1 <= 0.01 n + 1.5
    tops = [sorted(values, reverse=True)[:keep] for values in answered]
    counts = [len(values) for values in answered]
    rng = random.Random(seed)  # noqa: S311 - a seeded resampling, not a secret
    stats = []
    for _ in range(resamples):
        picks = rng.choices(range(len(parts)), k=len(parts))
        n = sum(counts[k] for k in picks)
        if n == 0:
            stats.append(math.inf)
            continue
        top = sorted(chain.from_iterable(tops[k] for k in picks), reverse=True)
        stats.append(top[n - rank_at(n)])  # the rank-th smallest is the (n - rank + 1)-th largest
    stats.sort()
    return _quantile_pair(stats, confidence)


@dataclass(frozen=True)
class BlockCounts:
    """One block of requests against an objective: how many were scheduled, answered, answered
    slower than the objective (or still unanswered past it), and failed."""

    scheduled: int
    answered: int
    slow: int
    failed: int


def block_counts(seconds: Sequence[float | None], state: Sequence[int], *, objective_s: float,
                 blocks: int = BLOCKS) -> list[BlockCounts]:
    """Per-block counts of requests in scheduled order: their latency in seconds (None without one)
    and their state (WAITING, OK, ANSWERED_ERROR: a non-2xx answer, which has a latency and is an
    error, FAILED: a timeout or a connection failure). A waiting request must already be older than
    the objective (the caller passes only those): it is slow whatever becomes of it, and it is
    counted as answered, slowly, which is what it will be unless it times out."""
    out = []
    for part in blocks_of(len(state), blocks):
        answered = slow = fails = 0
        for i in part:
            st = state[i]
            if st == FAILED:
                fails += 1
                continue
            answered += 1
            if st == WAITING:
                slow += 1
            else:
                latency = seconds[i]
                assert latency is not None  # an answered request has one
                slow += latency > objective_s
                fails += st == ANSWERED_ERROR
        out.append(BlockCounts(len(part), answered, slow, fails))
    return out


def _meets(scheduled: int, answered: int, slow: int, failed: int, max_error_rate: float) -> bool:
    # p99 <= objective <=> at least rank(answered) answered requests within it
    return (scheduled > 0 and answered > 0 and answered - slow >= rank_at(answered)
            and failed <= max_error_rate * scheduled)


def verdict(counts: Sequence[BlockCounts], *, max_error_rate: float, resamples: int = VERDICT_RESAMPLES,
            confidence: float = CONFIDENCE, seed: int = SEED) -> str | None:
    """"pass" when the objective (p99 within it, error rate at most `max_error_rate`) is met in at
    least (1 + confidence) / 2 of the block resamples: the upper end of the p99's interval, and of
    the error rate's, is within the objective. "fail" when it is missed in that share: the interval
    lies beyond it. None while the interval straddles the objective."""
    if not counts:
        return None
    one_sided = (1 + confidence) / 2
    totals = [sum(getattr(c, name) for c in counts) for name in ("scheduled", "answered", "slow", "failed")]
    if totals[2] == 0 and totals[3] == 0 and totals[1] > 0:
        return "pass"  # every resample is made of these blocks: none can miss
    # each block's four counts packed into one integer (26 bits apiece: a run has at most 2,000,000
    # requests, ten blocks' sums stay below 2**25), so a resample's totals are one sum()
    packed = [c.scheduled | c.answered << _BITS | c.slow << 2 * _BITS | c.failed << 3 * _BITS for c in counts]
    rng = random.Random(seed)  # noqa: S311 - a seeded resampling, not a secret
    met = 0
    k = len(packed)
    draws = rng.choices(packed, k=k * resamples)
    for start in range(0, k * resamples, k):
        total = sum(draws[start:start + k])
        met += _meets(total & _MASK, total >> _BITS & _MASK, total >> 2 * _BITS & _MASK, total >> 3 * _BITS,
                      max_error_rate)
    if met >= one_sided * resamples:
        return "pass"
    if resamples - met >= one_sided * resamples:
        return "fail"
    return None
