"""The ranker assignment: its data generator, its spec, its calibration and (slow) its examples.

The calibration check recomputes the bm25 ranking's NDCG@10 with trec_eval via pytrec_eval
(pytrec-eval-terrier) and compares it with the `baseline` written in assignment.yaml.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import pytrec_eval

from graders.ranking import RankingGrader
from harness.spec import load_assignment

ASSIGNMENT = Path(__file__).resolve().parents[1] / "assignments" / "ranker"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _load(ASSIGNMENT / "data" / "generate.py", "ranker_generate")


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the data generated once, at `data/`, for every test of this module."""
    base = tmp_path_factory.mktemp("ranker")
    generate.materialize(base / "data", ASSIGNMENT / "hidden")
    return base


@pytest.fixture(scope="session")
def data(workdir: Path) -> Path:
    return workdir / "data"


FILES = ("train/train.csv", "test/test.csv", "test_labels/qrels.csv")


def test_generation_is_deterministic(data: Path, tmp_path: Path) -> None:
    generate.materialize(tmp_path, ASSIGNMENT / "hidden")
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (data / name).read_bytes(), name


def test_test_file_has_the_train_columns_but_no_label(data: Path) -> None:
    train_header = (data / FILES[0]).open().readline().strip().split(",")
    test_header = (data / FILES[1]).open().readline().strip().split(",")
    assert train_header[-1] == "label" and "label" not in test_header
    assert test_header == train_header[:-1]
    features = test_header[2:]
    assert 12 <= len(features) <= 20 and "bm25" in features


def test_every_test_row_has_exactly_one_qrel(data: Path) -> None:
    test = [(r["query_id"], r["doc_id"]) for r in read(data / FILES[1])]
    qrels = [(r["query_id"], r["doc_id"]) for r in read(data / FILES[2])]
    assert len(set(test)) == len(test) and len(set(qrels)) == len(qrels)
    assert set(test) == set(qrels)


@pytest.mark.parametrize("name, n_queries", [(FILES[0], 3000), (FILES[2], 1000)])
def test_sizes_labels_and_relevance(data: Path, name: str, n_queries: int) -> None:
    rows = read(data / name)
    per_query = Counter(r["query_id"] for r in rows)
    assert len(per_query) == n_queries
    assert 20 <= min(per_query.values()) and max(per_query.values()) <= 40
    assert {r["label"] for r in rows} == {"0", "1", "2", "3", "4"}
    relevant = {r["query_id"] for r in rows if int(r["label"]) >= 1}
    assert relevant == set(per_query)  # every query has a relevant document
    assert len({(r["query_id"], r["doc_id"]) for r in rows}) == len(rows)


def test_features_are_finite_numbers(data: Path) -> None:
    for row in read(data / FILES[1])[:3000]:
        values = [float(v) for k, v in row.items() if k not in ("query_id", "doc_id")]
        assert all(math.isfinite(v) for v in values)


def test_hidden_seed_differs_from_public_and_matters(data: Path) -> None:
    seed = generate.read_seed(ASSIGNMENT / "hidden")
    assert seed != generate.PUBLIC_SEED
    train_queries = {r["query_id"] for r in read(data / FILES[0])}
    assert train_queries.isdisjoint(r["query_id"] for r in read(data / FILES[2]))
    a, b = generate.simulate(seed, 20, 1), generate.simulate(seed + 1, 20, 1)
    assert not np.array_equal(a.features["bm25"][:100], b.features["bm25"][:100])


@pytest.mark.parametrize("content", [None, "not a number\n", f"{generate.PUBLIC_SEED}\n"])
def test_bad_secret_seed_is_refused(tmp_path: Path, content: str | None) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    if content is not None:
        (hidden / "seed.txt").write_text(content)
    with pytest.raises(ValueError, match="seed"):
        generate.materialize(tmp_path / "out", hidden)
    assert not (tmp_path / "out" / "test").exists()


def test_spec_zero_point_sits_just_below_the_bm25_ndcg(data: Path) -> None:
    assignment = load_assignment(ASSIGNMENT)
    (spec,) = assignment.spec.graders
    args = RankingGrader.Args(**spec.args)
    qrels: dict[str, dict[str, int]] = {}
    for r in read(data / FILES[2]):
        qrels.setdefault(r["query_id"], {})[r["doc_id"]] = int(r["label"])
    run: dict[str, dict[str, float]] = {}
    for r in read(data / FILES[1]):
        run.setdefault(r["query_id"], {})[r["doc_id"]] = float(r["bm25"])
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    bm25_ndcg = float(np.mean([m["ndcg_cut_10"] for m in per_query.values()]))
    assert bm25_ndcg - 0.05 <= args.baseline < bm25_ndcg, "re-run data/calibrate.py"
    assert args.target >= bm25_ndcg + 0.08


@pytest.mark.slow
def test_examples_score_as_documented(workdir: Path) -> None:
    calibrate = _load(ASSIGNMENT / "data" / "calibrate.py", "ranker_calibrate")
    results = {}
    for name in ("good", "baseline", "bad_output", "broken", "starter"):
        out, _ = calibrate.run_example(name, workdir)
        results[name] = calibrate.grade(out, workdir / "data", workdir / "artifacts" / name)
    good, base, bad = results["good"], results["baseline"], results["bad_output"]
    assert good.score >= 0.9 and good.metrics["delta_ci_low"] > 0.08
    assert 0.0 < base.score < 0.25 and base.metrics["delta_vs_baseline"] == 0.0
    assert bad.score < base.score and bad.metrics["ndcg_at_10"] < base.metrics["ndcg_at_10"]
    problems = bad.details["rows"]["problems"]
    assert {"non_finite", "duplicate", "unknown_id", "missing", "malformed"} <= set(problems)
    assert results["broken"].score == 0.0 and "not produced" in results["broken"].explanation
    assert results["starter"].score == 0.0 and results["starter"].metrics["rows_invalid"] == 0
