"""Per-query ranking measures against the reference: trec_eval via pytrec_eval (pytrec-eval-terrier).

Every case is evaluated twice: by graders.ranking._metrics (trec order, then ndcg/ap/rr) and by
pytrec_eval's RelevanceEvaluator with measures ndcg_cut.k, map and recip_rank.
"""

from __future__ import annotations

import math
import random

import pytest
import pytrec_eval

from graders.ranking._metrics import (
    average_precision,
    has_relevant,
    ndcg_at_k,
    query_metrics,
    reciprocal_rank,
    trec_order,
)

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]


def ours(qrels: Qrels, run: Run, k: int) -> dict[str, dict[str, float]]:
    """Our measures for every query of `run`, keyed like pytrec_eval's output."""
    result = {}
    for query, scored in run.items():
        docs = list(scored)
        order = trec_order(docs, [scored[d] for d in docs])
        judged = qrels.get(query, {})
        m = query_metrics([judged.get(docs[i], 0) for i in order], list(judged.values()), k)
        result[query] = {f"ndcg_cut_{k}": m.ndcg, "map": m.ap, "recip_rank": m.rr}
    return result


def reference(qrels: Qrels, run: Run, k: int) -> dict[str, dict[str, float]]:
    """trec_eval via pytrec_eval (pytrec-eval-terrier)."""
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{k}", "map", "recip_rank"})
    return evaluator.evaluate(run)


def assert_same(qrels: Qrels, run: Run, k: int) -> None:
    expected, actual = reference(qrels, run, k), ours(qrels, run, k)
    assert set(expected) == set(actual)
    for query, measures in expected.items():
        for name, value in measures.items():
            assert actual[query][name] == pytest.approx(value, rel=1e-9, abs=1e-12), (query, name)


GRADED = {"q": {"a": 3, "b": 0, "c": 2, "d": 1, "e": 0, "f": 4}}

CASES = {
    "distinct scores": (GRADED, {"q": {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6, "e": 0.5, "f": 0.1}}),
    "all scores tied": (GRADED, {"q": dict.fromkeys("abcdef", 1.0)}),
    "partial ties": (GRADED, {"q": {"a": 0.5, "b": 0.5, "c": 0.9, "d": 0.5, "e": 0.9, "f": 0.1}}),
    "ties across doc id lengths": ({"q": {"d9": 2, "d10": 0, "d100": 1, "D9": 3}},
                                   {"q": {"d9": 1.0, "d10": 1.0, "d100": 1.0, "D9": 1.0}}),
    "negative zero ties zero": ({"q": {"a": 1, "b": 0, "c": 2}}, {"q": {"a": -0.0, "b": 0.0, "c": -1.0}}),
    "no relevant document": ({"q": {"a": 0, "b": 0, "c": 0}}, {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}),
    "unjudged and unretrieved documents": (
        {"q": {"a": 2, "b": 1, "x": 4, "y": 0}},  # x is judged but never retrieved
        {"q": {"a": 0.3, "b": 0.9, "u1": 0.8, "u2": 0.95}}),  # u1, u2 are not judged
    "several queries": (
        {"q1": {"a": 1, "b": 0}, "q2": {"a": 0, "b": 4, "c": 2}, "q3": {"z": 1}},
        {"q1": {"a": 0.1, "b": 0.2}, "q2": {"a": 5.0, "b": 5.0, "c": 1.0}, "q3": {"z": 0.0}}),
}


@pytest.mark.parametrize("k", [1, 3, 5, 10, 100])  # 100 is longer than every list
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_trec_eval_on_hand_written_cases(case: str, k: int) -> None:
    qrels, run = CASES[case]
    assert_same(qrels, run, k)


def test_matches_trec_eval_on_random_rankings_with_many_ties() -> None:
    rng = random.Random(7)
    qrels: Qrels = {}
    run: Run = {}
    for qi in range(150):
        docs = [f"d{rng.randrange(10_000)}" for _ in range(rng.randint(1, 40))]
        qrels[f"q{qi}"] = {d: rng.choice([0, 0, 0, 1, 1, 2, 3, 4]) for d in docs}
        run[f"q{qi}"] = {d: round(rng.gauss(0, 1), 1) for d in docs}  # rounding makes ties common
    for k in (1, 3, 10, 20):
        assert_same(qrels, run, k)


def test_hand_computed_ndcg() -> None:
    # Ranked labels [3, 0, 2, 1], judged labels {3, 2, 1, 0}, cutoff 3, gain = label, discount log2(r + 1):
    #   DCG@3  = 3/log2(2) + 0/log2(3) + 2/log2(4)           = 3 + 0 + 1            = 4
    #   IDCG@3 = 3/log2(2) + 2/log2(3) + 1/log2(4)           = 3 + 1.2618595 + 0.5  = 4.7618595
    #   NDCG@3 = 4 / 4.7618595                                                      = 0.8400080
    assert ndcg_at_k([3, 0, 2, 1], [3, 2, 1, 0], 3) == pytest.approx(0.8400080, abs=1e-7)
    assert ndcg_at_k([3, 0, 2, 1], [3, 2, 1, 0], 3) == pytest.approx(4 / (3 + 2 / math.log2(3) + 0.5))


def test_tied_scores_are_ordered_by_doc_id_descending() -> None:
    assert trec_order(["b", "c", "a", "d"], [1.0, 1.0, 2.0, 0.5]) == [2, 1, 0, 3]


def test_map_and_mrr_count_label_one_as_relevant() -> None:
    assert reciprocal_rank([0, 1, 4]) == 0.5
    assert average_precision([0, 1, 4], [0, 1, 4]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert has_relevant([0, 1]) and not has_relevant([0, 0])


def test_ndcg_cutoff_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ndcg_at_k([1], [1], 0)
