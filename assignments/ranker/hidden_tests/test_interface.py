"""Hidden tests of the ranker's interface (BRIEF.md, "Interface"): `fit(train, features)` in
train.py and `predict(model, test)` in predict.py, run on queries of the public training data.

The candidate's code runs in a child process (conftest.py); these tests only read its answers."""

import numpy as np
import pandas as pd


def ndcg_at_10(frame: pd.DataFrame, scores: np.ndarray) -> float:
    """Mean NDCG@10 over queries, the label as gain and a log2(rank + 1) discount, as scored."""
    values = []
    for _, group in frame.assign(score=scores).groupby("query_id"):
        gains = group["label"].to_numpy(dtype=float)
        order = np.argsort(-group["score"].to_numpy(), kind="stable")[:10]
        ideal = np.sort(gains)[::-1][:10]
        discount = 1 / np.log2(np.arange(2, 12))
        best = float((ideal * discount[: len(ideal)]).sum())
        if best > 0:
            values.append(float((gains[order] * discount[: len(order)]).sum()) / best)
    return float(np.mean(values))


def test_fit_leaves_its_input_alone(answers):
    before, after = answers.frames()
    pd.testing.assert_frame_equal(after, before)


def test_one_finite_score_per_row(answers, data):
    scores = answers.scores("test")
    assert scores.shape == (len(data[1]),)
    assert np.all(np.isfinite(scores))


def test_scores_follow_the_rows_not_their_order(answers, shuffled_index):
    straight = answers.scores("test")
    moved = pd.Series(answers.scores("shuffled"), index=shuffled_index)
    np.testing.assert_allclose(moved.sort_index().to_numpy(), straight, rtol=1e-9, atol=1e-12)


def test_predict_is_deterministic(answers):
    np.testing.assert_array_equal(answers.scores("again"), answers.scores("test"))


def test_a_query_with_one_document(answers):
    scores = answers.scores("single")
    assert scores.shape == (1,) and np.isfinite(scores[0])


def test_ranks_held_out_queries_better_than_bm25(answers, data):
    held_out = data[1]
    ours = ndcg_at_10(held_out, answers.scores("test"))
    bm25 = ndcg_at_10(held_out, held_out["bm25"].to_numpy())
    assert ours > bm25, f"NDCG@10 on 60 held-out queries: {ours:.3f}; ranking by bm25 alone: {bm25:.3f}"
