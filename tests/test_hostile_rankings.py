"""The ranker's scores reader and the `ranking` grader, fed every extreme a candidate's scores.csv can hold.

Every line lands in one class (graders/ranking/_io.py), every file becomes a score with an explanation,
and no damage can earn more than scoring the damaged rows honestly at the bottom would: hypothesis
generates files, hand-written cases pin each extreme.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graders.ranking._io as ranking_io
from graders.ranking._io import PROBLEMS, read_predictions
from graders.ranking.grader import RankingGrader
from harness.core import GradingContext, OutputFile
from tests.hostile import assert_defined

HEADER = "query_id,doc_id,score"
# (query, doc, label, bm25): four queries, one without a relevant document
ROWS = [(f"q{q}", f"d{q}{d:02d}", label, float((d * 7 + q) % 5))
        for q in range(4) for d, label in enumerate([0, 1, 2, 0, 3, 0] if q != 3 else [0] * 6)]
KEYS = frozenset((q, d) for q, d, _, _ in ROWS)
BAD_SCORES = ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400", "1" * 5000, "", " ", "abc", "0x10",
              "True", "1,5", "\x00", "1\x00", "\ufeff1", "1e", "--1"]
EXTREME_IDS = ["", " ", "q0 ", "Q0", "1e3", "0", "-1", "x" * 4000, "\x00", '"', "q0\x1b[2J", "\ud7ff",
               "9" * 5000]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_COUNTER = itertools.count()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ranking")
    for name, header, pick in (
            ("test/test.csv", ["query_id", "doc_id", "bm25"], lambda r: [r[0], r[1], r[3]]),
            ("test_labels/qrels.csv", ["query_id", "doc_id", "label"], lambda r: r[:3])):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        with (root / name).open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(pick(r) for r in ROWS)
    return root


def grade(root: Path, content: bytes | None):
    """The grader (bm25 baseline, NDCG@3 from 0.2 to 0.9) on `content` as scores.csv."""
    path = None
    if content is not None:
        path = root / "scores" / f"{next(_COUNTER)}.csv"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
    ctx = GradingContext(submission_dir=root, assignment_dir=root, artifacts_dir=root / "artifacts",
                         outputs={"scores.csv": OutputFile("scores.csv", path, "not produced: timeout")},
                         hidden={"test_labels": root / "test_labels"}, visible={"test": root / "test"})
    args = RankingGrader.Args(labels="test_labels", queries="test", metric="ndcg@3", baseline=0.2, target=0.9,
                              bootstrap=200)
    return assert_defined(RankingGrader(name="ndcg", weight=1.0, args=args).grade(ctx))


def csv_bytes(lines: list[str], header: str = HEADER) -> bytes:
    return ("\n".join([header, *lines]) + "\n").encode("utf-8", "surrogatepass")


def by_label(scale: float = 1.0) -> list[str]:
    return [f"{q},{d},{label * scale}" for q, d, label, _ in ROWS]


# --- whole files ----------------------------------------------------------------------------------

UNUSABLE = {
    "empty": b"",
    "bom only": b"\xef\xbb\xbf",
    "blank lines": b"\n\r\n \n" * 1000,
    "header only (zero answers)": HEADER.encode() + b"\n",
    "wrong columns": csv_bytes(by_label(), "qid,docid,relevance"),
    "missing column": csv_bytes([f"{q},{d}" for q, d, _, _ in ROWS], "query_id,doc_id"),
    "nul bytes": b"\x00" * 5000,
    "nul in header": csv_bytes(by_label(), "query_id,doc_id,score\x00"),
    "utf-16": csv_bytes(by_label()).decode().encode("utf-16"),
    "invalid utf-8": b"\xff\xfe\xfa" * 300,
    "every score NaN": csv_bytes([f"{q},{d},nan" for q, d, _, _ in ROWS]),
    "every score infinite": csv_bytes([f"{q},{d},{'-' if i % 2 else ''}inf"
                                       for i, (q, d, _, _) in enumerate(ROWS)]),
    "every score overflows": csv_bytes([f"{q},{d},1e400" for q, d, _, _ in ROWS]),
    "every score a 5000-digit integer": csv_bytes([f"{q},{d},{'9' * 5000}" for q, d, _, _ in ROWS]),
    "every id unknown": csv_bytes([f"{q}x,{d},{label}" for q, d, label, _ in ROWS]),
    "a header line too long": csv_bytes(by_label(), HEADER + "," * 5000),
    "carriage returns only": csv_bytes(by_label()).replace(b"\n", b"\r"),
}


@pytest.mark.parametrize("content", list(UNUSABLE.values()), ids=list(UNUSABLE))
def test_an_unusable_file_scores_zero_with_the_reason(root: Path, content: bytes) -> None:
    result = grade(root, content)
    assert result.score == 0 and result.details["rows"]["fatal"]
    assert result.details["rows"]["fatal"][:40] in result.explanation
    assert result.metrics["rows_valid"] == 0


def test_a_missing_file_scores_zero(root: Path) -> None:
    result = grade(root, None)
    assert result.score == 0 and "timeout" in result.explanation
    assert result.metrics["rows_missing"] == len(ROWS)


def test_a_file_over_the_size_cap_is_refused_unread(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranking_io, "MAX_PREDICTION_BYTES", 1000)
    result = grade(root, csv_bytes(by_label()) + b"\n" * 1000)
    assert result.score == 0 and "larger than 1000 bytes" in result.explanation


def test_a_million_blank_lines_before_the_header_are_skipped(root: Path) -> None:
    result = grade(root, b"\n" * 1_000_000 + csv_bytes(by_label()))
    assert result.score == 1 and result.metrics["rows_valid"] == len(ROWS)


def test_every_score_tied_is_ranked_by_doc_id_as_trec_eval_does(root: Path) -> None:
    for tie in ("0", "1e308", "-1e308", "5e-324", "-0.0"):
        tied = grade(root, csv_bytes([f"{q},{d},{tie}" for q, d, _, _ in ROWS]))
        by_id = grade(root, csv_bytes([f"{q},{d},{int(d[1:])}" for q, d, _, _ in ROWS]))  # doc id descending
        assert tied.metrics["rows_valid"] == len(ROWS)
        assert tied.metrics["ndcg_at_3"] == by_id.metrics["ndcg_at_3"] and tied.score == by_id.score


def test_extreme_but_finite_scores_rank_like_any_others(root: Path) -> None:
    plain = grade(root, csv_bytes(by_label()))
    for scale in (1e300, -1e-300, 1e-320):
        scaled = grade(root, csv_bytes(by_label(scale)))
        expected = plain if scale > 0 else grade(root, csv_bytes(by_label(-1.0)))
        assert scaled.metrics["ndcg_at_3"] == expected.metrics["ndcg_at_3"], scale


@pytest.mark.parametrize("bad", BAD_SCORES, ids=[repr(b[:8]) for b in BAD_SCORES])
def test_a_bad_score_is_counted_and_ranked_last(root: Path, bad: str) -> None:
    lines = by_label()
    q, d, label, _ = next(r for r in ROWS if r[2] == 3)
    lines[lines.index(f"{q},{d},3.0")] = f"{q},{d},{bad}"
    result = grade(root, csv_bytes(lines))
    assert result.metrics["rows_valid"] == len(ROWS) - 1
    assert sum(result.metrics[f"rows_{p}"] for p in ("bad_score", "non_finite", "malformed")) == 1
    assert result.score < grade(root, csv_bytes(by_label())).score


@pytest.mark.parametrize("bad", EXTREME_IDS, ids=[repr(b[:8]) for b in EXTREME_IDS])
def test_an_extreme_id_is_an_unknown_row_not_a_crash(root: Path, bad: str) -> None:
    result = grade(root, csv_bytes([*by_label(), f"{bad},{bad},1.0", f"q0,{bad},9", f"{bad},d000,9"]))
    assert result.metrics["rows_valid"] == len(ROWS) and result.score == 1
    assert sum(result.metrics[f"rows_{p}"] for p in ("unknown_id", "malformed", "duplicate")) == 3


# --- generated ------------------------------------------------------------------------------------

known_ids = st.sampled_from(sorted(KEYS))
fields = st.one_of(st.sampled_from(BAD_SCORES + EXTREME_IDS), st.text(max_size=8),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr))
lines = st.one_of(
    st.tuples(known_ids, st.floats(allow_nan=True, allow_infinity=True).map(repr) | fields)
    .map(lambda t: f"{t[0][0]},{t[0][1]},{t[1]}"),
    st.lists(fields, max_size=5).map(",".join),
    st.text(max_size=30))


def check_counts(preds: ranking_io.Predictions) -> None:
    diag = preds.diagnostics
    assert diag.lines == diag.valid + diag.invalid_lines
    assert set(preds.scores) <= KEYS and len(preds.scores) == diag.valid
    # every test row is named first by a valid, bad_score or non_finite line, or it is missing
    assert len(KEYS) == diag.valid + sum(diag.counts[p] for p in ("bad_score", "non_finite", "missing"))
    assert bool(preds.fatal) == (not preds.scores)
    assert all(len(e) <= 80 for examples in diag.examples.values() for e in examples)
    assert set(diag.counts) == set(PROBLEMS)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300) | st.lists(lines, max_size=20).map(lambda ls: csv_bytes(ls)))
def test_read_predictions_classifies_every_line_and_never_raises(tmp_path_factory: pytest.TempPathFactory,
                                                                 raw: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / f"p{next(_COUNTER)}.csv"
    path.write_bytes(raw)
    check_counts(read_predictions(path, KEYS))


@SETTINGS
@given(rows=st.lists(lines, max_size=30))
def test_any_scores_file_gives_a_defined_result(root: Path, rows: list[str]) -> None:
    result = grade(root, csv_bytes(rows))
    assert result.metrics["rows_total"] == len(ROWS)


@SETTINGS
@given(scores=st.lists(st.integers(-50, 50), min_size=len(ROWS), max_size=len(ROWS)),
       damaged=st.sets(st.sampled_from(range(len(ROWS))), min_size=1),
       how=st.sampled_from(["drop", "nan", "inf", "1e400", "abc", "9" * 5000, "unknown", "duplicate-after"]))
def test_damaged_rows_never_beat_honest_lowest_scores(root: Path, scores: list[int], damaged: set[int],
                                                      how: str) -> None:
    honest, broken = [], []
    for i, ((q, d, _, _), score) in enumerate(zip(ROWS, scores, strict=True)):
        honest.append(f"{q},{d},{-1000 if i in damaged else score}")
        if i not in damaged:
            broken.append(f"{q},{d},{score}")
        elif how == "unknown":
            broken.append(f"{q}?,{d},1e9")
        elif how == "duplicate-after":  # a later line cannot repair the first one
            broken += [f"{q},{d},nan", f"{q},{d},1e9"]
        elif how != "drop":
            broken.append(f"{q},{d},{how}")
    honest_result, broken_result = grade(root, csv_bytes(honest)), grade(root, csv_bytes(broken))
    assert broken_result.metrics["ndcg_at_3"] <= honest_result.metrics["ndcg_at_3"] + 1e-12
    assert broken_result.metrics["map"] <= honest_result.metrics["map"] + 1e-12
    assert broken_result.metrics["mrr"] <= honest_result.metrics["mrr"] + 1e-12
    assert broken_result.score <= honest_result.score
