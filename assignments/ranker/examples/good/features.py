"""Features shared by training and prediction: the raw columns plus within-query comparisons.

Relevance is relative to the other candidates of the same query, so each document also gets
its feature minus the query mean and its percentile rank inside the query.
"""

import pandas as pd

ID_COLUMNS = ["query_id", "doc_id"]
RELATIVE = ["bm25", "title_match", "semantic_sim", "ctr", "rating", "n_reviews_log", "price_rel",
            "return_rate"]


def build(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input matrix for `frame` (train or test rows)."""
    raw = frame.drop(columns=ID_COLUMNS + ["label"], errors="ignore")
    groups = frame.groupby("query_id")
    relative = {}
    for name in RELATIVE:
        relative[f"{name}_minus_mean"] = frame[name] - groups[name].transform("mean")
        relative[f"{name}_pct_rank"] = groups[name].rank(pct=True)
    return pd.concat([raw, pd.DataFrame(relative, index=frame.index)], axis=1)
