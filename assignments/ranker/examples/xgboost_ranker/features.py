"""Feature engineering shared by train.py and predict.py.

Relevance is relative: a bm25 of 8 is great for one query and poor for another, so next to the
raw columns each document also gets a few of its features standardised within its query.
"""

import pandas as pd

NOT_FEATURES = ("query_id", "doc_id", "label")
PER_QUERY = ("bm25", "semantic_sim", "title_match", "ctr", "rating", "price_rel")


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The raw feature columns of train.csv / test.csv."""
    return [c for c in frame.columns if c not in NOT_FEATURES]


def add_query_features(frame: pd.DataFrame, raw: list[str]) -> pd.DataFrame:
    """`frame[raw]` plus a within-query z-score of the PER_QUERY columns (0 for one-row queries)."""
    grouped = frame.groupby("query_id")
    out = frame[raw].copy()
    for col in PER_QUERY:
        mean = grouped[col].transform("mean")
        std = grouped[col].transform("std").fillna(0.0)
        out[f"{col}_qz"] = ((frame[col] - mean) / std.where(std > 0, 1.0)).fillna(0.0)
    return out
