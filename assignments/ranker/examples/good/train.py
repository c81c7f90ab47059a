"""A learned ranker: gradient-boosted trees regressing the graded label, on raw and per-query features."""

import pickle
from pathlib import Path

import pandas as pd
from features import build
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

DATA = Path("/data")
WORKSPACE = Path("/workspace")


def fit(train: pd.DataFrame, features: list[str]) -> HistGradientBoostingRegressor:
    """Gradient-boosted trees on `build(train)`; `features` is implied by the columns build keeps."""
    model = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, max_leaf_nodes=31,
                                          min_samples_leaf=40, random_state=0)
    with threadpool_limits(limits=1):  # the sandbox has one CPU; more threads would only contend
        model.fit(build(train), train["label"])
    return model


if __name__ == "__main__":
    train = pd.read_csv(DATA / "train" / "train.csv", dtype={"query_id": str, "doc_id": str})
    model = fit(train, [])
    model_dir = WORKSPACE / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / "model.pkl", "wb") as fh:
        pickle.dump(model, fh)
    print(f"trained on {len(train)} rows in {model.n_iter_} boosting rounds")
