"""`ab_gated`: engineering criteria count only as far as the A/B analysis did the task.

The inner grader here is the real `completion` grader with every stage ok (score 1 by itself),
so each score below is the gate's share alone, worked out by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.core.grading import GRADERS, GradingContext, OutputFile

RUNS = ["no_effect", "clear_win", "srm"]


def gated(**extra):
    cls = GRADERS.get("ab_gated")
    args = cls.Args(**{"grader": "completion", "args": {"stages": ["analyze/srm"]}, "runs": RUNS, **extra})
    return cls(name="code_quality", weight=1.5, args=args, group="engineering")


def ctx(tmp: Path, docs: dict[str, object]) -> GradingContext:
    outputs = {}
    for run, doc in docs.items():
        if isinstance(doc, str):  # the pipeline's problem: no file
            outputs[f"{run}/answers.json"] = OutputFile("answers.json", None, doc)
            continue
        path = tmp / run / "answers.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
        outputs[f"{run}/answers.json"] = OutputFile("answers.json", path)
    return GradingContext(submission_dir=tmp, outputs=outputs, hidden={}, visible={}, assignment_dir=tmp,
                          artifacts_dir=tmp / "a", stage_statuses={"analyze/srm": "ok"})


def test_answers_that_follow_the_data_keep_the_inner_score(tmp_path: Path) -> None:
    r = gated().grade(ctx(tmp_path, {run: {"decision": run} for run in RUNS}))
    assert r.score == 1 and r.metrics["gate.share"] == 1 and r.grader == "ab_gated"


def test_one_answers_document_everywhere_earns_nothing(tmp_path: Path) -> None:
    r = gated().grade(ctx(tmp_path, dict.fromkeys(RUNS, {"decision": "ship", "srm": {"p_value": 0.5}})))
    assert r.score == 0 and r.metrics["ungated_score"] == 1
    assert "same answers.json on every hidden run" in r.explanation


def test_a_crashed_analysis_earns_nothing_and_one_crash_costs_a_third(tmp_path: Path) -> None:
    crashed = "not produced: stage analyze on run srm: error: exited with code 1"
    assert gated().grade(ctx(tmp_path, dict.fromkeys(RUNS, crashed))).score == 0
    assert gated().grade(ctx(tmp_path / "none", {})).score == 0  # nothing collected at all
    r = gated().grade(ctx(tmp_path / "one", {"no_effect": {"d": 1}, "clear_win": {"d": 2}, "srm": crashed}))
    assert r.score == pytest.approx(2 / 3) and "runs srm" in r.explanation
    bad_json = tmp_path / "bad" / "srm" / "answers.json"
    bad_json.parent.mkdir(parents=True)
    bad_json.write_text("{not json")
    c = ctx(tmp_path / "bad", {"no_effect": {"d": 1}, "clear_win": {"d": 2}})
    c.outputs["srm/answers.json"] = OutputFile("answers.json", bad_json)
    assert gated().grade(c).score == pytest.approx(2 / 3)


@pytest.mark.parametrize(("extra", "message"), [
    ({"grader": "no_such_grader"}, "no_such_grader"),
    ({"args": {"stages": 3}}, "args of completion"),
    ({"grader": "ab_gated"}, "cannot wrap itself"),
    ({"runs": ["srm"]}, "at least 2"),
])
def test_spec_errors_name_the_inner_grader_or_argument(extra: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        gated(**extra)
