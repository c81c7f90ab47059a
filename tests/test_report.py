"""The Markdown report, checked by parsing it with markdown-it-py (a CommonMark parser, GFM tables on).

Parsing, rather than searching the text, is what shows that candidate-controlled text cannot
break the document: tables keep their columns and the log fence keeps the log inside it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from harness.core.grading import CriterionResult
from harness.report import LOG_TAIL_LINES, render_report
from harness.results import StageRecord, Status, SubmissionResult

EVIL = "eve | ```` <b>x</b> *y* [z](http://a) `q`"  # a candidate name made to break Markdown


def parse(text: str) -> list[Token]:
    return MarkdownIt("commonmark").enable("table").parse(text)


def plain(token: Token) -> str:
    """The text a reader sees in an inline token."""
    return "".join(c.content for c in token.children or [] if c.type in ("text", "code_inline"))


def tables(tokens: list[Token]) -> list[list[list[str]]]:
    """Every table as rows of plain cell texts (header row first)."""
    found: list[list[list[str]]] = []
    inside = False
    for token in tokens:
        if token.type in ("table_open", "table_close"):
            inside = token.type == "table_open"
            found += [[]] if inside else []
        elif inside and token.type == "tr_open":
            found[-1].append([])
        elif inside and token.type == "inline":
            found[-1][-1].append(plain(token))
    return found


def table_with(tokens: list[Token], header: str) -> list[list[str]]:
    return next(t for t in tables(tokens) if t[0][0] == header)


def make_result(**overrides) -> SubmissionResult:
    ndcg = CriterionResult(
        name="ndcg", grader="ranking", grader_version="1", score=0.75, weight=3,
        metrics={"ndcg_at_10": 0.62, "ndcg_at_10_ci_low": 0.58, "ndcg_at_10_ci_high": 0.66,
                 "baseline_ndcg_at_10": 0.51, "delta_vs_baseline": 0.11, "delta_ci_low": 0.04,
                 "delta_ci_high": 0.18, "rows_total": 120.0},
        explanation="NDCG@10 0.620 against 0.510 | for bm25.",
        details={"rows": {"test_rows": 120, "fatal": None,
                          "problems": {"duplicate": {"count": 40,
                                                     "examples": [f"q{i},`d1`,```x|y" for i in range(40)]}}},
                 "queries": {"worst": [{"query_id": "q3", "ndcg": 0.1}]}})
    style = CriterionResult(name="style", grader="lint", grader_version="2", score=0.5, weight=1,
                            metrics={"warnings": 12.0}, explanation="Twelve lint warnings.")
    fields = dict(
        key="0" * 32, assignment="ranker", assignment_version="1.0.0", submission="/subs/eve.zip",
        submission_id="eve|1", candidate=EVIL, content_hash="sha256:feed", commit="abc123",
        status=Status.ERROR,
        total_score=68.75, message="stage predict: error: exit 1", criteria=[ndcg, style],
        stages=[StageRecord(name="train", status="ok", exit_code=0, seconds=2.5, peak_memory_bytes=96 << 20,
                            log_file="logs/train.log"),
                StageRecord(name="predict", status="error", exit_code=1, seconds=0.7,
                            log_file="logs/predict.log", detail="exit | 1")],
        harness_version="0.1.0", backend="docker", duration_s=4.0, artifacts={"report": "report.md"})
    return SubmissionResult(**(fields | overrides))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "train.log").write_text("train fine\n")
    lines = [f"line {i} ``` | <script>" if i % 2 else "```" * (i % 3 + 1) for i in range(100)]
    lines.append("\x1b[31mTraceback: boom\x1b[0m")
    (tmp_path / "logs" / "predict.log").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_header_and_criteria(folder: Path) -> None:
    text = render_report(make_result(), folder)
    tokens = parse(text)
    assert tokens[0].type == "heading_open" and plain(tokens[1]) == f"Grading report: {EVIL}"
    header = dict(table_with(tokens, "Field")[1:])
    assert header["Candidate"] == EVIL  # escaped, yet shown exactly as written
    assert header["Submission id"] == "eve|1"
    assert header["Content hash"] == "sha256:feed" and header["Assignment"] == "ranker@1.0.0"
    assert "68.75" in header["Total score"] and header["Status"] == "error"
    criteria = table_with(tokens, "Criterion")
    assert all(len(row) == 5 for row in criteria)
    assert criteria[1] == ["ndcg", "ranking v1", "0.750", "3", "NDCG@10 0.620 against 0.510 | for bm25."]
    assert criteria[2][4] == "Twelve lint warnings."


def test_key_metrics_carry_their_intervals(folder: Path) -> None:
    rows = {row[0]: row[1:] for row in table_with(parse(render_report(make_result(), folder)), "Metric")}
    value, interval = rows["ndcg_at_10"]
    assert "0.62" in value and "0.58" in interval and "0.66" in interval
    value, interval = rows["delta_vs_baseline"]
    assert value.startswith("+0.11") and "+0.04" in interval and "+0.18" in interval
    assert "baseline_ndcg_at_10" in rows
    assert "ndcg_at_10_ci_low" not in rows  # shown as the interval, not as a metric of its own


def test_problems_are_listed_and_capped(folder: Path) -> None:
    text = render_report(make_result(), folder)
    assert "**Problems found**" in text
    problems = text.split("**Problems found**")[1].split("**Details**")[0]
    shown = [c for t in parse(problems) if t.type == "inline" for c in t.children if c.type == "code_inline"]
    assert 0 < len(shown) < 40
    assert shown[0].content == "q0,`d1`,```x|y"  # the example survives its backticks


def test_failed_stage_shows_the_log_tail_in_one_fence(folder: Path) -> None:
    tokens = parse(render_report(make_result(), folder))
    fences = [t for t in tokens if t.type == "fence"]
    assert len(fences) == 1
    written = (folder / "logs" / "predict.log").read_text().splitlines()
    expected = written[-LOG_TAIL_LINES:-1] + ["Traceback: boom"]  # terminal colour codes removed
    assert fences[0].content.splitlines() == expected
    after = tokens[tokens.index(fences[0]) + 1:]
    assert any(t.type == "heading_open" for t in after)  # the document goes on after the log
    stages = table_with(tokens, "Stage")
    assert all(len(row) == 6 for row in stages)
    assert stages[2][:3] == ["predict", "error", "1"] and stages[2][5] == "exit | 1"
    assert stages[1][4] == "96.0"  # MiB


def test_no_folder_or_escaping_log_path_shows_no_log(folder: Path, tmp_path_factory) -> None:
    assert "No log available" in render_report(make_result())
    outside = tmp_path_factory.mktemp("outside") / "secret.log"
    outside.write_text("TOP SECRET\n")
    stages = [StageRecord(name="predict", status="error", exit_code=1, log_file=f"../{outside.parent.name}/"
                          "secret.log")]
    text = render_report(make_result(stages=stages), folder)
    assert "TOP SECRET" not in text and "outside the result folder" in text


def test_rendering_is_deterministic(folder: Path) -> None:
    result = make_result()
    assert render_report(result, folder) == render_report(result.model_copy(deep=True), folder)


def test_ungraded_result_renders(folder: Path) -> None:
    result = make_result(status=Status.INFRA_ERROR, total_score=None, criteria=[], stages=[])
    text = render_report(result, folder)
    assert "ungraded" in text and "No criterion was graded" in text


def test_the_graders_plots_are_shown_in_place_and_only_plain_paths_are_linked(folder: Path) -> None:
    artifacts = {"latency.png": "artifacts/latency/latency.png",
                 "capacity.png": "artifacts/capacity/capacity.png", "log": "logs/train.log",
                 "odd": "artifacts/x/a](javascript:alert(1)).png",
                 "up": "artifacts/../../etc/x.png", "report": "report.md"}
    tokens = parse(render_report(make_result(artifacts=artifacts), folder))
    images = [(child.attrs["src"], child.content) for token in tokens if token.type == "inline"
              for child in token.children or [] if child.type == "image"]
    # markdown-it parses the images back: the two plots, relative to report.md, nothing else
    assert images == [("artifacts/capacity/capacity.png", "capacity"),
                      ("artifacts/latency/latency.png", "latency")]
