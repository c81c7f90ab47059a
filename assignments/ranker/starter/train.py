"""Starter training script: fit a model on /data/train/train.csv, save it under /workspace/model.

This version learns nothing (every document gets the same score). Replace `fit` with a model.
"""

import argparse
import json
import os
from pathlib import Path

import pandas as pd

ID_COLUMNS = ["query_id", "doc_id"]


def fit(train: pd.DataFrame, features: list[str]) -> dict:
    # TODO: learn something from train[features] and train["label"], grouped by query_id.
    return {"features": features, "constant": 0.0}


def paths() -> argparse.Namespace:
    """--data and --workspace, else $DATA and $WORKSPACE, else the sandbox's /data and /workspace:
    `python train.py --data kit/data --workspace /tmp/ws` runs it on your machine unchanged."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("DATA", "/data")))
    parser.add_argument("--workspace", type=Path, default=Path(os.environ.get("WORKSPACE", "/workspace")))
    return parser.parse_args()


def main() -> None:
    args = paths()
    train = pd.read_csv(args.data / "train" / "train.csv", dtype={"query_id": str, "doc_id": str})
    features = [c for c in train.columns if c not in ID_COLUMNS + ["label"]]
    model = fit(train, features)
    model_dir = args.workspace / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.json").write_text(json.dumps(model))
    print(f"trained on {len(train)} rows, {train['query_id'].nunique()} queries, {len(features)} features")


if __name__ == "__main__":
    main()
