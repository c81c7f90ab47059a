"""The `ranking` grader on small hand-made data sets.

Expected measure values come from trec_eval via pytrec_eval (pytrec-eval-terrier), and the
bootstrap interval is checked against scipy.stats.bootstrap (percentile method).
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
from pydantic import ValidationError
from scipy import stats

from graders.ranking._bootstrap import bootstrap_ci, paired_bootstrap_ci
from graders.ranking.grader import RankingGrader
from harness.core.grading import GRADERS, CriterionResult, GradingContext, OutputFile
from harness.errors import HarnessError, SpecError

MLFLOW_SAFE = re.compile(r"^[A-Za-z0-9_\-. /]+$")


@dataclass
class Data:
    root: Path
    rows: list[tuple[str, str, int, float]]  # query, doc, label, bm25

    @property
    def qrels(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for q, d, label, _ in self.rows:
            out.setdefault(q, {})[d] = label
        return out


def make_data(root: Path, n_queries: int, *, docs: int = 8, seed: int = 0) -> Data:
    """Random graded labels and a noisy bm25 column, written as test.csv and qrels.csv."""
    rng = np.random.default_rng(seed)
    rows = []
    for qi in range(n_queries):
        labels = rng.integers(0, 5, size=docs)
        labels[rng.integers(docs)] = max(1, labels.max())  # every query has a relevant document
        bm25 = labels + rng.normal(0.0, 1.5, size=docs)
        ids = rng.choice(10_000, size=docs, replace=False)
        rows += [(f"q{qi:04d}", f"d{ids[j]:05d}", int(labels[j]), round(float(bm25[j]), 4))
                 for j in range(docs)]
    files = {"test/test.csv": (["query_id", "doc_id", "bm25", "other"], lambda r: [r[0], r[1], r[3], 1]),
             "test_labels/qrels.csv": (["query_id", "doc_id", "label"], lambda r: [r[0], r[1], r[2]])}
    for name, (header, pick) in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        with (root / name).open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(pick(r) for r in rows)
    return Data(root, rows)


def write_scores(path: Path, lines: list[str], header: str = "query_id,doc_id,score") -> Path:
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def scored_lines(data: Data, score) -> list[str]:
    return [f"{q},{d},{score(label, bm25)}" for q, d, label, bm25 in data.rows]


def make_grader(**args) -> RankingGrader:
    spec = {"labels": "test_labels", "queries": "test", "baseline": 0.0, "target": 1.0, **args}
    return RankingGrader(name="ndcg", weight=1.0, args=RankingGrader.Args(**spec))


def grade(data: Data, scores: Path | None, *, problem: str = "", **args) -> CriterionResult:
    ctx = GradingContext(
        submission_dir=data.root, assignment_dir=data.root, artifacts_dir=data.root / "artifacts",
        outputs={"scores.csv": OutputFile("scores.csv", scores, problem)},
        hidden={"test_labels": data.root / "test_labels"}, visible={"test": data.root / "test"})
    return make_grader(**args).grade(ctx)


def trec_mean(data: Data, run: dict[str, dict[str, float]], measure: str = "ndcg_cut_10") -> float:
    """Mean over queries by trec_eval via pytrec_eval (pytrec-eval-terrier)."""
    evaluator = pytrec_eval.RelevanceEvaluator(data.qrels, {"ndcg_cut.10", "map", "recip_rank"})
    return float(np.mean([m[measure] for m in evaluator.evaluate(run).values()]))


def noisy(label: int, bm25: float) -> float:
    return round(label + math.sin(bm25 * 7.0) * 2.5, 3)  # deterministic, imperfect ranking


@pytest.fixture()
def data(tmp_path: Path) -> Data:
    return make_data(tmp_path / "data", 40)


def test_registered_under_its_name() -> None:
    assert GRADERS.get("ranking") is RankingGrader


def test_perfect_ranking_scores_one(data: Data, tmp_path: Path) -> None:
    result = grade(data, write_scores(tmp_path / "s.csv", scored_lines(data, lambda label, _: label)))
    assert result.score == 1.0
    assert result.metrics["ndcg_at_10"] == result.metrics["map"] == result.metrics["mrr"] == 1.0
    assert result.metrics["rows_invalid"] == result.metrics["rows_missing"] == 0


def test_measures_match_trec_eval_through_the_whole_grader(data: Data, tmp_path: Path) -> None:
    # rounding to integers makes many ties, which trec_eval breaks by doc id
    result = grade(data, write_scores(tmp_path / "s.csv", scored_lines(data, lambda lab, b: round(b))))
    run: dict[str, dict[str, float]] = {}
    for q, d, _, bm25 in data.rows:
        run.setdefault(q, {})[d] = float(round(bm25))
    assert result.metrics["ndcg_at_10"] == pytest.approx(trec_mean(data, run))
    assert result.metrics["map"] == pytest.approx(trec_mean(data, run, "map"))
    assert result.metrics["mrr"] == pytest.approx(trec_mean(data, run, "recip_rank"))


def test_baseline_is_the_bm25_ranking(data: Data, tmp_path: Path) -> None:
    result = grade(data, write_scores(tmp_path / "s.csv", scored_lines(data, lambda _, b: b)))
    run: dict[str, dict[str, float]] = {}
    for q, d, _, bm25 in data.rows:
        run.setdefault(q, {})[d] = bm25
    assert result.metrics["baseline_ndcg_at_10"] == pytest.approx(trec_mean(data, run))
    assert result.metrics["delta_vs_baseline"] == 0.0
    assert result.metrics["delta_ci_low"] == result.metrics["delta_ci_high"] == 0.0


def test_missing_file_scores_zero_with_explanation(data: Data) -> None:
    result = grade(data, None, problem="scores.csv was not written")
    assert result.score == 0.0
    assert "scores.csv was not written" in result.explanation
    assert result.metrics["rows_missing"] == len(data.rows)
    assert result.details["rows"]["fatal"]


def test_output_no_stage_declares_is_a_spec_error(data: Data, tmp_path: Path) -> None:
    # A typo in the spec must fail loudly, not score every candidate zero.
    with pytest.raises(SpecError, match="other.csv"):
        grade(data, None, predictions="other.csv")


@pytest.mark.parametrize("content", [
    b"\x00\xff\xfe\x00garbage\n\x00\x01,\x02\n",
    b"qid,docid,score\nq0000,d1,1\n",  # wrong header
    b"",
    b"query_id,doc_id,score\n",  # header only
    b"query_id,doc_id,score\nnot,a,row\n\"unterminated,quote\n",
])
def test_unusable_file_scores_zero(data: Data, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(content)
    result = grade(data, path)
    assert result.score == 0.0
    assert result.details["rows"]["fatal"] in result.explanation
    assert all(MLFLOW_SAFE.match(k) and math.isfinite(v) for k, v in result.metrics.items())


def damaged(data: Data) -> tuple[list[str], dict[str, int], dict[str, dict[str, float]]]:
    """The `noisy` ranking with every kind of damage; expected counts; the run trec_eval should see.

    In the expected run, rows without a valid score get scores below every valid one, lowest
    label highest: the grader's documented penalty (ranked last, worst order).
    """
    lines, run = [], {}
    counts = dict.fromkeys(["missing", "non_finite", "bad_score", "duplicate", "unknown_id", "malformed"], 0)
    for i, (q, d, label, bm25) in enumerate(data.rows):
        penalty = -1000.0 - label
        if i % 11 == 0:
            counts["missing"] += 1
            run.setdefault(q, {})[d] = penalty
            continue
        if i % 13 == 0 or i % 17 == 0:
            kind = "non_finite" if i % 13 == 0 else "bad_score"
            counts[kind] += 1
            lines.append(f"{q},{d},{'nan' if kind == 'non_finite' else 'abc'}")
            run.setdefault(q, {})[d] = penalty
        else:
            lines.append(f"{q},{d},{noisy(label, bm25)}")
            run.setdefault(q, {})[d] = noisy(label, bm25)
        if i % 19 == 0:
            counts["duplicate"] += 1
            lines.append(f"{q},{d},1e9")  # the first line wins
    lines += ["q9999,d00001,1.0", "q0000,nope,2.0", "q0001,d99999,-inf", "", "x,y", "a,b,c,d"]
    counts["unknown_id"], counts["malformed"] = 3, 2
    return lines, counts, run


def test_damaged_rows_are_counted_and_penalised(data: Data, tmp_path: Path) -> None:
    lines, counts, run = damaged(data)
    result = grade(data, write_scores(tmp_path / "bad.csv", lines))
    clean = grade(data, write_scores(tmp_path / "clean.csv", scored_lines(data, noisy)))
    for kind, n in counts.items():
        assert result.metrics[f"rows_{kind}"] == n, kind
        assert len(result.details["rows"]["problems"][kind]["examples"]) == min(n, 5)
    assert result.metrics["rows_invalid"] == sum(n for k, n in counts.items() if k != "missing")
    assert result.metrics["ndcg_at_10"] == pytest.approx(trec_mean(data, run))
    assert result.metrics["map"] == pytest.approx(trec_mean(data, run, "map"))
    assert result.score < clean.score
    assert "invalid" in result.explanation


def test_tolerates_crlf_bom_quotes_and_column_order(data: Data, tmp_path: Path) -> None:
    lines = [f'"{d}",{noisy(label, bm25)},{q}' for q, d, label, bm25 in data.rows]
    path = tmp_path / "s.csv"
    path.write_bytes(("\ufeffdoc_id, score ,query_id\r\n" + "\r\n".join(lines) + "\r\n").encode())
    clean = grade(data, write_scores(tmp_path / "clean.csv", scored_lines(data, noisy)))
    result = grade(data, path)
    assert result.metrics["rows_invalid"] == 0
    assert result.metrics["ndcg_at_10"] == clean.metrics["ndcg_at_10"]


def test_blank_lines_are_skipped_and_overlong_lines_are_malformed(data: Data, tmp_path: Path) -> None:
    lines = scored_lines(data, noisy)
    result = grade(data, write_scores(tmp_path / "s.csv", lines[:5] + ["", "  ", "," * 100_000] + lines[5:]))
    assert result.metrics["rows_malformed"] == result.metrics["rows_invalid"] == 1
    assert result.metrics["rows_valid"] == len(data.rows)
    assert result.details["rows"]["problems"]["malformed"]["examples"][0].startswith("line 9: ,,,")


def test_confidence_interval_contains_mean_and_shrinks_with_more_queries(tmp_path: Path) -> None:
    widths = []
    for n in (30, 600):
        data = make_data(tmp_path / f"d{n}", n, seed=n)
        result = grade(data, write_scores(tmp_path / f"s{n}.csv", scored_lines(data, noisy)))
        low, mid, high = (result.metrics[f"ndcg_at_10{s}"] for s in ("_ci_low", "", "_ci_high"))
        assert low < mid < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # about sqrt(20) narrower


def test_difference_interval_excludes_zero_for_a_clearly_better_ranking(data: Data, tmp_path: Path) -> None:
    result = grade(data, write_scores(tmp_path / "s.csv", scored_lines(data, lambda label, _: label)))
    assert result.metrics["delta_vs_baseline"] > 0
    assert 0 < result.metrics["delta_ci_low"] <= result.metrics["delta_vs_baseline"]
    assert result.metrics["delta_vs_baseline"] <= result.metrics["delta_ci_high"]


def test_score_maps_linearly_between_baseline_and_target(data: Data, tmp_path: Path) -> None:
    path = write_scores(tmp_path / "s.csv", scored_lines(data, noisy))
    value = grade(data, path).metrics["ndcg_at_10"]
    assert grade(data, path, baseline=value - 0.05, target=value + 0.05).score == pytest.approx(0.5)
    assert grade(data, path, baseline=value + 0.01, target=value + 0.05).score == 0.0
    assert grade(data, path, baseline=0.0, target=value - 0.01).score == 1.0


def test_primary_metric_can_be_map(data: Data, tmp_path: Path) -> None:
    result = grade(data, write_scores(tmp_path / "s.csv", scored_lines(data, noisy)), metric="map")
    assert result.score == pytest.approx(result.metrics["map"])
    assert {"map_ci_low", "map_ci_high", "baseline_map"} <= set(result.metrics)


def test_metrics_are_mlflow_safe_and_per_query_file_is_written(data: Data, tmp_path: Path) -> None:
    result = grade(data, write_scores(tmp_path / "s.csv", scored_lines(data, noisy)))
    assert all(MLFLOW_SAFE.match(k) and math.isfinite(v) for k, v in result.metrics.items())
    with (data.root / "artifacts" / "ndcg_per_query.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 40
    assert np.mean([float(r["ndcg_at_10"]) for r in table]) == pytest.approx(result.metrics["ndcg_at_10"],
                                                                              abs=1e-5)


def test_args_are_validated() -> None:
    assert make_grader(metric="ndcg@5").args.k == 5
    assert make_grader(metric="ndcg", k=3).args.metric_key == "ndcg_at_3"
    for bad in ({"metric": "ndcg@5", "k": 10}, {"metric": "p@10"}, {"baseline": 0.5, "target": 0.4},
                {"unknown": 1}, {"predictions": "../x.csv"}, {"metric": "ndcg@0"}):
        with pytest.raises(ValidationError):
            make_grader(**bad)


def test_spec_errors_name_the_problem(data: Data, tmp_path: Path) -> None:
    path = write_scores(tmp_path / "s.csv", scored_lines(data, noisy))
    with pytest.raises(SpecError, match="no hidden data set 'labels'"):
        grade(data, path, labels="labels")
    with pytest.raises(SpecError, match="baseline_feature 'tfidf'"):
        grade(data, path, baseline_feature="tfidf")


def test_bootstrap_interval_agrees_with_scipy() -> None:
    values = np.random.default_rng(3).beta(2, 3, size=300)
    ours = bootstrap_ci(values, resamples=20_000, seed=1)
    theirs = stats.bootstrap((values,), np.mean, n_resamples=20_000, method="percentile",
                             random_state=np.random.default_rng(2)).confidence_interval
    assert ours.low == pytest.approx(theirs.low, abs=0.003)
    assert ours.high == pytest.approx(theirs.high, abs=0.003)
    assert bootstrap_ci(values, resamples=500, seed=1) == bootstrap_ci(values, resamples=500, seed=1)
    with pytest.raises(ValueError):
        paired_bootstrap_ci(values, values[:-1], resamples=100, seed=0)


# -- the gain share over the reference ranking, with the oracle's figures from calibration.json --

def write_calibration(data: Data, *, oracle: float, bm25: float | None = None, **extra) -> None:
    bm25_run: dict[str, dict[str, float]] = {}
    for q, d, _, b in data.rows:
        bm25_run.setdefault(q, {})[d] = b
    figures = {"bm25": trec_mean(data, bm25_run) if bm25 is None else bm25, "oracle": oracle}
    content = {"ndcg_at_10": figures, **extra}
    (data.root / "test_labels" / "calibration.json").write_text(json.dumps(content))


def test_gain_share_is_the_share_of_the_oracles_gain_over_bm25(data: Data, tmp_path: Path) -> None:
    write_calibration(data, oracle=0.99)
    def better(label: int, bm25: float) -> float:
        return round(label + math.sin(bm25 * 7.0) * 1.2, 3)  # less noisy than bm25, still imperfect

    scores = write_scores(tmp_path / "s.csv", scored_lines(data, better))
    run: dict[str, dict[str, float]] = {}
    bm25_run: dict[str, dict[str, float]] = {}
    for q, d, label, b in data.rows:
        run.setdefault(q, {})[d] = better(label, b)
        bm25_run.setdefault(q, {})[d] = b
    ndcg, bm25 = trec_mean(data, run), trec_mean(data, bm25_run)  # trec_eval, by hand below
    expected = (ndcg - bm25) / (0.99 - bm25)
    assert 0.2 < expected < 0.9
    plain = grade(data, scores, calibration="calibration.json", baseline=0.2, target=0.99)
    assert plain.metrics["ndcg_gain_share"] == pytest.approx(expected)
    assert plain.metrics["oracle_ndcg_at_10"] == 0.99
    assert plain.score == pytest.approx((ndcg - 0.2) / 0.79)  # scale: metric, as before
    shared = grade(data, scores, calibration="calibration.json", scale="gain_share", baseline=-0.1,
                   target=1.0)
    assert shared.score == pytest.approx((expected + 0.1) / 1.1)
    assert f"{expected:.0%} of the gain over bm25 of the oracle" in shared.explanation
    assert "ndcg_gain_share" not in grade(data, scores).metrics  # no calibration, no share


@pytest.mark.parametrize("content, error, match", [
    ("{not json", HarnessError, "cannot read the ranking calibration"),
    ('["a list"]', HarnessError, "not a JSON object"),
    ('{"map": {"bm25": 0.5, "oracle": 0.9}}', SpecError, "no 'bm25' and 'oracle' figures for 'ndcg_at_10'"),
    ('{"ndcg_at_10": {"bm25": 0.5, "oracle": "high"}}', HarnessError, "must be a finite number"),
    ('{"ndcg_at_10": {"bm25": 0.5, "oracle": NaN}}', HarnessError, "must be a finite number"),
])
def test_a_bad_calibration_file_is_never_a_candidates_zero(data: Data, tmp_path: Path, content: str,
                                                           error: type, match: str) -> None:
    (data.root / "test_labels" / "calibration.json").write_text(content)
    scores = write_scores(tmp_path / "s.csv", scored_lines(data, noisy))
    with pytest.raises(error, match=re.escape(match)):
        grade(data, scores, calibration="calibration.json", scale="gain_share", baseline=-0.1, target=1.0)


def test_a_calibration_of_other_data_is_refused(data: Data, tmp_path: Path) -> None:
    scores = write_scores(tmp_path / "s.csv", scored_lines(data, noisy))
    write_calibration(data, oracle=0.99, bm25=0.3)  # not what ranking these test rows by bm25 gives
    with pytest.raises(HarnessError, match="belongs to other data"):
        grade(data, scores, calibration="calibration.json")
    write_calibration(data, oracle=0.0)  # an oracle below bm25 is no scale
    with pytest.raises(HarnessError, match="must rank better than bm25"):
        grade(data, scores, calibration="calibration.json")


def test_gain_share_scale_needs_a_calibration_and_metric_scale_a_metric_value() -> None:
    with pytest.raises(ValidationError, match="needs a calibration file"):
        make_grader(scale="gain_share", baseline=-0.1)
    with pytest.raises(ValidationError, match="cannot be negative"):
        make_grader(baseline=-0.1)
    with pytest.raises(ValidationError, match="plain file name"):
        make_grader(calibration="../calibration.json")
