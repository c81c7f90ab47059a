"""Score /data/test/test.csv with the ranker saved by train.py; writes /output/scores.csv."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from features import add_query_features

DATA_DIR = Path("/data/test")
MODEL_DIR = Path("/workspace/model")
OUT_DIR = Path("/output")


def load_model(model_dir: Path = MODEL_DIR) -> dict:
    ranker = xgb.XGBRanker()
    ranker.load_model(model_dir / "ranker.json")
    return {"ranker": ranker, "raw": json.loads((model_dir / "features.json").read_text())}


def predict(model: dict, test: pd.DataFrame) -> np.ndarray:
    """One score per row of `test`, in row order (higher = more relevant)."""
    X = add_query_features(test, model["raw"])
    scores = model["ranker"].predict(X)
    assert np.isfinite(scores).all(), "model returned non-finite scores"
    return scores


def main() -> None:
    test = pd.read_csv(DATA_DIR / "test.csv", dtype={"query_id": str, "doc_id": str})
    scores = predict(load_model(), test)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    test[["query_id", "doc_id"]].assign(score=scores).to_csv(OUT_DIR / "scores.csv", index=False)
    print(f"wrote {len(test)} scores")


if __name__ == "__main__":
    main()
