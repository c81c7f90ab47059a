"""Failure reasons a reviewer can act on (issue 11, part 3): the exception line of a failed stage,
read from its log, in the result's `reason`, the note (`message`), `--json`, the leaderboard and
report.md, whatever the candidate's process printed.

The logs are real: the fixtures under tests/fixtures/reasons/ run here with the host's Python and
the reason is checked against what Python's own `traceback.format_exception_only` says of the
same exception raised in-process. The pipeline part plays those logs through the fake backend
(tests/fakes.py); the Docker path is tests/test_reasons_docker.py.
"""

from __future__ import annotations

import runpy
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import api
from harness._reasons import TAIL_CHARS, read_failure
from harness.core import CriterionResult
from harness.core.text import CONTROL
from harness.output import summary_table
from harness.report import render_report
from harness.results import REASON_CHARS, StageRecord, Status, SubmissionResult
from sandbox import RunResult, StageStatus
from tests.fakes import FIXTURES, FakeBackend, install_fake_backend, make_submission

REASONS = FIXTURES / "reasons"
MULTIRUN = FIXTURES / "assignments" / "multirun"
LGBM_TYPE_ERROR = "TypeError: LGBMRanker.fit() got an unexpected keyword argument 'early_stopping_rounds'"


def run_script(folder: Path, script: str = "train.py", *args: str) -> str:
    """The combined output of `python SCRIPT` run in `folder`, as a stage's log holds it."""
    done = subprocess.run([sys.executable, script, *args], cwd=folder, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode != 0
    return done.stdout + done.stderr


def python_says(folder: Path, script: str = "train.py") -> str:
    """Python's own last line for the exception the script raises (the independent reference)."""
    sys.path.insert(0, str(folder))
    argv, sys.argv = sys.argv, [script]
    try:
        runpy.run_path(str(folder / script), run_name="__main__")
    except BaseException as exc:  # noqa: BLE001 - whatever it raises is the reference
        return traceback.format_exception_only(exc)[-1].strip()
    finally:
        sys.argv = argv
        sys.path.remove(str(folder))
        sys.modules.pop("lightgbm", None)
    raise AssertionError("the script did not raise")


@pytest.fixture(scope="module")
def lgbm_log() -> str:
    return run_script(REASONS / "ranker_fit_kwarg")


def test_the_reason_is_the_exception_line_python_prints(lgbm_log: str) -> None:
    assert python_says(REASONS / "ranker_fit_kwarg") == LGBM_TYPE_ERROR
    assert read_failure(lgbm_log, failed=True).reason == LGBM_TYPE_ERROR


def test_a_raise_from_chain_names_both_and_a_fake_traceback_printed_first_loses() -> None:
    log = run_script(REASONS / "ranker_from_chain")
    assert "ValueError: just a log line" in log  # the decoy is there, before the real traceback
    final = python_says(REASONS / "ranker_from_chain")
    reason = read_failure(log, failed=True).reason
    assert reason == f"{final} (raised from ModuleNotFoundError: No module named 'lightgbm_gpu_build')"
    assert final == "RuntimeError: could not load the GPU LightGBM build; set RANKER_BACKEND=cpu"


@pytest.mark.parametrize(("source", "args", "expected"), [
    ('import sys\nsys.exit("no training data under /data/train")\n', (),
     "no training data under /data/train"),
    ("raise SystemExit('labels.csv has no relevance column')\n", (),
     "labels.csv has no relevance column"),
    ("import argparse\np = argparse.ArgumentParser(prog='train.py')\np.add_argument('--data')\n"
     "p.parse_args()\n", ("--epochs", "3"), "train.py: error: unrecognized arguments: --epochs 3"),
])
def test_systemexit_messages_and_usage_errors_are_the_reason(tmp_path: Path, source: str, args: tuple,
                                                             expected: str) -> None:
    (tmp_path / "train.py").write_text("print('loading data')\n" + source)
    assert read_failure(run_script(tmp_path, "train.py", *args), failed=True).reason == expected


def test_colour_codes_huge_lines_and_binary_around_a_traceback(lgbm_log: str) -> None:
    coloured = lgbm_log.replace("TypeError", "\x1b[1;31mTypeError\x1b[0m")
    assert read_failure(coloured, failed=True).reason == LGBM_TYPE_ERROR
    noise = "x" * (8 * TAIL_CHARS) + "\n" + bytes(range(256)).decode("latin-1") + "\n"
    assert read_failure(noise + lgbm_log, failed=True).reason == LGBM_TYPE_ERROR
    found = read_failure(lgbm_log.replace("'early_stopping_rounds'", "'" + "e" * 100_000 + "'"), failed=True)
    assert found.reason.startswith("TypeError: LGBMRanker.fit()") and len(found.reason) == REASON_CHARS


def test_a_killed_process_has_no_last_line_reason() -> None:
    assert read_failure("epoch 3/50 loss 0.41\n", failed=True, last_line=False).reason == ""
    assert read_failure("epoch 3/50 loss 0.41\n", failed=False).reason == ""


@settings(max_examples=200, deadline=None)
@given(junk=st.text(max_size=400) | st.binary(max_size=400).map(lambda b: b.decode("utf-8", "replace")),
       fake=st.booleans())
def test_any_log_gives_one_bounded_clean_line_and_the_last_traceback_wins(junk: str, fake: bool) -> None:
    found = read_failure(junk, failed=True)
    assert len(found.reason) <= REASON_CHARS and "\n" not in found.reason
    assert not CONTROL.search(found.reason)
    decoy = "Traceback (most recent call last):\n  File \"x\"\nValueError: decoy\n" if fake else ""
    real = "Traceback (most recent call last):\n  File \"train.py\", line 3\n" + LGBM_TYPE_ERROR + "\n"
    assert read_failure(decoy + junk + "\n" + real, failed=True).reason == LGBM_TYPE_ERROR


# --- through the pipeline: note, --json, leaderboard, report -------------------------------------

def failing_fit(log: str):
    def play(request, output):
        return RunResult(status=StageStatus.ERROR, exit_code=1, seconds=0.2, log=log,
                         detail="exited with code 1")
    return play


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory, lgbm_log: str):
    tmp = tmp_path_factory.mktemp("reasons")
    install_fake_backend(FakeBackend({("cand", "fit"): failing_fit(lgbm_log)}))
    sub = make_submission(tmp / "subs", "cand", {"main.py": ""})
    report = api.grade(MULTIRUN, [str(sub)], results_dir=tmp / "results", backend="fake", backoff_s=0.0,
                       log_to_mlflow=False)
    return report.items[0]


def test_the_note_json_and_leaderboard_carry_the_exception_line(graded) -> None:
    result = graded.result
    assert result.status is Status.ERROR
    assert result.reason == LGBM_TYPE_ERROR
    assert result.message == f"stage fit: error: exited with code 1: {LGBM_TYPE_ERROR}"
    assert result.summary_line()["reason"] == LGBM_TYPE_ERROR
    assert result.stages[0].reason == LGBM_TYPE_ERROR
    note = summary_table([result]).columns[-1]  # the leaderboard's last column
    assert note.header == "note" and LGBM_TYPE_ERROR in str(next(iter(note.cells)))
    stored = SubmissionResult.model_validate_json((graded.folder / "result.json").read_text())
    assert stored.reason == LGBM_TYPE_ERROR


def test_the_report_opens_with_why(graded) -> None:
    head = (graded.folder / "report.md").read_text().splitlines()[:8]
    assert head[0] == "# Grading report: cand" and head[2] == "## Why"
    assert "- **Status**: error" in head
    assert any("**Reason**" in line and LGBM_TYPE_ERROR in line for line in head), head
    assert any(line.startswith("- **Failing stage**: fit (error: exited with code 1)") for line in head), head


def test_criteria_not_graded_because_a_stage_failed_share_one_row_naming_the_cause(graded) -> None:
    text = (graded.folder / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "runs / " in line]
    assert len(rows) == 1, rows  # the answer stage never ran: neither run's answer was produced
    assert rows[0].startswith("| 2 criteria: runs / second, runs / third |")
    assert "Not graded" in rows[0] and LGBM_TYPE_ERROR.replace("_", "\\_") in rows[0]
    assert "### second" not in text and "### third" not in text
    assert "### completion" in text  # a criterion graded on what ran keeps its section


def test_a_result_that_is_not_ok_always_has_a_reason() -> None:
    invalid = SubmissionResult(key="k", assignment="a", assignment_version="1", submission="s",
                               submission_id="s", candidate="c", status=Status.INVALID, harness_version="0",
                               message="required files missing: train.py")
    assert invalid.reason == "required files missing: train.py"
    ok = invalid.model_copy(update={"status": Status.OK, "reason": ""})
    assert SubmissionResult.model_validate(ok.model_dump()).reason == ""


# --- report.md: the cause kept in the log tail, not-graded rows collapsed ----------------------------

SKLEARN_IMPORT = ("ImportError: cannot import name 'check_array' from 'sklearn.utils.validation' "
                  "(/opt/venv/lib/python3.11/site-packages/sklearn/utils/validation.py)")


def long_message_log() -> str:
    """An ImportError whose message runs 60 lines (as sklearn's version-mismatch help does)."""
    frames = "".join(f'  File "/opt/venv/lib/python3.11/site-packages/pkg/m{i}.py", line {i}, in <module>\n'
                     f"    from .m{i + 1} import *\n" for i in range(12))
    help_lines = "".join(f"  hint {i}: reinstall scikit-learn with the version your code was written for\n"
                         for i in range(60))
    return "training...\nTraceback (most recent call last):\n" + frames + SKLEARN_IMPORT + "\n" + help_lines


def reported(tmp_path: Path, log: str, criteria: list | None = None) -> str:
    (tmp_path / "logs").mkdir(parents=True, exist_ok=True)
    (tmp_path / "logs" / "fit.log").write_text(log)
    found = read_failure(log, failed=True)
    stage = StageRecord(name="fit", status="error", exit_code=1, log_file="logs/fit.log",
                        detail="exited with code 1", reason=found.reason)
    result = SubmissionResult(key="k", assignment="ranker", assignment_version="1", submission="s",
                              submission_id="s", candidate="c", status=Status.ERROR, harness_version="0",
                              message=f"stage fit: {stage.failure}", reason=stage.cause, stages=[stage],
                              criteria=criteria or [], total_score=0.0)
    return render_report(result, folder=tmp_path)


def test_the_log_tail_keeps_an_exception_line_a_long_message_pushed_out(tmp_path: Path) -> None:
    log = long_message_log()
    assert SKLEARN_IMPORT not in "\n".join(log.splitlines()[-40:])  # outside the 40-line tail
    text = reported(tmp_path, log)
    block = text[text.index("```text"):]
    assert SKLEARN_IMPORT in block and "hint 59" in block and "lines …]" in block


def ab_criterion(name: str, runs: dict[str, str]) -> CriterionResult:
    """A criterion shaped as the ab_answer grader writes it (graders/abtest/grader.py)."""
    text = "; ".join(f"{run}: {problem}" for run, problem in runs.items())
    return CriterionResult(name=name, group="design", grader="ab_answer", grader_version="1", score=0.0,
                           weight=1.0, explanation=f"0/{len(runs)} runs within ±3%: {text}.",
                           details={"runs": {r: {"got": None, "problem": why} for r, why in runs.items()}})


def test_a_criterion_with_one_run_answered_wrongly_keeps_its_own_row(tmp_path: Path) -> None:
    failed = "not graded: stage analyze/srm failed (error: exited with code 1: KeyError: 'x' (cell 7))"
    blocked = ab_criterion("design_days", {"srm": failed, "clear_win": failed.replace("srm", "clear_win")})
    mixed = ab_criterion("design_n", {"srm": failed, "clear_win": "got 120, expected 4,117 to 4,250"})
    text = reported(tmp_path, "Traceback (most recent call last):\n  File \"t.py\"\nKeyError: 'x'\n",
                    [blocked, mixed])
    rows = [line for line in text.splitlines() if line.startswith("| ") and "design" in line]
    assert rows[0].startswith("| design / design\\_n |")  # its wrong answer stays readable
    assert rows[1].startswith("| 1 criterion: design / design\\_days |") and "Not graded" in rows[1]


def test_colour_codes_are_stripped_from_everything_shown(tmp_path: Path) -> None:
    log = "Traceback (most recent call last):\n  File \"t.py\"\n\x1b[31mKeyError\x1b[0m: 'x'\n"
    text = reported(tmp_path, log)
    assert "KeyError: 'x'" in text and "\x1b" not in text and "[31m" not in text and "[0m" not in text


@pytest.mark.slow
def test_a_notebook_without_a_parameters_cell_gets_the_warning_in_its_report(tmp_path: Path) -> None:
    # the real runner's log on the fixture (a kernel on the host), played through the pipeline
    from sandbox import RUNNERS_DIR

    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "analysis.ipynb").write_bytes((REASONS / "ab_untagged.ipynb").read_bytes())
    done = subprocess.run([sys.executable, str(RUNNERS_DIR / "run.py"), "--param", "data_dir=/data/input",
                           "--param", "output_dir=/output", "analysis.ipynb"], cwd=tmp_path / "nb",
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    install_fake_backend(FakeBackend({("cand", "fit"): failing_fit(done.stderr)}))
    sub = make_submission(tmp_path / "subs", "cand", {"main.py": ""})
    item = api.grade(MULTIRUN, [str(sub)], results_dir=tmp_path / "results", backend="fake", backoff_s=0.0,
                     log_to_mlflow=False).items[0]
    assert item.result.reason.startswith("FileNotFoundError: ") and item.result.reason.endswith("(cell 4)")
    head = (item.folder / "report.md").read_text().splitlines()[:10]
    warning = next(line for line in head if line.startswith("- **Warning**: "))
    assert 'has no cell tagged "parameters"' in warning
    assert "cell 2 sets data\\_dir, output\\_dir" in warning


@settings(max_examples=60, deadline=None)
@given(reason=st.text(max_size=600), cell_line=st.text(max_size=300), warning=st.text(max_size=800),
       cell=st.none() | st.integers(min_value=0, max_value=10**6))
def test_any_stage_text_keeps_the_why_block_one_line_per_item(reason: str, cell_line: str, warning: str,
                                                             cell: int | None) -> None:
    # all of it is the candidate's: printed by their process, or their notebook's first line
    stage = StageRecord(name="analyze/srm", status="error", exit_code=1, detail="exited with code 1",
                        reason=reason, cell=cell, cell_line=cell_line, warnings=[warning])
    result = SubmissionResult(key="k", assignment="abtest", assignment_version="1", submission="s",
                              submission_id="s", candidate="c", status=Status.ERROR, harness_version="0",
                              message=f"stage analyze on runs srm: {stage.failure}", reason=stage.cause,
                              stages=[stage], total_score=0.0)
    text = render_report(result)
    assert not CONTROL.search(text.replace("\n", "").replace("\t", ""))
    why = text[text.index("## Why"):text.index("| Field")].strip().splitlines()
    assert why[:3] == ["## Why", "", "- **Status**: error"], why
    assert all(line.startswith("- **") for line in why[2:]) and 4 <= len(why) <= 7, why
    assert all(len(line) < 2000 for line in why)


@pytest.mark.parametrize(("fixture", "expected"), [
    ("collection_error", "ERROR tests/test_request.py - ModuleNotFoundError: No module named 'responses'"),
    ("conftest_missing", "conftest.py failed to import: ModuleNotFoundError: No module named 'freezegun'"),
])
def test_a_stage_that_runs_pytest_itself_gets_pytests_error(fixture: str, expected: str) -> None:
    log = run_script(REASONS / fixture, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert read_failure(log, failed=True).reason == expected


def test_a_stage_killed_for_time_is_not_explained_by_a_traceback_it_printed_earlier(tmp_path: Path) -> None:
    # a retry loop that logged a handled error, then hung until the limit
    log = ("Traceback (most recent call last):\n  File \"train.py\", line 9\n"
           "ConnectionResetError: [Errno 104] Connection reset by peer\nretrying in 5 s\n")

    def hang(request, output):
        return RunResult(status=StageStatus.TIMEOUT, exit_code=None, seconds=5.0, log=log,
                         detail="killed after the 5 s limit")

    install_fake_backend(FakeBackend({("cand", "fit"): hang}))
    sub = make_submission(tmp_path / "subs", "cand", {"main.py": ""})
    result = api.grade(MULTIRUN, [str(sub)], results_dir=tmp_path / "results", backend="fake", backoff_s=0.0,
                       log_to_mlflow=False).items[0].result
    assert result.status is Status.TIMEOUT and result.stages[0].reason == ""
    assert result.reason == "killed after the 5 s limit"
    assert result.message == "stage fit: timeout: killed after the 5 s limit"
