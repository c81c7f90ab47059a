import numpy as np
import pandas as pd
from predict import predict
from train import fit


def _frame(n_queries: int = 12, per_query: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = n_queries * per_query
    frame = pd.DataFrame({"query_id": np.repeat([f"q{i}" for i in range(n_queries)], per_query),
                          "doc_id": [f"d{i}" for i in range(rows)], "x": rng.normal(size=rows)})
    frame["label"] = (frame["x"] > 0.5).astype(int) + (frame["x"] > 1.2).astype(int)
    return frame


def test_scores_follow_the_signal():
    frame = _frame()
    model = fit(frame, ["x"])
    scores = predict(model, frame.drop(columns="label"))
    assert len(scores) == len(frame) and np.isfinite(scores).all()
    assert np.corrcoef(scores, frame["x"])[0, 1] > 0.5
