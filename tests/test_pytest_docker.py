"""Test stages end to end in Docker: the fixture assignment tests/fixtures/assignments/testsuite
graded with the real CLI. Expected figures are hand-counted from the fixture's source."""

from __future__ import annotations

import pytest

from harness.results import load_result
from tests.conftest import run_cli
from tests.test_e2e_docker import json_lines
from tests.test_pytest_stages import FIXTURE, SUBMISSIONS

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[str, dict]:
    """Each submission's JSON line, with the criteria's explanations from its result.json."""
    results = tmp_path_factory.mktemp("testsuite-results")
    subs = [str(SUBMISSIONS / name) for name in ("honest", "tamper", "hangs", "pins_pytest",
                                                         "writes_beside")]
    proc = run_cli("grade", str(FIXTURE), *subs, "--jobs", "2", "--json", "--results", str(results))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = json_lines(proc.stdout)
    for path in results.glob("testsuite/1.0/*/result.json"):
        result = load_result(path.parent)
        for criterion in result.criteria:
            lines[result.candidate]["criteria"][criterion.name]["explanation"] = criterion.explanation
    return lines


def test_own_tests_and_coverage_are_measured(graded) -> None:
    honest = graded["honest"]["criteria"]
    assert honest["own_tests"]["metrics"] == {"tests": 3, "passed": 2, "skipped": 0, "failed": 1}
    assert honest["coverage"]["metrics"]["coverage"] == pytest.approx(11 / 14)
    assert honest["hidden"]["score"] == 1


def test_the_submissions_config_and_startup_files_do_not_reach_the_hidden_run(graded) -> None:
    # conftest forcing passes, ini/pyproject addopts, sitecustomize, a module named pytest and an
    # atexit forgery of the report: the one hidden test its median fails still fails (2 of 5 points)
    tamper = graded["tamper"]
    hidden = tamper["criteria"]["hidden"]
    assert hidden["metrics"]["points"] == 3 and hidden["metrics"]["points_total"] == 5
    assert "test_median_even (failed)" in hidden["explanation"]
    # its pytest.ini turns the JUnit plugin off for its own run: that is its own loss, said plainly
    assert tamper["criteria"]["own_tests"]["score"] == 0
    assert "junit.xml" in tamper["criteria"]["own_tests"]["explanation"]


def test_independent_stages_run_after_a_failure_and_a_hang_costs_only_its_criteria(graded) -> None:
    hangs = graded["hangs"]
    assert hangs["status"] == "error" and "stage run" in hangs["message"]  # the blocking stage failed
    assert hangs["criteria"]["hidden"]["score"] == 1  # the hidden suite still ran
    own = hangs["criteria"]["own_tests"]
    assert own["score"] == 0 and "timeout" in own["explanation"]


def test_a_submission_cannot_swap_the_test_tools(graded) -> None:
    # its requirements.txt pins another pytest: the image's pins are constraints, so it is refused
    pins = graded["pins_pytest"]
    assert pins["status"] == "invalid_submission" and pins["total_score"] == 0
    # named before pip runs, with the version the candidate may pin instead (issue 11)
    assert "'pytest==8.3.5': the harness provides pytest==9.0.3" in pins["message"]
    assert all(c["score"] == 0 for c in pins["criteria"].values())


def test_stages_share_a_writable_working_copy_and_the_original_stays_as_handed_in(graded) -> None:
    # it writes beside itself and into relative folders in stage `run`; its own tests (the next
    # stage) read what it wrote and run a script of its own; read-only, `run` failed (issue 11)
    beside = graded["writes_beside"]
    assert beside["status"] == "ok" and beside["criteria"]["completion"]["score"] == 1
    assert beside["criteria"]["own_tests"]["metrics"] == {"tests": 3, "passed": 3, "skipped": 0, "failed": 0}
    original = SUBMISSIONS / "writes_beside"
    assert not (original / "summary.json").exists() and not (original / "plots").exists()
