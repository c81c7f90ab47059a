"""Test stages: the report readers, the three graders, the spec rules, and the real runner.

The runner (sandbox/runners/pytest_run.py) runs here on the host, in a subprocess exactly as the
sandbox starts it (`python -I -S`), with the folders passed as arguments; the docker tests in
test_pytest_docker.py run the same submissions through the whole harness. Expected outcomes are
hand-counted from the fixture's source (tests/fixtures/assignments/testsuite).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from graders.testsuite._junit import ReportError, collect_suite, read_coverage, read_junit
from graders.testsuite.grader import CoverageGrader, HiddenTestsGrader, PassRateGrader
from harness.core import GradingContext, OutputFile
from harness.errors import SpecError
from harness.spec import load_assignment, load_spec
from sandbox import RUNNERS_DIR

FIXTURE = Path(__file__).parent / "fixtures" / "assignments" / "testsuite"
SUBMISSIONS = FIXTURE / "submissions"


def junit(*cases: str) -> str:
    return f'<?xml version="1.0"?><testsuites><testsuite>{"".join(cases)}</testsuite></testsuites>'


def case(classname: str, name: str, child: str = "") -> str:
    return f'<testcase classname="{classname}" name="{name}">{child}</testcase>'


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def context(tmp_path: Path, outputs: dict[str, Path | None], *, status: str = "ok",
            stage: str = "tests") -> GradingContext:
    files = {name: OutputFile(name, path, "" if path else "missing") for name, path in outputs.items()}
    (tmp_path / "artifacts").mkdir(exist_ok=True)
    return GradingContext(submission_dir=SUBMISSIONS / "honest", outputs=files, hidden={}, visible={},
                          assignment_dir=FIXTURE, artifacts_dir=tmp_path / "artifacts",
                          stage_statuses={stage: status})


# --- report readers ------------------------------------------------------------------------------

def test_junit_outcomes_classes_and_parameters(tmp_path: Path) -> None:
    report = write(tmp_path / "j.xml", junit(
        case("tests.test_a", "test_ok"),
        case("tests.test_a", "test_bad", '<failure message="assert 1 == 2"/>'),
        case("tests.test_a.TestX", "test_p[1-2]", '<error message="boom"/>'),
        case("tests.test_a", "test_skip", '<skipped message="later"/>')))
    cases = read_junit(report)
    assert [c.outcome for c in cases] == ["passed", "failed", "error", "skipped"]
    assert cases[1].message == "assert 1 == 2"
    assert cases[2].node == "tests/test_a.py::TestX::test_p[1-2]"
    assert cases[2].function_node == "tests/test_a.py::TestX::test_p"


DOCTYPE = '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><testsuites>&lol;</testsuites>'


@pytest.mark.parametrize("data", [
    DOCTYPE.encode(), DOCTYPE.replace("1.0\"", '1.0" encoding="utf-16"').encode("utf-16"),  # hidden
    b"<testsuites><testsuite>", b"not xml at all", b"<a>" * 100_000])
def test_junit_refuses_entities_encodings_and_broken_xml(tmp_path: Path, data: bytes) -> None:
    report = tmp_path / "j.xml"
    report.write_bytes(data)
    with pytest.raises(ReportError):
        read_junit(report)


@pytest.mark.parametrize("encoding", ["no-such-codec", "utf-32"])
def test_junit_reads_a_declared_encoding_as_utf8_without_crashing(tmp_path: Path, encoding: str) -> None:
    declared = f'<?xml version="1.0" encoding="{encoding}"?>'
    body = junit(case("t", "a")).replace('<?xml version="1.0"?>', declared)
    report = write(tmp_path / "j.xml", body)
    assert [c.outcome for c in read_junit(report)] == ["passed"]


@pytest.mark.parametrize("name", ["a\0b.py", "x" * 5000 + ".py"])
def test_coverage_survives_hostile_file_names(tmp_path: Path, name: str) -> None:
    report = write(tmp_path / "c.json", json.dumps({"files": {name: {"summary": {
        "num_statements": 1, "covered_lines": 1}}}}))
    assert read_coverage(report, SUBMISSIONS / "honest") == []
    write(report, "[" * 100_000)
    with pytest.raises(ReportError):
        read_coverage(report, SUBMISSIONS / "honest")


def test_coverage_keeps_only_real_files_of_the_submission(tmp_path: Path) -> None:
    report = write(tmp_path / "c.json", json.dumps({"files": {
        "calc.py": {"summary": {"num_statements": 14, "covered_lines": 11}},
        "/submission/calc.py": {"summary": {"num_statements": 14, "covered_lines": 11}},  # same, absolute
        "invented.py": {"summary": {"num_statements": 1000, "covered_lines": 1000}},  # not in the tree
        "/etc/passwd.py": {"summary": {"num_statements": 5, "covered_lines": 5}},  # outside
        "../honest/calc.py": {"summary": {"num_statements": 5, "covered_lines": 5}},
        "tests/test_calc.py": {"summary": {"num_statements": 9, "covered_lines": 10}},  # covered > total
        "calc.py ": "not a mapping"}}))
    found = read_coverage(report, SUBMISSIONS / "honest")
    assert [(f.path, f.statements, f.covered) for f in found] == [("calc.py", 14, 11)]  # once


def test_suite_collection_reads_the_source() -> None:
    nodes = [t.node for t in collect_suite(FIXTURE / "hidden_tests")]
    assert nodes == ["test_calc.py::test_mean", "test_calc.py::test_median_odd",
                     "test_calc.py::test_median_even", "test_calc.py::TestEmpty::test_mean_of_nothing_raises"]


# --- graders ---------------------------------------------------------------------------------------

def _grader(cls, **args):
    spec = load_assignment(FIXTURE).spec
    built = cls(name="c", weight=1.0, args=cls.Args.model_validate(args))
    built.check_spec(spec)
    built.check_files(FIXTURE)
    return built


def test_pass_rate_by_hand(tmp_path: Path) -> None:
    report = write(tmp_path / "j.xml", junit(case("t", "a"), case("t", "b"), case("t", "c", "<failure/>"),
                                             case("t", "d", '<skipped message="x"/>')))
    result = _grader(PassRateGrader, stage="tests").grade(context(tmp_path, {"tests.junit.xml": report}))
    assert result.score == pytest.approx(2 / 3)  # the skipped test counts neither way
    assert "t.py::c" in result.explanation


def test_no_tests_or_no_report_scores_zero_and_says_why(tmp_path: Path) -> None:
    empty = write(tmp_path / "j.xml", junit())
    grader = _grader(PassRateGrader, stage="tests")
    assert "No tests" in grader.grade(context(tmp_path, {"tests.junit.xml": empty})).explanation
    timed_out = grader.grade(context(tmp_path, {"tests.junit.xml": None}, status="timeout"))
    assert timed_out.score == 0 and "timeout" in timed_out.explanation


def test_coverage_maps_linearly(tmp_path: Path) -> None:
    report = write(tmp_path / "j.xml", junit(case("t", "a")))
    cov = write(tmp_path / "c.json", json.dumps({"files": {
        "calc.py": {"summary": {"num_statements": 14, "covered_lines": 7}}}}))
    ctx = context(tmp_path, {"tests.junit.xml": report, "tests.coverage.json": cov})
    result = _grader(CoverageGrader, stage="tests", baseline=0.2, target=0.8).grade(ctx)
    assert result.metrics["coverage"] == 0.5 and result.score == pytest.approx((0.5 - 0.2) / 0.6)


def test_hidden_points_shared_by_cases_missing_and_invented_tests(tmp_path: Path) -> None:
    report = write(tmp_path / "j.xml", junit(
        case("test_calc", "test_mean[a]"), case("test_calc", "test_mean[b]", "<failure/>"),
        case("test_calc", "test_mean[c]"), case("test_calc", "test_median_even"),
        case("test_calc", "test_forged_extra")))  # not in the suite: worth nothing
    ctx = context(tmp_path, {"hidden_tests.junit.xml": report}, stage="hidden_tests")
    result = _grader(HiddenTestsGrader, stage="hidden_tests",
                     points={"test_calc.py::test_median_even": 2}).grade(ctx)
    # mean: 1 point x 2/3 cases; median_even: 2; median_odd and TestEmpty not reported: 0. Of 5.
    assert result.metrics["points"] == pytest.approx(2 / 3 + 2)
    assert result.score == pytest.approx((2 / 3 + 2) / 5)
    rows = {r["test"]: r["outcome"] for r in result.details["tests"]}
    assert rows["test_calc.py::test_median_odd"] == "not reported"
    assert rows["test_calc.py::test_mean"].startswith("failed (2 of 3")


def test_hidden_tests_skipped_by_the_suite_count_neither_way(tmp_path: Path) -> None:
    report = write(tmp_path / "j.xml", junit(
        case("test_calc", "test_mean[a]"), case("test_calc", "test_median_odd", '<skipped message="x"/>'),
        case("test_calc", "test_median_even"), case("test_calc.TestEmpty", "test_mean_of_nothing_raises")))
    ctx = context(tmp_path, {"hidden_tests.junit.xml": report}, stage="hidden_tests")
    result = _grader(HiddenTestsGrader, stage="hidden_tests").grade(ctx)
    assert result.metrics["points_total"] == 3 and result.score == 1  # median_odd left out


def test_hidden_suite_problems_are_spec_errors_before_grading(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="match no test"):
        _grader(HiddenTestsGrader, stage="hidden_tests", points={"test_calc.py::test_meen": 2})
    shutil.copytree(FIXTURE, tmp_path / "testsuite")
    (tmp_path / "testsuite" / "hidden_tests" / "test_calc.py").write_text("def test_x(:\n")
    built = HiddenTestsGrader(name="c", weight=1.0, args=HiddenTestsGrader.Args(stage="hidden_tests"))
    built.check_spec(load_assignment(FIXTURE).spec)
    with pytest.raises(SpecError, match="cannot be read"):
        built.check_files(tmp_path / "testsuite")


def test_graders_refuse_a_stage_of_the_wrong_kind() -> None:
    with pytest.raises(SpecError, match="hidden suite"):
        _grader(HiddenTestsGrader, stage="tests")
    with pytest.raises(SpecError, match="submission's tests"):
        _grader(PassRateGrader, stage="run")


# --- spec -----------------------------------------------------------------------------------------

def _spec_with(tmp_path: Path, stage: str) -> Path:
    text = (FIXTURE / "assignment.yaml").read_text().replace(
        "  - name: hidden_tests\n    pytest: {suite: hidden_tests}", stage, 1)
    return write(tmp_path / "assignment.yaml", text)


@pytest.mark.parametrize(("stage", "message"), [
    ("  - name: hidden_tests\n    pytest: {suite: hidden}", "secrets folder"),
    ("  - name: hidden_tests\n    pytest: {suite: starter/tests}", "starter kit"),
    ("  - name: hidden_tests\n    command: [python, x.py]\n    pytest: {suite: hidden_tests}", "no command"),
])
def test_spec_refuses_unsafe_or_ambiguous_test_stages(tmp_path: Path, stage: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_spec(_spec_with(tmp_path, stage))


def test_test_stages_bring_pytest_and_coverage_into_the_image() -> None:
    spec = load_assignment(FIXTURE).spec
    assert {"pytest==9.0.3", "coverage==7.17.4"} <= set(spec.image_packages())
    hidden = next(s for s in spec.stages if s.name == "hidden_tests")
    assert hidden.command[:3] == ("python", "-I", "-S") and set(hidden.outputs) == {
        "hidden_tests.junit.xml", "hidden_tests.run.json"}


# --- the runner, as the sandbox starts it --------------------------------------------------------------

def run_runner(mode: str, submission: Path, output: Path) -> subprocess.CompletedProcess:
    output.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-I", "-S", str(RUNNERS_DIR / "pytest_run.py"), "--mode", mode, "--prefix", "s",
         "--submission", str(submission), "--tests", str(FIXTURE / "hidden_tests"), "--output", str(output)],
        cwd=submission, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_runner_hidden_run_ignores_every_tampering_file(tmp_path: Path) -> None:
    # tamper/: a conftest forcing passes and deselecting, pytest.ini and pyproject addopts, a
    # sitecustomize/usercustomize, a module named pytest, and an atexit hook that overwrites the
    # report with an all-pass forgery. Its median is wrong on even lengths: exactly that test fails.
    submission = shutil.copytree(SUBMISSIONS / "tamper", tmp_path / "submission")
    proc = run_runner("hidden", submission, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    outcomes = {c.node: c.outcome for c in read_junit(tmp_path / "out" / "s.junit.xml")}
    assert outcomes.pop("test_calc.py::test_median_even") == "failed"
    assert set(outcomes.values()) == {"passed"} and len(outcomes) == 5  # 3 mean cases, odd, empty
    assert json.loads((tmp_path / "out" / "s.run.json").read_text())["pytest_exit"] == 1


@pytest.mark.slow
def test_runner_own_mode_measures_coverage_despite_a_coveragerc(tmp_path: Path) -> None:
    submission = shutil.copytree(SUBMISSIONS / "honest", tmp_path / "submission")
    write(submission / ".coveragerc", "[run]\nomit = *\n")  # would hide every file from coverage
    proc = run_runner("own", submission, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    outcomes = sorted(c.outcome for c in read_junit(tmp_path / "out" / "s.junit.xml"))
    assert outcomes == ["failed", "passed", "passed"]
    # calc.py: 14 statements (coverage.py does not count the docstring); the own tests miss the
    # empty-list raise, spread()'s return and the __main__ print: 11 covered
    files = read_coverage(tmp_path / "out" / "s.coverage.json", submission)
    assert [(f.path, f.statements) for f in files] == [("calc.py", 14)] and files[0].covered == 11


@pytest.mark.slow
def test_runner_skips_pth_sitecustomize_and_plugins_of_installed_packages(tmp_path: Path) -> None:
    # What a submission's requirements could install: a .pth file, a sitecustomize module and a
    # pytest11 entry-point plugin, each leaving a mark when it runs. First proved live with the
    # same interpreter started normally; then the runner must run none of them.
    venv, marks = tmp_path / "venv", tmp_path / "marks"
    marks.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                   check=True)
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"

    def mark(name: str) -> str:
        return f"open({str(marks / name)!r}, 'w').close()\n"

    write(site / "evil.pth", "import builtins; " + mark("pth"))
    write(site / "sitecustomize.py", mark("sitecustomize"))
    write(site / "evil_plugin.py", mark("plugin"))
    dist = site / "evil_plugin-1.0.dist-info"
    write(dist / "METADATA", "Metadata-Version: 2.1\nName: evil-plugin\nVersion: 1.0\n")
    write(dist / "entry_points.txt", "[pytest11]\nevil = evil_plugin\n")
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pytest", "--collect-only", "-q", str(FIXTURE / "hidden_tests")],
                   cwd=SUBMISSIONS / "honest", capture_output=True, timeout=120)
    assert sorted(p.name for p in marks.iterdir()) == ["plugin", "pth", "sitecustomize"]  # all live
    for found in marks.iterdir():
        found.unlink()
    (tmp_path / "out").mkdir()
    proc = subprocess.run(
        [python, "-I", "-S", str(RUNNERS_DIR / "pytest_run.py"), "--mode", "hidden", "--prefix", "s",
         "--submission", str(SUBMISSIONS / "tamper"), "--tests", str(FIXTURE / "hidden_tests"),
         "--output", str(tmp_path / "out")], cwd=SUBMISSIONS / "tamper", capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert list(marks.iterdir()) == []
    outcomes = {c.node: c.outcome for c in read_junit(tmp_path / "out" / "s.junit.xml")}
    assert outcomes["test_calc.py::test_median_even"] == "failed"


# --- failure reasons (issue 11): a broken conftest.py and an uncollectable file, named ------------------

REASONS = Path(__file__).parent / "fixtures" / "reasons"


def _own_outputs(out: Path) -> dict[str, Path | None]:
    return {f"tests.{name}": (out / f"s.{name}" if (out / f"s.{name}").is_file() else None)
            for name in ("junit.xml", "coverage.json", "run.json")}


@pytest.mark.slow
def test_a_conftest_that_fails_to_import_is_named_with_its_error(tmp_path: Path) -> None:
    submission = shutil.copytree(REASONS / "conftest_missing", tmp_path / "submission")
    proc = run_runner("own", submission, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "out" / "s.junit.xml").exists()  # pytest stopped before writing any report
    said = json.loads((tmp_path / "out" / "s.run.json").read_text())
    assert said["pytest_exit"] == 4  # pytest's "usage error": it never collected
    assert said["problem"] == ("tests/conftest.py failed to import: ModuleNotFoundError: No module named "
                               "'freezegun'")
    ctx = context(tmp_path, _own_outputs(tmp_path / "out"))
    for cls in (PassRateGrader, CoverageGrader):
        result = _grader(cls, stage="tests").grade(ctx)
        assert result.score == 0
        assert "tests/conftest.py failed to import: ModuleNotFoundError: No module named 'freezegun'" in \
            result.explanation
        assert "no junit.xml was written" not in result.explanation


@pytest.mark.slow
def test_a_test_file_that_cannot_be_collected_is_named_by_its_file(tmp_path: Path) -> None:
    submission = shutil.copytree(REASONS / "collection_error", tmp_path / "submission")
    proc = run_runner("own", submission, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    cases = read_junit(tmp_path / "out" / "s.junit.xml")
    assert {(c.node, c.outcome, c.collection) for c in cases} == {
        ("tests/test_calc.py::test_mean", "passed", False), ("tests/test_request.py", "error", True)}
    (broken,) = [c for c in cases if c.collection]
    assert broken.message == "ModuleNotFoundError: No module named 'responses'"
    result = _grader(PassRateGrader, stage="tests").grade(context(tmp_path, _own_outputs(tmp_path / "out")))
    assert result.score == 0.5  # 1 of 2: the file that does not import counts as one error
    assert ("failing: tests/test_request.py (could not be collected: ModuleNotFoundError: No module named "
            "'responses')") in result.explanation


def test_a_run_report_that_is_not_the_runners_says_nothing(tmp_path: Path) -> None:
    from graders.testsuite._junit import read_run_problem

    # the candidate's own tests run in that process and can rewrite run.json with anything
    odd = (b"", b"[]", b'{"problem": 3}', b'{"problem": "\\ud800"}', b"\xff" * 10,
           b'{"problem": "' + b"a\\u001b[31m\\n" * 5000 + b'"}')
    for content in odd:
        (tmp_path / "run.json").write_bytes(content)
        said = read_run_problem(tmp_path / "run.json")
        assert len(said) <= 300 and "\x1b" not in said and "\n" not in said
    assert read_run_problem(None) == ""
