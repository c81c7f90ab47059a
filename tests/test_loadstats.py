"""The load run's statistics (sandbox/runners/loadstats.py): the p99's block-bootstrap interval and
the stopping verdict, against hand-computed bootstrap distributions and scipy's bootstrap.

The hand-computed cases use blocks that are all alike but one, so that a resample of ten blocks is
described by K, the number of times the odd block was drawn: K ~ Binomial(10, 1/10), with
P(K = 0) = 0.9**10 = 0.3487, P(K <= 1) = 0.7361, P(K <= 2) = 0.9298, P(K <= 3) = 0.9872.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tests.runner_stubs import RUNNERS_DIR  # noqa: F401 - imported first: puts the runners on sys.path

# isort: split
from loadstats import (
    ANSWERED_ERROR,
    FAILED,
    OK,
    WAITING,
    BlockCounts,
    block_counts,
    p99_interval,
    rank_at,
    verdict,
)


def _blocks(*blocks: list[float | None]) -> list[float | None]:
    return [value for block in blocks for value in block]


def test_rank_is_hdrhistograms():
    # HdrHistogram: count_at_percentile = int(p / 100 * n + 0.5), at least 1
    assert [rank_at(n) for n in (1, 50, 100, 149, 150, 1000, 6400)] == [1, 50, 99, 148, 149, 990, 6336]


def test_one_stalled_block_spans_the_interval():
    # 9 blocks of 100 requests at 1 ms, 1 block of 100 at 500 ms. A resample with K >= 1 copies of
    # the stalled block has at least 100 of its 1,000 values at 500 ms, so its p99 (rank 990) is
    # 500 ms; with K = 0 it is 1 ms. P(K = 0) = 0.3487 lies between 2.5% and 97.5%: [1, 500].
    fast, stalled = [0.001] * 100, [0.5] * 100
    low, high = p99_interval(_blocks(*[fast] * 9, stalled))
    assert (low, high) == (0.001, 0.5)


@pytest.mark.parametrize(("slow_in_block", "high"), [(3, 0.001), (5, 0.5)])
def test_a_short_stall_counts_only_when_drawn_often_enough(slow_in_block, high):
    # One block has `slow_in_block` of its 100 requests at 500 ms. A resample's p99 (rank 990 of
    # 1,000) is 500 ms when more than 10 values are slow: 3K > 10 needs K >= 4 (P = 1 - 0.9872 =
    # 1.3% < 2.5%: the upper end stays 1 ms); 5K > 10 needs K >= 3 (P = 1 - 0.9298 = 7.0%: 500 ms).
    odd = [0.5] * slow_in_block + [0.001] * (100 - slow_in_block)
    assert p99_interval(_blocks(*[[0.001] * 100] * 9, odd)) == (0.001, high)


def test_failed_requests_are_left_out_as_the_histogram_leaves_them_out():
    # 5% of the requests failed (None): they have no latency, as in the HdrHistogram, so the p99
    # interval is that of the answered ones; the error rate is the verdict's business
    block = [None] * 5 + [0.002] * 95
    assert p99_interval(block * 10) == (0.002, 0.002)
    assert p99_interval([None] * 50) == (pytest.approx(float("nan"), nan_ok=True),) * 2


def _union_p99(indices, blocks):
    """The reference statistic, in numpy: nearest-rank p99 (HdrHistogram's rank) of the union of
    the blocks `indices` names (scipy passes a resample of block indices)."""
    values = np.sort(np.concatenate([blocks[int(i)] for i in indices]))
    return values[max(1, int(0.99 * len(values) + 0.5)) - 1]


def test_interval_agrees_with_scipys_percentile_bootstrap_over_blocks():
    # 6,400 requests (1,600/s for 4 s) in 10 blocks whose tails differ (a busy moment in three of
    # them). scipy.stats.bootstrap resamples the block indices with replacement and takes the
    # percentile interval of the statistic: the same method, independently implemented. Two Monte
    # Carlo estimates (1,000 vs 5,000 resamples) of the same quantiles agree within a few percent.
    rng = np.random.default_rng(7)
    scales = [1, 1, 1, 3, 1, 1, 6, 1, 2, 1]
    blocks = [rng.lognormal(np.log(0.002 * s), 0.6, 640) for s in scales]
    ours = p99_interval([float(v) for block in blocks for v in block])
    ref = stats.bootstrap((np.arange(10),), lambda idx: _union_p99(idx, blocks), vectorized=False,
                          n_resamples=5000, method="percentile", confidence_level=0.95,
                          random_state=np.random.default_rng(1)).confidence_interval
    assert ours[0] == pytest.approx(ref.low, rel=0.05) and ours[1] == pytest.approx(ref.high, rel=0.05)
    assert ours[0] < _union_p99(range(10), blocks) < ours[1]


def test_interval_is_reproducible():
    # a re-grade of the same histogram reports the same interval because the bootstrap is seeded,
    # and the seed is what governs it (another seed resamples otherwise)
    values = [0.001 * (i % 97) for i in range(3000)]
    assert p99_interval(values) == p99_interval(values)
    rng = np.random.default_rng(3)
    scales = (1, 4, 1, 2, 1, 8, 1, 1, 3, 1)
    varied = [float(v) for s in scales for v in rng.lognormal(np.log(0.002 * s), 0.6, 300)]
    assert p99_interval(varied, seed=1) != p99_interval(varied, seed=2)


# --- the stopping verdict ------------------------------------------------------------------------

def _counts(*blocks: tuple[int, int, int, int]) -> list[BlockCounts]:
    return [BlockCounts(*block) for block in blocks]


def test_verdict_passes_fails_or_waits_as_the_resamples_say():
    fast = (100, 100, 0, 0)
    assert verdict(_counts(*[fast] * 10), max_error_rate=0.01) == "pass"
    assert verdict(_counts(*[(100, 100, 100, 0)] * 10), max_error_rate=0.01) == "fail"
    # one block all slow: a resample meets the objective only without it (K = 0): P = 0.3487
    assert verdict(_counts(*[fast] * 9, (100, 100, 100, 0)), max_error_rate=0.01) is None
    # 2 slow of 100 in one block: a resample has 2K slow of 1,000, allowed 10, so it meets the
    # objective unless K >= 6 (P = 0.00015): pass
    assert verdict(_counts(*[fast] * 9, (100, 100, 2, 0)), max_error_rate=0.01) == "pass"


@pytest.mark.parametrize(("failed", "expected"), [(0, "pass"), (1, "pass"), (2, "fail")])
def test_verdict_counts_failures_against_the_error_allowance(failed, expected):
    # `failed` of every block's 100 requests failed, evenly: every resample has that error rate
    # (0%, 1% <= 1% allowed, 2% > 1%), and the answered ones are all fast
    block = (100, 100 - failed, 0, failed)
    assert verdict(_counts(*[block] * 10), max_error_rate=0.01) == expected


def test_block_counts_classify_each_request():
    objective = 0.05
    seconds = [0.01, 0.2, None, None, 0.01, 0.01]
    state = [OK, OK, WAITING, FAILED, ANSWERED_ERROR, OK]
    # a waiting request (older than the objective) is slow; a non-2xx answer is answered and failed
    assert block_counts(seconds, state, objective_s=objective, blocks=2) == [
        BlockCounts(scheduled=3, answered=3, slow=2, failed=0),
        BlockCounts(scheduled=3, answered=2, slow=0, failed=2)]
