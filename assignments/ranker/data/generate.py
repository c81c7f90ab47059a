"""Synthetic product-search learning-to-rank data for the `ranker` assignment.

Trusted code, run by the harness on the host: `materialize(root, hidden_dir)` writes

    root/train/train.csv        query_id,doc_id,<features>,label   (public seed below)
    root/test/test.csv          query_id,doc_id,<features>         (secret seed, no label)
    root/test_labels/qrels.csv  query_id,doc_id,label              (secret seed)

The secret seed is the integer in `hidden_dir/seed.txt`; when that file is missing it is
created with a fresh 128-bit random seed (mode 0600), so every install draws its own test set.
The generative model is described in README.md next to this file; numpy is the only
dependency. Raises ValueError when an existing seed file does not hold one integer, or holds
one that is public or too small to stay secret (below `harness.secret_seed.MIN_SECRET_SEED`).
"""

# No `from __future__ import annotations`: the harness may load this file without registering it
# in sys.modules, and dataclasses then cannot resolve string annotations.
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.secret_seed import secret_seed

PUBLIC_SEED = 20261125
RETIRED_SEEDS = frozenset({934779988})  # once committed to the repository, so public for ever
TRAIN_QUERIES = 3000
TEST_QUERIES = 1000
TRAIN_FIRST_QUERY = 1  # train ids q00001..q03000
TEST_FIRST_QUERY = 10001  # test ids q10001..q11000, so the two sets never share an id
DOCS_PER_QUERY = (20, 40)  # inclusive
LABEL_THRESHOLDS = (0.75, 1.55, 2.25, 2.85)  # utility cut points for labels 1, 2, 3, 4
CALIBRATION_FILE = "calibration.json"  # next to qrels.csv: the grader's bm25 and oracle figures
UTILITY_NOISE = 0.5  # standard deviation of the utility's noise: what no model can learn
FEATURES = (
    "query_length", "query_brand", "query_price_term",
    "bm25", "title_match", "semantic_sim", "category_match", "brand_match",
    "price_log", "price_rel", "discount_pct", "in_stock", "shipping_days",
    "rating", "n_reviews_log", "ctr", "impressions_log", "return_rate", "doc_age_days",
)
_INT_FEATURES = {"query_length", "query_brand", "query_price_term", "category_match", "brand_match",
                 "discount_pct", "in_stock", "shipping_days", "doc_age_days"}


@dataclass(frozen=True)
class Split:
    """One simulated split: a row per (query, document)."""

    query_ids: np.ndarray  # str
    doc_ids: np.ndarray  # str
    features: dict[str, np.ndarray]
    labels: np.ndarray  # int, 0..4
    expected_relevance: np.ndarray  # E[label] given the hidden variables: the oracle's score


@dataclass(frozen=True)
class _Queries:
    index: np.ndarray  # query index of every row
    n_docs: np.ndarray  # docs per query
    specificity: np.ndarray  # 0 = broad head query, 1 = specific tail query
    brand_intent: np.ndarray  # 0/1
    price_intent: np.ndarray  # -1 budget, 0 neutral, +1 premium
    offset: np.ndarray  # how well the candidate set serves the query overall
    match_rate: np.ndarray  # share of candidates that truly match the intent


_erf = np.vectorize(math.erf, otypes=[float])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _query_mean(values: np.ndarray, q: _Queries) -> np.ndarray:
    return (np.bincount(q.index, weights=values) / q.n_docs)[q.index]


def _simulate_queries(rng: np.random.Generator, n_queries: int) -> _Queries:
    lo, hi = DOCS_PER_QUERY
    n_docs = rng.integers(lo, hi + 1, size=n_queries)
    return _Queries(
        index=np.repeat(np.arange(n_queries), n_docs),
        n_docs=n_docs,
        specificity=rng.beta(2.0, 2.0, size=n_queries),
        brand_intent=(rng.random(n_queries) < 0.3).astype(int),
        price_intent=rng.choice([-1, 0, 1], size=n_queries, p=[0.25, 0.55, 0.20]),
        offset=rng.normal(0.0, 0.45, size=n_queries),
        match_rate=rng.beta(2.0, 5.0, size=n_queries),
    )


def _latents(rng: np.random.Generator, q: _Queries) -> dict[str, np.ndarray]:
    """Per-document hidden variables: topical match, quality, popularity, spam, stock."""
    n = q.index.size
    exact = rng.random(n) < q.match_rate[q.index]
    match = np.where(exact, rng.beta(5.0, 2.0, n), rng.beta(1.2, 3.5, n))
    spam = rng.random(n) < 0.05  # keyword-stuffed listings: text says yes, product says no
    match = np.where(spam, 0.3 * match, match)
    quality = rng.normal(0.0, 1.0, n)
    popularity = 0.5 * quality + np.sqrt(0.75) * rng.normal(0.0, 1.0, n)
    log_price = rng.normal(3.5, 1.0, q.n_docs.size)[q.index] + rng.normal(0.0, 0.3, n)
    return {"match": match, "spam": spam.astype(float), "quality": quality, "popularity": popularity,
            "log_price": log_price, "in_stock": (rng.random(n) < 0.88).astype(float),
            "brand_match": q.brand_intent[q.index] * (rng.random(n) < 0.1 + 0.6 * match),
            "shipping_days": 1 + rng.poisson(2.0, n)}


def _text_features(rng: np.random.Generator, q: _Queries, z: dict[str, np.ndarray]) -> dict:
    """Lexical and semantic match: informative about `match`, fooled by spam, noisy."""
    n = q.index.size
    spec = q.specificity[q.index]
    q_len = 1 + rng.binomial(7, 0.1 + 0.5 * q.specificity)
    tf = rng.poisson(0.3 + 7.0 * z["match"] + 6.0 * z["spam"])
    doc_len = rng.lognormal(0.0, 0.3, n)
    saturated = tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * doc_len))
    bm25 = (1.5 + 1.5 * spec) * np.sqrt(q_len[q.index]) * saturated + rng.normal(0.0, 0.3, n)
    p_title = np.clip(0.1 + 0.6 * z["match"] + 0.5 * z["spam"], 0.0, 0.97)
    title = rng.binomial(q_len[q.index], p_title) / q_len[q.index]
    semantic = 0.2 + 0.5 * z["match"] + rng.normal(0.0, 0.2 + 0.1 * (1 - spec), n)
    category = rng.random(n) < 0.15 + 0.8 * z["match"] ** 0.7
    return {"query_length": q_len[q.index], "bm25": bm25, "title_match": title,
            "semantic_sim": np.clip(semantic, -1.0, 1.0), "category_match": category.astype(int)}


def _behaviour_features(rng: np.random.Generator, q: _Queries, z: dict[str, np.ndarray]) -> dict:
    """Reviews and clicks: informative for popular items and head queries, noisy in the tail."""
    n = q.index.size
    reviews = np.maximum(np.floor(np.exp(rng.normal(1.5 + 1.0 * z["popularity"], 1.2))) - 1, 0)
    true_rating = np.clip(3.9 + 0.5 * z["quality"], 1.0, 5.0)
    seen = np.clip(true_rating + rng.normal(0.0, 1.0, n) / np.sqrt(reviews + 1), 1.0, 5.0)
    head = 1.0 - q.specificity[q.index]
    impressions = rng.poisson(np.exp(-0.3 + 0.8 * z["popularity"] + 2.0 * head))
    p_click = _sigmoid(-3.2 + 3.0 * z["match"] + 0.4 * z["quality"] + 0.6 * z["in_stock"])
    clicks = rng.binomial(impressions, p_click)
    return {"rating": np.where(reviews > 0, np.round(seen, 1), 0.0), "n_reviews_log": np.log1p(reviews),
            "ctr": (clicks + 0.5) / (impressions + 10.0), "impressions_log": np.log1p(impressions),
            "return_rate": _sigmoid(-2.6 - 0.7 * z["quality"] + rng.normal(0.0, 0.5, n))}


def _expected_utility(q: _Queries, z: dict[str, np.ndarray]) -> np.ndarray:
    """The utility without its noise: what the labels are cut from, on average (README.md)."""
    price_rel = z["log_price"] - _query_mean(z["log_price"], q)
    intent = q.price_intent[q.index]
    price_term = np.select([intent < 0, intent > 0], [-1.0 * price_rel, 0.8 * price_rel],
                           -0.25 * np.abs(price_rel))
    brand_term = q.brand_intent[q.index] * (1.0 * z["brand_match"] - 0.5)
    return (3.2 * z["match"] ** 2 + 1.0 * z["quality"] * z["match"] + brand_term + price_term
            - 1.6 * (1.0 - z["in_stock"]) - 0.08 * (z["shipping_days"] - 3) + q.offset[q.index])


def expected_label(mean_utility: np.ndarray) -> np.ndarray:
    """E[label] given the hidden variables: the sum over cut points of P(utility >= cut)."""
    cuts = np.asarray(LABEL_THRESHOLDS)
    z = (mean_utility[:, None] - cuts[None, :]) / (UTILITY_NOISE * math.sqrt(2.0))
    return (0.5 * (1.0 + _erf(z))).sum(axis=1)


def _labels(utility: np.ndarray, q: _Queries) -> np.ndarray:
    """Cut utility into grades 0..4; a query with no relevant document gets its best one at 1."""
    labels = np.searchsorted(np.asarray(LABEL_THRESHOLDS), utility, side="right")
    starts = np.concatenate([[0], np.cumsum(q.n_docs)[:-1]])
    for qi in np.flatnonzero(np.maximum.reduceat(labels, starts) == 0):
        labels[starts[qi] + np.argmax(utility[starts[qi]:starts[qi] + q.n_docs[qi]])] = 1
    return labels


def _ids(rng: np.random.Generator, q: _Queries, first_query: int) -> tuple[np.ndarray, np.ndarray]:
    # doc ids are random so that neither file order nor trec_eval's tie rule (doc id) carries signal
    query_ids = np.char.mod("q%05d", first_query + q.index)
    doc_ids = np.char.mod("d%07d", rng.choice(10_000_000, size=q.index.size, replace=False))
    return query_ids, doc_ids


def simulate(seed: int, n_queries: int, first_query: int) -> Split:
    """Draw one split; rows are sorted by query id, then doc id."""
    rng = np.random.default_rng(seed)
    q = _simulate_queries(rng, n_queries)
    z = _latents(rng, q)
    features = {**_text_features(rng, q, z), **_behaviour_features(rng, q, z)}
    intent_seen = rng.random(n_queries) < 0.6  # price words appear in some budget/premium queries
    features |= {
        "query_brand": q.brand_intent[q.index],
        "query_price_term": (q.price_intent * intent_seen)[q.index],
        "brand_match": z["brand_match"].astype(int),
        "price_log": z["log_price"], "price_rel": z["log_price"] - _query_mean(z["log_price"], q),
        "discount_pct": np.where(rng.random(q.index.size) < 0.4, rng.integers(5, 51, q.index.size), 0),
        "in_stock": z["in_stock"].astype(int), "shipping_days": z["shipping_days"],
        "doc_age_days": np.round(np.exp(rng.normal(5.0, 1.0, q.index.size))).astype(int),
    }
    mean_utility = _expected_utility(q, z)
    labels = _labels(mean_utility + rng.normal(0.0, UTILITY_NOISE, q.index.size), q)
    query_ids, doc_ids = _ids(rng, q, first_query)
    order = np.lexsort((doc_ids, query_ids))
    return Split(query_ids[order], doc_ids[order], {k: features[k][order] for k in FEATURES},
                 labels[order], expected_label(mean_utility)[order])


def _format(name: str, values: np.ndarray) -> np.ndarray:
    return np.char.mod("%d" if name in _INT_FEATURES else "%.4f", values)


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    """Write equal-length string columns as a CSV with a header line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = map(",".join, zip(*columns.values(), strict=True))
    path.write_text(",".join(columns) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")


def read_seed(hidden_dir: Path) -> int:
    """This install's secret seed (see harness.secret_seed); ValueError if public, weak or malformed."""
    return secret_seed(hidden_dir, public={PUBLIC_SEED, *RETIRED_SEEDS}, what="the test labels")


def prepare(hidden_dir: Path) -> None:
    """Create this install's secret seed if there is none (the harness calls this before it
    fingerprints the hidden folder, so the cached data is keyed by the seed in use)."""
    read_seed(hidden_dir)


def _feature_columns(split: Split) -> dict[str, np.ndarray]:
    return {name: _format(name, split.features[name]) for name in FEATURES}


def ndcg_at(k: int, split: Split, scores: np.ndarray) -> float:
    """Mean NDCG@k of ranking each query by `scores`, by trec_eval's rules (the grader's, see
    BRIEF.md): score descending, ties by doc id descending, the raw label as gain, a log2 discount."""
    bounds = np.flatnonzero(np.r_[True, split.query_ids[1:] != split.query_ids[:-1], True])
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    values = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        labels = split.labels[lo:hi]
        order = np.lexsort((split.doc_ids[lo:hi], scores[lo:hi]))[::-1]
        ideal = np.sort(labels)[::-1][:k] @ discount[:min(k, hi - lo)]
        if ideal > 0:  # the grader leaves out queries without a relevant document
            values.append(labels[order][:k] @ discount[:min(k, hi - lo)] / ideal)
    return float(np.mean(values))


def calibration(test: Split, feature: str = "bm25", k: int = 10) -> dict:
    """The reference points of the grader's scale on this test set: ranking by `feature` as written
    to test.csv, and the oracle that ranks by expected relevance under the generative model."""
    written = _format(feature, test.features[feature]).astype(float)
    return {"about": "NDCG on the hidden test set: ranking by the reference feature as written to "
                     "test.csv, and the oracle that ranks by E[label] given the generator's hidden "
                     "variables (data/README.md, 'Calibration')",
            "queries": int(np.unique(test.query_ids).size), "reference_feature": feature,
            f"ndcg_at_{k}": {feature: round(ndcg_at(k, test, written), 6),
                             "oracle": round(ndcg_at(k, test, test.expected_relevance), 6)}}


def materialize(root: Path, hidden_dir: Path) -> None:
    """Write the train, test and test_labels folders under `root` (see module docstring).

    Raises ValueError (see `read_seed`) for a malformed, public or weak secret seed.
    """
    test_seed = read_seed(hidden_dir)  # refuses a public or weak seed before anything is written
    train = simulate(PUBLIC_SEED, TRAIN_QUERIES, TRAIN_FIRST_QUERY)
    write_csv(root / "train" / "train.csv", {"query_id": train.query_ids, "doc_id": train.doc_ids,
                                             **_feature_columns(train),
                                             "label": np.char.mod("%d", train.labels)})
    test = simulate(test_seed, TEST_QUERIES, TEST_FIRST_QUERY)
    ids = {"query_id": test.query_ids, "doc_id": test.doc_ids}
    write_csv(root / "test" / "test.csv", {**ids, **_feature_columns(test)})
    write_csv(root / "test_labels" / "qrels.csv", {**ids, "label": np.char.mod("%d", test.labels)})
    (root / "test_labels" / CALIBRATION_FILE).write_text(json.dumps(calibration(test), indent=1) + "\n",
                                                         encoding="utf-8")
