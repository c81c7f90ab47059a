"""Train an XGBoost LambdaMART ranker (rank:ndcg) on the product-search data.

Usage: python train.py   (reads /data/train/train.csv, writes /workspace/model/)
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from features import add_query_features, feature_columns
from sklearn.model_selection import GroupShuffleSplit

DATA_DIR = Path("/data/train")
MODEL_DIR = Path("/workspace/model")

# tried a few on the held-out queries; depth 5 is as good as 6 and trains faster on one CPU
PARAMS = dict(
    objective="rank:ndcg",
    eval_metric="ndcg@10",
    lambdarank_pair_method="topk",
    lambdarank_num_pair_per_sample=10,
    tree_method="hist",
    n_estimators=400,
    learning_rate=0.1,
    max_depth=5,
    min_child_weight=10,
    subsample=0.8,
    colsample_bytree=0.8,
    early_stopping_rounds=25,
    n_jobs=1,
    random_state=42,
)


def _qid(frame: pd.DataFrame) -> np.ndarray:
    # XGBoost wants integer query ids, with each query's rows next to each other
    return frame["query_id"].str.lstrip("q").astype(int).to_numpy()


def fit(train: pd.DataFrame, features: list[str]) -> dict:
    """Fit the ranker; returns {"ranker": XGBRanker, "raw": the raw feature names}."""
    raw = list(features) or feature_columns(train)
    data = train.sort_values(["query_id", "doc_id"]).reset_index(drop=True)
    X = add_query_features(data, raw)
    split = GroupShuffleSplit(n_splits=1, test_size=0.1, random_state=0)
    fit_idx, val_idx = next(split.split(X, groups=data["query_id"]))
    ranker = xgb.XGBRanker(**PARAMS)
    ranker.fit(X.iloc[fit_idx], data["label"].iloc[fit_idx], qid=_qid(data.iloc[fit_idx]),
               eval_set=[(X.iloc[val_idx], data["label"].iloc[val_idx])],
               eval_qid=[_qid(data.iloc[val_idx])], verbose=False)
    return {"ranker": ranker, "raw": raw}


def main() -> None:
    train = pd.read_csv(DATA_DIR / "train.csv", dtype={"query_id": str, "doc_id": str})
    model = fit(train, [])
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    model["ranker"].save_model(MODEL_DIR / "ranker.json")
    (MODEL_DIR / "features.json").write_text(json.dumps(model["raw"]))
    best = model["ranker"].best_score
    print(f"best iteration {model['ranker'].best_iteration}, validation ndcg@10 {best:.4f}")


if __name__ == "__main__":
    main()
