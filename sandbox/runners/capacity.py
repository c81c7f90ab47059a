"""The capacity search: the highest offered rate at which a server meets a latency objective.

The search only decides which rates to measure; `measure(rate)` runs one step (the probe's runs
end early once their interval excludes the objective: loadgen.StopRule), and a step meets the
objective by loadgen.meets_objective on what it measured. Runs inside the sandbox; standard
library only besides its siblings.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from loadgen import LoadResult, meets_objective

__all__ = ["CapacitySearch", "capacity_search", "rate_grid"]


@dataclass(frozen=True)
class CapacitySearch:
    """The outcome of `capacity_search`: the capacity, every measured step sorted by rate, and the
    bracket [capacity, above] that holds the boundary of a monotone server."""

    capacity: float  # 0.0 when even the lowest rate failed
    curve: list[tuple[float, LoadResult]]
    capped: bool  # every rate up to `high` passed: the true capacity may be higher
    cut_short: bool = False  # `stop` said so before the search was over: capacity is a lower bound
    above: float = math.inf  # the lowest failing rate above `capacity` (inf when none failed)

    @property
    def bracket(self) -> tuple[float, float]:
        return self.capacity, self.above


def rate_grid(low: float, high: float, factor: float) -> list[float]:
    """Geometric rates from `low` to `high` inclusive, consecutive ones at most `factor` apart."""
    if not (0 < low < high and factor > 1):
        raise ValueError("need 0 < low < high and factor > 1")
    n = max(1, math.ceil(math.log(high / low) / math.log(factor) - 1e-9))
    return [low * (high / low) ** (k / n) for k in range(n + 1)]


async def capacity_search(measure: Callable[[float], Awaitable[LoadResult]], *, low: float, high: float,
                          p99_ms: float, max_error_rate: float = 0.01, factor: float = 2.0,
                          refine: int = 3, settle_s: float = 0.0, retry: int = 0,
                          stop: Callable[[], bool] | None = None,
                          known_pass: float | None = None) -> CapacitySearch:
    """The highest measured rate at which p99 <= p99_ms and the error rate <= max_error_rate.

    Rates of `rate_grid(low, high, factor)` are measured upwards and the sweep stops at the first
    failing one. That assumes a monotone server (one that fails at a rate fails at every higher
    rate), and it keeps the server out of deep overload, whose backlog would spill into later
    steps. `known_pass`, a rate in [low, high] already shown to meet the objective (the latency
    run), starts the sweep above it: the grid rates up to it need no step. A failing rate of the
    sweep is measured again up to `retry` times, and fails only if every measurement does: one
    stall (a busy machine, a garbage collection) is not a capacity. Then `refine` geometric
    bisections between the last passing and the first failing rate narrow the answer to within
    (failing / passing) ** (1 / 2 ** refine) of the boundary: with the grid's factor 2 and three
    bisections, 2 ** (1 / 8), 9%, as a factor of sqrt(2) with two. Capacity is 0.0 when `low`
    fails. `settle_s` passes before every step but the probe's first load run, so a backlog can
    drain. `stop`, asked before every step, ends the search early (a time budget): the result says
    so. Raises ValueError on unusable arguments.
    """
    if refine < 0 or settle_s < 0 or retry < 0:
        raise ValueError("need refine >= 0, settle_s >= 0 and retry >= 0")
    grid = rate_grid(low, high, factor)
    best = 0.0
    if known_pass is not None and low <= known_pass <= high:
        best = known_pass
        grid = [rate for rate in grid if rate > known_pass * (1 + 1e-9)]
    curve: list[tuple[float, LoadResult]] = []

    async def passes(rate: float) -> bool:
        if (curve or best) and settle_s:
            await asyncio.sleep(settle_s)
        result = await measure(rate)
        curve.append((rate, result))
        return meets_objective(result, p99_ms=p99_ms, max_error_rate=max_error_rate)

    def stopped() -> bool:
        return stop is not None and stop()

    failed, cut = None, False
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
                          capped=failed is None and not cut, cut_short=cut,
                          above=failed if failed is not None else math.inf)
