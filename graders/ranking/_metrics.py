"""Per-query ranking measures with trec_eval's semantics (trec_eval 9, as wrapped by pytrec_eval).

The rules, each checked against pytrec_eval in tests/test_ranking_metrics.py:

* order: score descending; tied scores are ordered by document id descending (trec_eval's
  `comp_sim_docno` compares doc ids with `strcmp`, reversed). Python compares `str` by code
  point, which is the same order as comparing their UTF-8 bytes.
* ndcg_cut.k: gain is the raw label (not 2^label - 1), discount is log2(rank + 1) with ranks
  from 1, and the ideal ranking is built from every judged document of the query, retrieved or
  not. A query whose ideal DCG is 0 scores 0.
* map: relevant means label >= 1 (trec_eval's default relevance level); the sum of precision at
  each relevant retrieved document is divided by the number of relevant judged documents.
* recip_rank: 1 / rank of the first relevant retrieved document, 0 if none is retrieved.

Rankings here are given as the labels of the retrieved documents in rank order (0 for an
unjudged document), plus the labels of every judged document of the query.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

RELEVANCE_LEVEL = 1  # trec_eval's default: a label >= 1 is relevant for map and recip_rank


@dataclass(frozen=True)
class QueryMetrics:
    """The three measures of one query's ranking."""

    ndcg: float
    ap: float
    rr: float


def trec_order(doc_ids: Sequence[str], scores: Sequence[float]) -> list[int]:
    """Indices of the documents in trec_eval's order: score descending, then doc id descending."""
    return sorted(range(len(doc_ids)), key=lambda i: (scores[i], doc_ids[i]), reverse=True)


def _dcg(gains: Sequence[int], k: int) -> float:
    return sum(g / math.log2(rank + 2) for rank, g in enumerate(gains[:k]) if g > 0)


def ndcg_at_k(ranked: Sequence[int], judged: Sequence[int], k: int) -> float:
    """trec_eval ndcg_cut.k. Raises ValueError if k < 1."""
    if k < 1:
        raise ValueError(f"the NDCG cutoff must be at least 1, not {k}")
    ideal = _dcg(sorted(judged, reverse=True), k)
    return _dcg(ranked, k) / ideal if ideal > 0 else 0.0


def average_precision(ranked: Sequence[int], judged: Sequence[int]) -> float:
    """trec_eval map for one query (relevance: label >= RELEVANCE_LEVEL)."""
    n_relevant = sum(1 for label in judged if label >= RELEVANCE_LEVEL)
    if n_relevant == 0:
        return 0.0
    hits, total = 0, 0.0
    for rank, label in enumerate(ranked, start=1):
        if label >= RELEVANCE_LEVEL:
            hits += 1
            total += hits / rank
    return total / n_relevant


def reciprocal_rank(ranked: Sequence[int]) -> float:
    """trec_eval recip_rank: 1 / rank of the first relevant document, 0 if there is none."""
    for rank, label in enumerate(ranked, start=1):
        if label >= RELEVANCE_LEVEL:
            return 1.0 / rank
    return 0.0


def query_metrics(ranked: Sequence[int], judged: Sequence[int], k: int) -> QueryMetrics:
    """All three measures of one ranking (see the module docstring for the conventions)."""
    return QueryMetrics(ndcg=ndcg_at_k(ranked, judged, k), ap=average_precision(ranked, judged),
                        rr=reciprocal_rank(ranked))


def has_relevant(judged: Sequence[int]) -> bool:
    """Whether a query has any relevant judged document (else its measures are all 0)."""
    return any(label >= RELEVANCE_LEVEL for label in judged)
