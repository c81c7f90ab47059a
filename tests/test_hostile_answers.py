"""The A/B-test answers.json reader and the `ab_answer` grader, fed every extreme a candidate can write.

Each extreme (a non-finite or huge number, a boolean or a container where a number belongs, a broken
or oversized file) must become a score of 0 on the field it touches, with a one-line diagnosis, and
never an exception. Hand-written cases pin the diagnosis of each extreme; hypothesis generates
documents and bytes for the rest.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graders.abtest._answers import parse_answers
from graders.abtest.grader import AbAnswerGrader
from graders.abtest.reference import DECISIONS, FIELDS
from harness.core import GradingContext, OutputFile
from harness.core.text import CONTROL
from tests.abtest_runs import materialize_runs, run_folder
from tests.hostile import HUGE_INT, OVER_DIGIT_LIMIT, RAW_EXTREMES, assert_defined, dumps, json_values

ASSIGNMENT = Path(__file__).resolve().parents[1] / "assignments" / "abtest"
RUN = "srm"
TOLERANCES = {"number": {"abs": 5e-5}, "interval": {"halfwidth": 0.05},
              "p_value": {"alpha": 0.05, "log10": 0.2, "abs": 0.02}, "exact": {}, "choice": {}}
ONE_PER_KIND = ("analysis.conversion.lift_abs", "design.conversion.sample_size_per_arm",
                "analysis.conversion.ci_abs", "analysis.conversion.p_value", "srm.detected", "decision")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_COUNTER = itertools.count()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize_runs(tmp_path_factory.mktemp("abtest"))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("answers")


def with_value(field: str, raw: bytes) -> bytes:
    """A document holding the raw JSON text `raw` at the dotted `field`, nothing else."""
    *parents, last = field.split(".")
    head = b"".join(b'{"' + part.encode() + b'": ' for part in parents)
    return head + b'{"' + last.encode() + b'": ' + raw + b"}" * (len(parents) + 1)


def grade(data: Path, scratch: Path, field: str, content: bytes | None, runs: tuple[str, ...] = (RUN,)):
    """The field's grader on `content` as every run's answers.json (None: the file was not produced).

    Each call writes to a fresh folder: the reader caches by path, size and modification time.
    """
    folder = scratch / str(next(_COUNTER))
    outputs = {}
    for run in runs:
        key = f"{run}/answers.json"
        if content is None:
            outputs[key] = OutputFile("answers.json", None, "not produced: stage analyze: timeout")
            continue
        path = folder / run / "answers.json"
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
        outputs[key] = OutputFile("answers.json", path)
    ctx = GradingContext(submission_dir=folder, outputs=outputs, hidden={}, assignment_dir=ASSIGNMENT,
                         visible={run: run_folder(data, run) for run in runs}, artifacts_dir=folder / "art")
    kind = FIELDS[field]
    args = AbAnswerGrader.Args(field=field, compare=kind, runs=list(runs), **TOLERANCES[kind])
    return AbAnswerGrader(name="crit", weight=1.0, args=args).grade(ctx)


def problem_of(result: Any) -> str:
    return result.details["runs"][RUN]["problem"]


def assert_zero_with_diagnosis(result: Any) -> str:
    assert_defined(result, max_explanation=600)
    problem = problem_of(result)
    assert result.score == 0 and result.metrics["runs_answered"] == 0, result.explanation
    assert problem and len(problem) < 200 and not CONTROL.search(problem), problem
    assert problem[:30] in result.explanation
    return problem


# --- every extreme value, in a field of each kind -------------------------------------------------

WRONG_EVERYWHERE = (*RAW_EXTREMES, b"null", b'"0.5"', b"[]", b"{}", b'{"value": 0.5}', b"[[0.1, 0.2]]")
WRONG_FOR = {
    "number": (b"true", b"false", b"[0.1, 0.2]"),
    "interval": (b"true", b"0.1", b"[0.1]", b"[0.1, 0.2, 0.3]", b"[true, false]", b"[0.1, NaN]",
                 b"[-Infinity, 0.1]", b"[0.1, 1e400]", b"[0.1, " + str(HUGE_INT).encode() + b"]",
                 b'[0.1, "0.2"]', b"[null, null]"),
    "p_value": (b"true", b"1.5", b"-0.01", b"[0.01]"),
    "exact": (b"1", b"0", b'"true"', b"[true]"),
    "choice": (b"true", b"1", b'"SHIP"', b'"ship "', b'["ship"]'),
}
CASES = [(field, raw) for field in ONE_PER_KIND for raw in (*WRONG_EVERYWHERE, *WRONG_FOR[FIELDS[field]])]


@pytest.mark.parametrize(("field", "raw"), CASES, ids=[f"{f.split('.')[-1]}={r[:24]!r}" for f, r in CASES])
def test_every_extreme_value_scores_zero_with_a_diagnosis(data: Path, scratch: Path, field: str,
                                                          raw: bytes) -> None:
    problem = assert_zero_with_diagnosis(grade(data, scratch, field, with_value(field, raw)))
    if raw not in (OVER_DIGIT_LIMIT,):  # that one refuses the whole document
        assert field.split(".")[-1] in problem, problem


@pytest.mark.parametrize("field", ["analysis.conversion.lift_abs", "design.conversion.sample_size_per_arm",
                                   "analysis.conversion.ci_abs"])
def test_an_integer_too_large_for_a_float_is_named_as_such(data: Path, scratch: Path, field: str) -> None:
    raw = str(HUGE_INT).encode()
    value = b"[0.01, " + raw + b"]" if FIELDS[field] == "interval" else raw
    problem = assert_zero_with_diagnosis(grade(data, scratch, field, with_value(field, value)))
    assert "401-digit integer" in problem and "not a finite number" in problem, problem
    assert problem.startswith(field), problem


def test_an_integer_beyond_pythons_digit_limit_is_explained_without_python_advice(data: Path,
                                                                                  scratch: Path) -> None:
    result = grade(data, scratch, "analysis.conversion.p_value",
                   with_value("analysis.conversion.p_value", OVER_DIGIT_LIMIT))
    problem = assert_zero_with_diagnosis(result)
    assert "more than 4300 digits" in problem and "set_int_max_str_digits" not in problem, problem


@pytest.mark.parametrize("key", [b'"\\u001f"', b'"\\ud800"', b'"\\u202e"', b'"' + b"k" * 5000 + b'"'])
def test_keys_inside_a_value_are_quoted_in_the_diagnosis(data: Path, scratch: Path, key: bytes) -> None:
    # found by hypothesis: the path to a NaN inside a value spelled the candidate's key as is, so a
    # control character reached the explanation, and a lone surrogate made result.json unwritable
    raw = b"{" + key + b": {" + key + b": NaN}}"
    problem = assert_zero_with_diagnosis(grade(data, scratch, "decision", with_value("decision", raw)))
    assert problem.startswith("decision[") and "NaN is not a JSON number" in problem, problem


def test_a_far_off_number_is_explained_in_one_short_line(data: Path, scratch: Path) -> None:
    for raw in (b"1e300", b"-1.7e308", b"1.7e308"):
        result = grade(data, scratch, "analysis.conversion.lift_abs",
                       with_value("analysis.conversion.lift_abs", raw))
        assert_defined(result, max_explanation=300)
        assert result.score == 0 and "x the tolerance" in result.explanation, result.explanation


# --- whole files ----------------------------------------------------------------------------------

GOOD = with_value("decision", b'"inconclusive"')
FILES = {
    "empty": b"",
    "whitespace": b" \n\t ",
    "bom": b"\xef\xbb\xbf" + GOOD,
    "utf16": GOOD.decode().encode("utf-16"),
    "invalid utf8": b'{"decision": "\xc3\x28"}',
    "nul bytes": b'{"decision"\x00: "ship"}',
    "zero answers": b"{}",
    "top-level null": b"null",
    "top-level string": b'"inconclusive"',
    "top-level number": b"NaN",
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "deep object": b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
    "33 levels": b'{"decision": "ship", "x": ' + b"[" * 33 + b"]" * 33 + b"}",
    "over the size cap": GOOD + b" " * (64 << 10),
    "repeated key": b'{"decision": "inconclusive", "decision": "inconclusive"}',
    "truncated": GOOD[:-1],
    "trailing garbage": GOOD + b"garbage",
    "two documents": GOOD + GOOD,
}


@pytest.mark.parametrize("content", list(FILES.values()), ids=list(FILES))
def test_an_unusable_file_scores_zero_with_a_diagnosis(data: Path, scratch: Path, content: bytes) -> None:
    assert_zero_with_diagnosis(grade(data, scratch, "decision", content))


def test_a_missing_file_on_every_run_scores_zero(data: Path, scratch: Path) -> None:
    result = grade(data, scratch, "decision", None, runs=("no_effect", "clear_win", "srm"))
    assert_defined(result)
    assert result.score == 0 and "timeout" in result.explanation


# --- generated ------------------------------------------------------------------------------------

def acceptable(value: Any, field: str) -> bool:
    """Whether `value` is a well-formed answer for `field` (the only kind that may earn credit)."""
    def finite(x: Any) -> bool:
        if isinstance(x, bool) or not isinstance(x, int | float):
            return False
        try:
            return math.isfinite(float(x))
        except OverflowError:
            return False

    kind = FIELDS[field]
    if kind == "interval":
        return isinstance(value, list) and len(value) == 2 and all(finite(x) for x in value)
    if kind == "exact":
        return isinstance(value, bool)
    if kind == "choice":
        return value in DECISIONS
    if not finite(value):
        return False
    if kind == "p_value":
        return 0 <= value <= 1
    return not field.startswith("design.") or (float(value).is_integer() and value >= 1)


@SETTINGS
@given(field=st.sampled_from(sorted(FIELDS)), value=json_values)
def test_any_value_in_any_field_gives_a_defined_result(data: Path, scratch: Path, field: str,
                                                       value: Any) -> None:
    try:
        content = with_value(field, dumps(value))
    except ValueError:  # an integer json.dumps will not write
        return
    result = assert_defined(grade(data, scratch, field, content), max_explanation=600)
    if not acceptable(value, field):
        assert result.score == 0 and problem_of(result), (value, result.explanation)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode)
       | st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b",", b":", b'"a"', b'"decision"', b"1",
                                   b"-", b"e400", *RAW_EXTREMES]), max_size=30).map(b"".join))
def test_parse_answers_never_raises(raw: bytes) -> None:
    answers = parse_answers(raw)
    assert (answers.data is None) == bool(answers.problem)
    if answers.data is None:
        assert len(answers.problem) < 200 and not CONTROL.search(answers.problem), answers.problem
    else:
        assert isinstance(answers.data, dict)


def yaml_graders() -> list[AbAnswerGrader]:
    raw = yaml.safe_load((ASSIGNMENT / "assignment.yaml").read_text())
    return [AbAnswerGrader(name=g["name"], weight=g["weight"], args=AbAnswerGrader.Args(**g["args"]))
            for g in raw["graders"] if g["grader"] == "ab_answer"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(st.dictionaries(st.sampled_from(["design", "analysis", "srm", "decision", "x"]),
                                     json_values, max_size=5), min_size=3, max_size=3))
def test_every_grader_of_the_assignment_survives_generated_documents(data: Path, scratch: Path,
                                                                     docs: list[dict[str, Any]]) -> None:
    folder = scratch / str(next(_COUNTER))
    outputs = {}
    for run, doc in zip(("no_effect", "clear_win", "srm"), docs, strict=True):
        path = folder / run / "answers.json"
        path.parent.mkdir(parents=True)
        try:
            path.write_bytes(dumps(doc))
        except ValueError:
            path.write_bytes(json.dumps(str(doc)[:100]).encode())
        outputs[f"{run}/answers.json"] = OutputFile("answers.json", path)
    ctx = GradingContext(submission_dir=folder, outputs=outputs, hidden={}, assignment_dir=ASSIGNMENT,
                         visible={run: run_folder(data, run) for run in ("no_effect", "clear_win", "srm")},
                         artifacts_dir=folder / "art")
    for grader in yaml_graders():
        assert_defined(grader.grade(ctx))
