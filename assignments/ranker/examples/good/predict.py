"""Score the test rows with the trained gradient-boosted trees."""

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
from features import build
from threadpoolctl import threadpool_limits

DATA = Path("/data")
WORKSPACE = Path("/workspace")
OUTPUT = Path("/output")


def predict(model, test: pd.DataFrame) -> np.ndarray:
    """One finite score per row of `test`, higher = more relevant."""
    with threadpool_limits(limits=1):
        scores = model.predict(build(test))
    if not np.all(np.isfinite(scores)):
        raise ValueError("the model produced non-finite scores")
    return scores


if __name__ == "__main__":
    with open(WORKSPACE / "model" / "model.pkl", "rb") as fh:
        model = pickle.load(fh)  # our own file, written by train.py in the same sandbox
    test = pd.read_csv(DATA / "test" / "test.csv", dtype={"query_id": str, "doc_id": str})
    scores = predict(model, test)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    test[["query_id", "doc_id"]].assign(score=scores).to_csv(OUTPUT / "scores.csv", index=False)
