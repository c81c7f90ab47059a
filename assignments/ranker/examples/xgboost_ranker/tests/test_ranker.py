import json

import numpy as np
import pandas as pd
import pytest
from features import add_query_features
from predict import load_model, predict
from train import fit


@pytest.fixture
def toy() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n_q, per_q = 30, 10
    df = pd.DataFrame({
        "query_id": np.repeat([f"q{i:05d}" for i in range(n_q)], per_q),
        "doc_id": [f"d{i:07d}" for i in range(n_q * per_q)],
    })
    for col in ("bm25", "semantic_sim", "title_match", "ctr", "rating", "price_rel"):
        df[col] = rng.normal(size=len(df))
    df["label"] = np.clip(np.round(df["semantic_sim"] + 1), 0, 4).astype(int)
    return df


def test_query_features_are_zero_for_a_single_row():
    row = pd.DataFrame({"query_id": ["q1"], "bm25": [3.0], "semantic_sim": [0.2], "title_match": [1.0],
                        "ctr": [0.1], "rating": [4.0], "price_rel": [0.0]})
    out = add_query_features(row, ["bm25"])
    assert (out.drop(columns="bm25") == 0).all().all()


def test_ranker_learns_the_signal_and_round_trips(toy, tmp_path):
    model = fit(toy, [])
    scores = predict(model, toy.drop(columns="label"))
    assert np.corrcoef(scores, toy["semantic_sim"])[0, 1] > 0.5
    model["ranker"].save_model(tmp_path / "ranker.json")
    (tmp_path / "features.json").write_text(json.dumps(model["raw"]))
    again = predict(load_model(tmp_path), toy.drop(columns="label"))
    np.testing.assert_allclose(again, scores, rtol=1e-6)
