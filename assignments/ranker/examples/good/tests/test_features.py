"""The good example's own tests: the per-query features and the fit/predict round trip."""

import numpy as np
import pandas as pd
from features import build


def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = 40
    columns = {name: rng.random(rows) for name in ["bm25", "title_match", "semantic_sim", "ctr", "rating",
                                                    "n_reviews_log", "price_rel", "return_rate"]}
    return pd.DataFrame({"query_id": [f"q{i % 4}" for i in range(rows)],
                         "doc_id": [f"d{i}" for i in range(rows)], "label": rng.integers(0, 4, rows),
                         **columns})


def test_relative_features_are_centred_per_query():
    built = build(frame())
    centred = built.groupby(frame()["query_id"])["bm25_minus_mean"].mean()
    np.testing.assert_allclose(centred.to_numpy(), 0.0, atol=1e-12)


def test_percentile_ranks_lie_in_the_unit_interval():
    built = build(frame())
    assert built["ctr_pct_rank"].between(0, 1).all()


def test_label_and_ids_are_not_features():
    assert not {"label", "query_id", "doc_id"} & set(build(frame()).columns)


def test_fit_then_predict_scores_every_row():
    import predict
    import train

    model = train.fit(frame(), [])
    scores = predict.predict(model, frame().drop(columns="label"))
    assert scores.shape == (40,) and np.isfinite(scores).all()
