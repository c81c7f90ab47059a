"""The test-stage report readers (JUnit XML, coverage.py JSON) and their graders, and `completion`, fed
every extreme a candidate's process can leave in /output: a refused or unreadable report is a
ReportError that the graders turn into 0 with the reason, never another exception, and no report
can earn credit for tests or code that are not there. Hypothesis generates reports; hand-written
cases pin each extreme.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graders.testsuite._junit as junit_io
from graders.completion import CompletionGrader
from graders.testsuite._junit import ReportError, read_coverage, read_junit
from graders.testsuite.grader import CoverageGrader, HiddenTestsGrader, PassRateGrader
from harness.core import GradingContext, OutputFile
from harness.spec import load_assignment
from tests.hostile import HUGE_INT, OVER_DIGIT_LIMIT, assert_defined, dumps, json_values

FIXTURE = Path(__file__).parent / "fixtures" / "assignments" / "testsuite"
SUBMISSION = FIXTURE / "submissions" / "honest"
SOURCES = {p.relative_to(SUBMISSION).as_posix() for p in SUBMISSION.rglob("*.py")}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_COUNTER = itertools.count()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


def put(scratch: Path, name: str, content: bytes) -> Path:
    path = scratch / str(next(_COUNTER)) / name
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


def built(cls, **args):
    grader = cls(name="c", weight=1.0, args=cls.Args.model_validate(args))
    grader.check_spec(load_assignment(FIXTURE).spec)
    grader.check_files(FIXTURE)
    return grader


def context(scratch: Path, stage: str, **files: Path | None) -> GradingContext:
    outputs = {f"{stage}.{name.replace('_', '.')}": OutputFile(name, path, "" if path else "missing")
               for name, path in files.items()}
    return GradingContext(submission_dir=SUBMISSION, outputs=outputs, hidden={}, visible={},
                          assignment_dir=FIXTURE, artifacts_dir=scratch / "artifacts",
                          stage_statuses={stage: "ok"}, stages=("run", "tests", "hidden_tests"))


def junit(*cases: str, suite: str = "") -> bytes:
    body = f'<testsuites><testsuite {suite}>{"".join(cases)}</testsuite></testsuites>'
    return ('<?xml version="1.0"?>' + body).encode()


def case(classname: str, name: str, child: str = "") -> str:
    return f"<testcase classname={quoteattr(classname)} name={quoteattr(name)}>{child}</testcase>"


GOOD_JUNIT = junit(case("tests.test_calc", "test_mean"))
GOOD_COVERAGE = json.dumps({"files": {"calc.py": {"summary": {"num_statements": 10,
                                                             "covered_lines": 5}}}}).encode()


def all_graders(scratch: Path, junit_path: Path | None, coverage_path: Path | None) -> list:
    own = context(scratch, "tests", junit_xml=junit_path, coverage_json=coverage_path)
    hidden = context(scratch, "hidden_tests", junit_xml=junit_path)
    return [assert_defined(built(PassRateGrader, stage="tests").grade(own)),
            assert_defined(built(CoverageGrader, stage="tests").grade(own)),
            assert_defined(built(HiddenTestsGrader, stage="hidden_tests").grade(hidden))]


# --- JUnit XML ------------------------------------------------------------------------------------

LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY a "aaaaaaaaaa">'
          + b"".join(b'<!ENTITY %c "&%c;&%c;&%c;&%c;&%c;&%c;&%c;&%c;&%c;&%c;">' % ((c,) + (c - 1,) * 10)
                     for c in range(ord("b"), ord("k")))
          + b']><testsuites><testsuite><testcase name="&j;"/></testsuite></testsuites>')
REFUSED_JUNIT = {
    "empty": b"",
    "whitespace": b"  \n",
    "not xml": b"PASSED 12 tests",
    "nul byte": GOOD_JUNIT.replace(b"<testsuite ", b"<testsuite\x00 "),
    "invalid utf-8": GOOD_JUNIT.replace(b"test_mean", b"test_\xff"),
    "utf-16": GOOD_JUNIT.decode().encode("utf-16"),
    "billion laughs": LAUGHS,
    "external entity": b'<!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/passwd">]><testcase name="&x;"/>',
    "parameter entity": b'<!DOCTYPE t [<!ENTITY % p SYSTEM "http://127.0.0.1/x">%p;]><testcase/>',
    "lower-case doctype": b"<!doctype t><testcase/>",
    "undefined entity": b'<testsuites><testcase name="&lol;"/></testsuites>',
    "invalid character reference": b'<testsuites><testcase name="&#0;"/></testsuites>',
    "surrogate reference": b'<testsuites><testcase name="&#xD800;"/></testsuites>',
    "unclosed": b"<testsuites>" * 100_000,
    "two roots": GOOD_JUNIT + GOOD_JUNIT.split(b"?>", 1)[1],
}


@pytest.mark.parametrize("content", list(REFUSED_JUNIT.values()), ids=list(REFUSED_JUNIT))
def test_a_refused_junit_report_scores_zero_with_the_reason(scratch: Path, content: bytes) -> None:
    path = put(scratch, "junit.xml", content)
    with pytest.raises(ReportError):
        read_junit(path)
    for result in all_graders(scratch, path, put(scratch, "coverage.json", GOOD_COVERAGE)):
        assert result.score == 0 and "JUnit report" in result.explanation, result.explanation


def test_too_many_test_cases_is_refused(scratch: Path) -> None:
    path = put(scratch, "junit.xml", junit(*[case("t", f"test_{i}") for i in range(junit_io.MAX_CASES + 1)]))
    with pytest.raises(ReportError, match="more than"):
        read_junit(path)


def test_a_report_over_the_size_cap_is_refused_unread(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(junit_io, "MAX_REPORT_BYTES", 1000)
    big = put(scratch, "junit.xml", junit(*[case("t", f"test_{i}") for i in range(100)]))
    with pytest.raises(ReportError, match="larger than"):
        read_junit(big)
    with pytest.raises(ReportError, match="larger than"):
        read_coverage(put(scratch, "coverage.json", GOOD_COVERAGE + b" " * 1000), SUBMISSION)


def test_extreme_but_wellformed_junit_is_read_within_bounds(scratch: Path) -> None:
    huge = "x" * (1 << 20)
    deep = "<x>" * 100_000 + "</x>" * 100_000
    report = junit(case("tests.test_calc", "test_a\u202e\u200b", f'<failure message="{huge}"/>'),
                   case(huge, huge), case("", ""), case("tests.test_calc", "test_c", deep),
                   case("tests.test_calc", "test_d", "<skipped/><error/>"),
                   suite='tests="-5" failures="1000000000" errors="NaN" skipped="1e400"')
    cases = read_junit(put(scratch, "junit.xml", report))
    assert [c.outcome for c in cases] == ["failed", "passed", "passed", "passed", "error"]
    assert all(len(c.message) <= 300 and len(c.name) <= 300 and len(c.module) <= 200 for c in cases)
    assert cases[0].name == "test_a"  # the bidi override and zero-width space are gone
    rate = all_graders(scratch, put(scratch, "junit.xml", report), None)[0]
    assert rate.metrics["tests"] == 5 and rate.score == pytest.approx(3 / 5)  # counted, not as claimed


def test_claimed_counts_without_test_cases_earn_nothing(scratch: Path) -> None:
    report = put(scratch, "junit.xml", junit(suite='tests="1000000000" failures="0"'))
    rate, coverage, hidden = all_graders(scratch, report, put(scratch, "coverage.json", GOOD_COVERAGE))
    assert rate.score == coverage.score == hidden.score == 0
    assert "No tests" in rate.explanation and "no tests" in coverage.explanation


names = st.text(max_size=20).map(lambda s: s.replace("\x00", ""))
children = st.lists(st.sampled_from(["<failure/>", "<error/>", "<skipped/>", '<failure message="m"/>',
                                     "<system-out>x</system-out>", "<properties/>"]), max_size=3).map("".join)
test_cases = st.tuples(names | st.sampled_from(["test_calc", "test_calc.TestEmpty", "tests.test_calc"]),
                       names | st.sampled_from(["test_mean", "test_median_odd", "test_mean[a]"]),
                       children)


def xml_safe(text: str) -> str:
    """`text` without the characters XML 1.0 cannot hold (and without astral ones, for simplicity)."""
    return "".join(ch for ch in text if ch in "\t\n\r" or " " <= ch <= "\ud7ff" or "\ue000" <= ch <= "\ufffd")


@SETTINGS
@given(cases=st.lists(test_cases, max_size=8), suite=st.text(max_size=20))
def test_any_junit_report_gives_defined_results(scratch: Path, cases: list[tuple[str, str, str]],
                                                suite: str) -> None:
    body = junit(*[case(xml_safe(c), xml_safe(n), child) for c, n, child in cases],
                 suite=f"name={quoteattr(xml_safe(suite))}")
    path = put(scratch, "junit.xml", body)
    assert len(read_junit(path)) == len(cases)
    rate, _coverage, hidden = all_graders(scratch, path, put(scratch, "coverage.json", GOOD_COVERAGE))
    passed = sum(1 for _, _, child in cases if not child.replace("<system-out>x</system-out>", "")
                 .replace("<properties/>", ""))
    assert rate.metrics.get("passed", 0) == passed
    assert hidden.metrics["points"] <= passed  # a point at most per passing case


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300) | st.lists(st.sampled_from([
    b"<testsuites>", b"</testsuites>", b"<testcase", b' name="a"', b"/>", b">", b"</testcase>", b"<failure/>",
    b"<!DOCTYPE x>", b"<!ENTITY", b"&amp;", b"&#0;", b"<![CDATA[", b"]]>", b"<?xml", b"?>", b"\xff",
    b"\x00", b"<"]), max_size=20).map(b"".join))
def test_read_junit_raises_only_report_errors(scratch: Path, raw: bytes) -> None:
    try:
        read_junit(put(scratch, "junit.xml", raw))
    except ReportError as exc:
        assert str(exc)


# --- coverage.py JSON -----------------------------------------------------------------------------

def summary(statements: object, covered: object) -> bytes:
    return entry("calc.py", {"summary": {"num_statements": statements, "covered_lines": covered}})


def entry(name: str, value: object) -> bytes:
    return dumps({"files": {name: value}})


ODD_COVERAGE = {
    "nan": b'{"files": {"calc.py": {"summary": {"num_statements": NaN, "covered_lines": NaN}}}}',
    "infinity": b'{"files": {"calc.py": {"summary": {"num_statements": Infinity, "covered_lines": 1e400}}}}',
    "negative": summary(-10, -5),
    "booleans": summary(True, True),
    "floats": summary(10.0, 5.0),
    "strings": summary("10", "10"),
    "nulls": summary(None, None),
    "huge integers": summary(HUGE_INT, HUGE_INT),
    "covered beyond statements": summary(10, 11),
    "over the count cap": summary(10**7, 10**7),
    "summary a list": entry("calc.py", {"summary": [10, 10]}),
    "entry a string": entry("calc.py", "covered"),
    "invented file": entry("invented.py", {"summary": {"num_statements": 9, "covered_lines": 9}}),
    "outside the mount": entry("/etc/calc.py", {"summary": {"num_statements": 9, "covered_lines": 9}}),
    "a folder": entry("tests", {"summary": {"num_statements": 9, "covered_lines": 9}}),
}


@pytest.mark.parametrize("content", list(ODD_COVERAGE.values()), ids=list(ODD_COVERAGE))
def test_odd_coverage_values_are_dropped_and_earn_nothing(scratch: Path, content: bytes) -> None:
    assert read_coverage(put(scratch, "coverage.json", content), SUBMISSION) == []
    report = put(scratch, "coverage.json", content)
    coverage = all_graders(scratch, put(scratch, "junit.xml", GOOD_JUNIT), report)[1]
    assert coverage.score == 0 and coverage.metrics["statements"] == 0


REFUSED_COVERAGE = {
    "empty": b"", "not json": b"coverage: 100%", "invalid utf-8": b'{"files": "\xff"}', "null": b"null",
    "list": b"[]", "files a list": b'{"files": []}', "no files": b"{}", "deep": b"[" * 100_000,
    "over the digit limit": b'{"files": {"calc.py": {"summary": {"num_statements": '
                            + OVER_DIGIT_LIMIT + b"}}}}",
}


@pytest.mark.parametrize("content", list(REFUSED_COVERAGE.values()), ids=list(REFUSED_COVERAGE))
def test_a_refused_coverage_report_scores_zero_with_the_reason(scratch: Path, content: bytes) -> None:
    path = put(scratch, "coverage.json", content)
    with pytest.raises(ReportError):
        read_coverage(path, SUBMISSION)
    coverage = all_graders(scratch, put(scratch, "junit.xml", GOOD_JUNIT), path)[1]
    assert coverage.score == 0 and "coverage report" in coverage.explanation


@SETTINGS
@given(files=st.dictionaries(st.sampled_from(["calc.py", "/submission/calc.py", "tests/test_calc.py", "x.py",
                                              "../calc.py", "calc.py\x00", "", "/"]) | st.text(max_size=8),
                             json_values | st.fixed_dictionaries({"summary": st.fixed_dictionaries({
                                 "num_statements": json_values, "covered_lines": json_values})}),
                             max_size=5))
def test_any_coverage_report_gives_a_ratio_within_bounds(scratch: Path, files: dict) -> None:
    try:
        content = dumps({"files": files})
    except ValueError:
        return
    path = put(scratch, "coverage.json", content)
    for found in read_coverage(path, SUBMISSION):
        assert found.path in SOURCES
        assert 0 <= found.covered <= found.statements < 10**7
    coverage = all_graders(scratch, put(scratch, "junit.xml", GOOD_JUNIT), path)[1]
    assert 0 <= coverage.metrics["coverage"] <= 1


def test_file_names_reach_the_coverage_explanation_as_one_printable_line(scratch: Path) -> None:
    # found by hand: the least-covered files were named in the explanation as they are on disk
    submission = scratch / "odd-names"
    name = "calc\u202e\n\x1b[2J.py"
    (submission / "tests").mkdir(parents=True)
    (submission / name).write_text("x = 1\n")
    (submission / "tests" / "test_x.py").write_text("def test_x():\n    pass\n")
    report = put(scratch, "coverage.json", entry(name, {"summary": {"num_statements": 4,
                                                                    "covered_lines": 1}}))
    ctx = context(scratch, "tests", junit_xml=put(scratch, "junit.xml", GOOD_JUNIT), coverage_json=report)
    ctx = GradingContext(**{**ctx.__dict__, "submission_dir": submission})
    result = assert_defined(built(CoverageGrader, stage="tests").grade(ctx))
    assert result.metrics["coverage"] == 0.25 and "calc" in result.explanation


def test_a_file_name_that_is_not_utf8_is_left_out_of_coverage(scratch: Path) -> None:
    # found by hand: coverage.json can name, as "\udcff.py", a file whose name is the byte 0xff: the
    # lone surrogate then reached the result, and result.json could not be written
    submission = scratch / "bytes-name"
    (submission / "tests").mkdir(parents=True)
    (submission / "calc.py").write_text("x = 1\n")
    with open(bytes(submission) + b"/\xff.py", "w") as handle:
        handle.write("x = 1\n")
    report = put(scratch, "coverage.json",
                 b'{"files": {"\\udcff.py": {"summary": {"num_statements": 4, "covered_lines": 4}}, '
                 b'"calc.py": {"summary": {"num_statements": 4, "covered_lines": 1}}}}')
    assert [f.path for f in read_coverage(report, submission)] == ["calc.py"]
    ctx = context(scratch, "tests", junit_xml=put(scratch, "junit.xml", GOOD_JUNIT), coverage_json=report)
    result = built(CoverageGrader, stage="tests").grade(GradingContext(**{**ctx.__dict__,
                                                                         "submission_dir": submission}))
    assert assert_defined(result).metrics["coverage"] == 0.25


# --- completion -----------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(statuses=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4),
       stages=st.lists(st.text(max_size=10), max_size=4).map(tuple),
       counted=st.lists(st.text(max_size=10), max_size=3).map(tuple))
def test_completion_gives_a_defined_result_for_any_statuses(scratch: Path, statuses: dict[str, str],
                                                            stages: tuple[str, ...],
                                                            counted: tuple[str, ...]) -> None:
    ctx = GradingContext(submission_dir=SUBMISSION, outputs={}, hidden={}, visible={}, assignment_dir=FIXTURE,
                         artifacts_dir=scratch, stage_statuses=statuses, stages=stages)
    grader = CompletionGrader(name="c", weight=1.0, args=CompletionGrader.Args(stages=counted))
    result = grader.grade(ctx)
    assert result.score == 0 or any(s == "ok" for s in statuses.values())
    result.model_dump_json()
    assert 0 <= result.score <= 1 and result.explanation
