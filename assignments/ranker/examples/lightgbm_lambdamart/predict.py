"""Score the test rows with the saved LambdaMART model."""

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

DATA = Path("/data")
WORKSPACE = Path("/workspace")
OUTPUT = Path("/output")


def predict(model: lgb.Booster, test: pd.DataFrame) -> np.ndarray:
    scores = model.predict(test[model.feature_name()], num_iteration=model.best_iteration or None)
    if not np.isfinite(scores).all():
        raise ValueError("non-finite scores")
    return scores


if __name__ == "__main__":
    booster = lgb.Booster(model_file=str(WORKSPACE / "model" / "lambdamart.txt"))
    test = pd.read_csv(DATA / "test" / "test.csv", dtype={"query_id": str, "doc_id": str})
    OUTPUT.mkdir(parents=True, exist_ok=True)
    scored = test[["query_id", "doc_id"]].assign(score=predict(booster, test))
    scored.to_csv(OUTPUT / "scores.csv", index=False)
