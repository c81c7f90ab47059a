"""LambdaMART with LightGBM: optimise NDCG directly, queries as groups, early stopping on held-out queries."""

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

DATA = Path("/data")
WORKSPACE = Path("/workspace")
PARAMS = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [10],
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.9,
    "num_threads": 1,  # one CPU in the sandbox
    "verbosity": -1,
    "seed": 7,
}


def _grouped(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows sorted by query (LightGBM wants each query's rows together) and the group sizes."""
    frame = frame.sort_values("query_id", kind="stable")
    return frame, frame.groupby("query_id", sort=False).size().to_numpy()


def fit(train: pd.DataFrame, features: list[str]) -> lgb.Booster:
    features = features or [c for c in train.columns if c not in ("query_id", "doc_id", "label")]
    queries = train["query_id"].unique()
    held_out = set(np.random.default_rng(0).choice(queries, size=max(1, len(queries) // 10), replace=False))
    parts = {}
    in_valid = train["query_id"].isin(held_out)
    for name, mask in (("fit", ~in_valid), ("valid", in_valid)):
        frame, groups = _grouped(train[mask])
        parts[name] = lgb.Dataset(frame[features], label=frame["label"], group=groups, free_raw_data=False)
    return lgb.train(PARAMS, parts["fit"], num_boost_round=500, valid_sets=[parts["valid"]],
                     callbacks=[lgb.early_stopping(30, verbose=False)])


if __name__ == "__main__":
    train = pd.read_csv(DATA / "train" / "train.csv", dtype={"query_id": str, "doc_id": str})
    booster = fit(train, [])
    (WORKSPACE / "model").mkdir(parents=True, exist_ok=True)
    booster.save_model(str(WORKSPACE / "model" / "lambdamart.txt"))
    best = booster.best_score["valid_0"]["ndcg@10"]
    print(f"best iteration {booster.best_iteration}, held-out NDCG@10 {best:.4f}")
