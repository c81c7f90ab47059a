"""Rank every test query, measure each one, and summarise with bootstrap intervals.

Penalty: a test row without a valid score (missing, NaN, not a number) is ranked below every
scored row of its query, and those unscored rows are put in the worst order (lowest label
first). Leaving a row out can therefore never do better than scoring it, in the spirit of
`trec_eval -c`, which counts a query with no results as 0.

Queries with no relevant document (all labels 0) score 0 on every measure whatever the
ranking, so they are left out of the means and counted separately.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graders.ranking._bootstrap import Interval, bootstrap_ci, paired_bootstrap_ci
from graders.ranking._io import Key, Reference
from graders.ranking._metrics import RELEVANCE_LEVEL, has_relevant, query_metrics, trec_order

MEASURES = ("ndcg", "ap", "rr")


@dataclass(frozen=True)
class QueryTable:
    """One row per test query, in query id order."""

    query_ids: list[str]
    n_docs: np.ndarray
    n_relevant: np.ndarray
    n_penalised: np.ndarray
    evaluated: np.ndarray  # bool: has a relevant document
    values: dict[str, np.ndarray]  # measure -> per-query value

    def mean(self, measure: str) -> float:
        return float(self.values[measure][self.evaluated].mean())


@dataclass(frozen=True)
class Comparison:
    """A measure of a run against the baseline run, with 95% bootstrap intervals."""

    value: float
    interval: Interval
    baseline: float
    delta: float
    delta_interval: Interval


def rank_query(docs: list[str], scores: Mapping[Key, float], labels: Mapping[Key, int],
               query: str) -> tuple[list[int], int]:
    """Labels of `docs` in ranked order (penalty rule above) and how many rows were penalised."""
    scored = [d for d in docs if (query, d) in scores]
    unscored = [d for d in docs if (query, d) not in scores]
    order = trec_order(scored, [scores[(query, d)] for d in scored])
    ranked = [labels.get((query, scored[i]), 0) for i in order]
    worst = sorted(unscored, key=lambda d: (-labels.get((query, d), 0), d), reverse=True)
    return ranked + [labels.get((query, d), 0) for d in worst], len(unscored)


def _judged(labels: Mapping[Key, int]) -> dict[str, list[int]]:
    judged: dict[str, list[int]] = {}
    for (query, _doc), label in labels.items():
        judged.setdefault(query, []).append(label)
    return judged


def evaluate_run(ref: Reference, scores: Mapping[Key, float], k: int) -> QueryTable:
    """Measure every test query of `ref` ranked by `scores` (rows absent from it are penalised)."""
    judged = _judged(ref.labels)
    query_ids = sorted(ref.queries)
    rows: list[tuple[int, int, int, bool, float, float, float]] = []
    for query in query_ids:
        ranked, penalised = rank_query(ref.queries[query], scores, ref.labels, query)
        query_judged = judged.get(query, [])
        m = query_metrics(ranked, query_judged, k)
        rows.append((len(ranked), sum(1 for x in query_judged if x >= RELEVANCE_LEVEL), penalised,
                     has_relevant(query_judged), m.ndcg, m.ap, m.rr))
    cols = list(zip(*rows, strict=True)) if rows else [()] * 7
    return QueryTable(query_ids=query_ids, n_docs=np.array(cols[0], dtype=int),
                      n_relevant=np.array(cols[1], dtype=int), n_penalised=np.array(cols[2], dtype=int),
                      evaluated=np.array(cols[3], dtype=bool),
                      values={m: np.array(c, dtype=float) for m, c in zip(MEASURES, cols[4:], strict=True)})


def compare(run: QueryTable, baseline: QueryTable, measure: str, *, resamples: int,
            seed: int) -> Comparison:
    """Mean of `measure` over evaluated queries, its interval, and the paired difference from baseline.

    Raises ValueError when no query has a relevant document.
    """
    mask = run.evaluated
    a, b = run.values[measure][mask], baseline.values[measure][mask]
    return Comparison(value=float(a.mean()), interval=bootstrap_ci(a, resamples=resamples, seed=seed),
                      baseline=float(b.mean()), delta=float((a - b).mean()),
                      delta_interval=paired_bootstrap_ci(a, b, resamples=resamples, seed=seed))


def write_per_query(path: Path, run: QueryTable, baseline: QueryTable, ndcg_name: str) -> None:
    """A CSV with one line per query: sizes, penalised rows, the run's and the baseline's measures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = {"ndcg": ndcg_name, "ap": "ap", "rr": "rr"}
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["query_id", "n_docs", "n_relevant", "n_penalised", "evaluated",
                      *names.values(), *(f"baseline_{n}" for n in names.values())])
        for i, query in enumerate(run.query_ids):
            out.writerow([query, run.n_docs[i], run.n_relevant[i], run.n_penalised[i],
                          int(run.evaluated[i]), *(f"{run.values[m][i]:.6f}" for m in MEASURES),
                          *(f"{baseline.values[m][i]:.6f}" for m in MEASURES)])
