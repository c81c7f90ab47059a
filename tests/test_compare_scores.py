"""bench/compare_scores.py, the before/after check of a refactor, on cases written out by hand:
it must report every changed grade, and leave out only the endpoint's timed criteria."""

from __future__ import annotations

from bench.compare_scores import differences


def _scores(**criteria: float | None) -> dict:
    return {"status": "ok", "total": 50.0, "criteria": criteria}


def test_no_change_is_no_difference():
    before = {"ranker": {"good": _scores(ndcg=0.8, own_tests=1.0)}}
    assert differences(before, before, timed=False) == ([], set())


def test_a_changed_criterion_status_total_or_candidate_is_each_a_line():
    before = {"ranker": {"good": _scores(ndcg=0.8), "bad": _scores(ndcg=0.1), "gone": _scores(ndcg=0.5)}}
    after = {"ranker": {"good": _scores(ndcg=0.8000001), "bad": {**_scores(ndcg=0.1), "status": "error",
                                                                 "total": 10.0}, "new": _scores(ndcg=0.5)}}
    lines, _ = differences(before, after, timed=False)
    assert lines == ["ranker/bad: status ok -> error", "ranker/bad: total 50.0 -> 10.0",
                     "ranker/gone: only in before", "ranker/good: ndcg 0.8 -> 0.8000001",
                     "ranker/new: only in after"]


def test_the_endpoint_timed_criteria_and_totals_are_left_out_unless_asked():
    before = {"endpoint": {"fast": _scores(latency=1.0, capacity=0.9, correctness=1.0)}}
    after = {"endpoint": {"fast": {**_scores(latency=0.7, capacity=0.9, correctness=0.5), "total": 40.0}}}
    lines, left_out = differences(before, after, timed=False)
    assert lines == ["endpoint/fast: correctness 1.0 -> 0.5"]  # the machine cannot change correctness
    assert left_out == {"endpoint.latency", "endpoint.capacity"}
    lines, left_out = differences(before, after, timed=True)
    assert lines == ["endpoint/fast: correctness 1.0 -> 0.5", "endpoint/fast: latency 1.0 -> 0.7",
                     "endpoint/fast: total 50.0 -> 40.0"] and left_out == set()


def test_saves_graded_from_different_install_secrets_are_not_compared():
    # found the first time it was used: a fresh checkout draws its own secret, and every hidden
    # score then differed (ranker NDCG, A/B re-runs) for a reason that was not the code's
    from bench.compare_scores import secret_mismatch

    assert secret_mismatch({"ranker": "aa", "abtest": "bb"}, {"ranker": "aa", "abtest": "cc"}) == ["abtest"]
    assert secret_mismatch({"ranker": "aa"}, {"ranker": "aa"}) == []
    assert secret_mismatch(None, {"ranker": "aa"}) == []  # an older save: said as a note, not refused
