"""Pipeline and batch logic, played by a fake sandbox backend (tests/fakes.py).

Real Docker runs are covered in test_e2e_docker.py and test_sandbox_contract.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tarfile

import pytest

from harness import api
from harness.errors import InfraError, IntakeError
from harness.results import Status, load_result
from sandbox import RunResult, StageStatus
from tests.fakes import FIXTURES, FakeBackend, fail, install_fake_backend, make_submission, ok

TOY = FIXTURES / "assignments" / "toy"


def run(tmp_path, sources, backend, **kwargs):
    install_fake_backend(backend)
    kwargs.setdefault("log_to_mlflow", False)
    return api.grade(TOY, [str(s) for s in sources], results_dir=tmp_path / "results", backend="fake",
                     backoff_s=0.0, **kwargs)


def by_candidate(report):
    return {item.result.candidate: item for item in report.items}


def test_good_and_failing_submissions_get_statuses_and_scores(tmp_path):
    subs = tmp_path / "subs"
    good, wrong, broken = (make_submission(subs, n) for n in ("good", "wrong", "broken"))
    backend = FakeBackend({("wrong", "answer"): ok("41"), ("broken", "fit"): fail()})
    report = run(tmp_path, [good, wrong, broken], backend)
    items = by_candidate(report)
    assert items["good"].result.status is Status.OK
    assert items["good"].result.total_score == 100.0
    # completion 1 (weight 1) + wrong answer 0 (weight 3) -> 25 / 100
    assert items["wrong"].result.total_score == 25.0
    assert items["broken"].result.status is Status.ERROR
    assert items["broken"].result.total_score == 0.0
    assert ("broken", "answer") not in backend.calls  # a failed stage stops the submission
    assert "boom" in (items["broken"].folder / "logs" / "fit.log").read_text()
    assert report.exit_code == 0  # candidate failures are graded results


def test_missing_required_file_is_invalid_and_runs_nothing(tmp_path):
    sub = make_submission(tmp_path / "subs", "empty")
    (sub / "run.py").unlink()
    backend = FakeBackend({})
    report = run(tmp_path, [sub], backend)
    result = report.items[0].result
    assert result.status is Status.INVALID and "run.py" in result.message
    assert result.total_score == 0.0 and backend.calls == []


def test_an_invalid_submission_scores_zero_on_every_criterion_even_static_ones(tmp_path):
    # the briefs' rule: "it scores 0 and nothing is run"; code quality needs no run, and scored
    # a tidy but invalid submission 6-9 of 100 before (issue 11)
    toy = shutil.copytree(TOY, tmp_path / "toy")
    spec = toy / "assignment.yaml"
    spec.write_text(spec.read_text() + "  - {name: code_quality, grader: code_quality, weight: 1}\n")
    sub = make_submission(tmp_path / "subs", "tidy", {"model.py": '"""A model."""\n\n\nVALUE = 1\n'})
    (sub / "run.py").unlink()
    install_fake_backend(backend := FakeBackend({}))
    report = api.grade(toy, [str(sub)], results_dir=tmp_path / "results", backend="fake", backoff_s=0.0,
                       log_to_mlflow=False)
    result = report.items[0].result
    assert result.status is Status.INVALID and result.total_score == 0.0 and backend.calls == []
    assert [(c.name, c.score) for c in result.criteria] == [("completion", 0), ("answer", 0),
                                                            ("code_quality", 0)]
    assert all(c.explanation == "not graded: required files missing: run.py" for c in result.criteria)


@pytest.mark.parametrize(("requires", "needs"), [("[answer]", ""), ("{answer: 0.5}", " (needs 0.5)")])
def test_a_criterion_that_requires_another_counts_only_when_that_one_scores(tmp_path, requires, needs):
    # spec `requires`: tidy code of a submission whose answer is wrong did not do the task
    toy = shutil.copytree(TOY, tmp_path / "toy")
    spec = toy / "assignment.yaml"
    spec.write_text(spec.read_text() + "  - {name: code_quality, grader: code_quality, weight: 1, "
                                       f"requires: {requires}}}\n")
    subs = tmp_path / "subs"
    tidy = {"model.py": '"""A model."""\n\n\nVALUE = 1\n'}
    right, wrong = make_submission(subs, "right", tidy), make_submission(subs, "wrong", tidy)
    install_fake_backend(FakeBackend({("wrong", "answer"): ok("41")}))
    report = api.grade(toy, [str(right), str(wrong)], results_dir=tmp_path / "results", backend="fake",
                       backoff_s=0.0, log_to_mlflow=False)
    quality = {i.result.candidate: next(c for c in i.result.criteria if c.name == "code_quality")
               for i in report.items}
    assert quality["right"].score > 0.5 and "ungated_score" not in quality["right"].metrics
    assert quality["wrong"].score == 0 and quality["wrong"].metrics["ungated_score"] == quality["right"].score
    assert quality["wrong"].explanation.startswith(
        f"not counted: answer scored 0.00{needs}, so the submission did not do the task (answer: compared); "
        "as measured: ")


@pytest.mark.parametrize(("requires", "message"), [
    ("[nothing]", "grader 'code_quality' requires ['nothing']"),
    ("[code_quality]", "grader 'code_quality' requires ['code_quality']"),
])
def test_requires_names_other_criteria(tmp_path, requires, message):
    from harness.errors import SpecError
    from harness.spec import load_assignment

    toy = shutil.copytree(TOY, tmp_path / "toy")
    spec = toy / "assignment.yaml"
    spec.write_text(spec.read_text() + f"  - {{name: code_quality, grader: code_quality, weight: 1, "
                                       f"requires: {requires}}}\n")
    with pytest.raises(SpecError, match=re.escape(message)):
        load_assignment(toy)


@pytest.mark.parametrize("status", [StageStatus.TIMEOUT, StageStatus.OOM, StageStatus.OUTPUT_LIMIT])
def test_stage_limit_statuses_reach_the_result(tmp_path, status):
    sub = make_submission(tmp_path / "subs", "limited")
    report = run(tmp_path, [sub], FakeBackend({("limited", "fit"): fail(status, 137)}))
    assert report.items[0].result.status.value == status.value
    assert report.items[0].result.stages[0].exit_code == 137


def test_symlinked_output_is_refused_not_followed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("42")  # the right answer, planted where a symlink could reach it

    def link(request, output):
        (output / "answer.txt").symlink_to(secret)
        return ok()(request, output)

    sub = make_submission(tmp_path / "subs", "linker")
    result = run(tmp_path, [sub], FakeBackend({("linker", "answer"): link})).items[0].result
    answer = next(c for c in result.criteria if c.name == "answer")
    assert answer.score == 0 and "symlink" in answer.explanation


def test_infra_errors_are_retried_then_left_ungraded(tmp_path):
    attempts = []

    def flaky(request, output):
        attempts.append(request.name)
        raise InfraError("daemon went away")

    sub = make_submission(tmp_path / "subs", "unlucky")
    report = run(tmp_path, [sub], FakeBackend({("unlucky", "fit"): flaky}), retries=2)
    result = report.items[0].result
    assert len(attempts) == 3
    assert result.status is Status.INFRA_ERROR and result.total_score is None
    assert report.exit_code == InfraError.exit_code


def test_grader_crash_is_infra_not_a_zero(tmp_path):
    sub = make_submission(tmp_path / "subs", "crashy")
    report = run(tmp_path, [sub], FakeBackend({("crashy", "answer"): ok("crash-the-grader")}), retries=0)
    assert report.items[0].result.status is Status.INFRA_ERROR
    assert report.items[0].result.total_score is None


def test_a_grader_crash_is_attempted_once_not_retried(tmp_path):
    sub = make_submission(tmp_path / "subs", "crashy")
    backend = FakeBackend({("crashy", "answer"): ok("crash-the-grader")})
    result = run(tmp_path, [sub], backend, retries=2).items[0].result
    assert result.status is Status.INFRA_ERROR and result.total_score is None  # still never a zero
    assert backend.calls.count(("crashy", "answer")) == 1  # the same input crashes the same grader
    assert result.attempts == 1
    assert result.message == "ungraded: grader 'answer' crashed: RuntimeError: grader bug"


def test_a_failed_probe_is_attempted_once_and_a_transient_error_is_retried(tmp_path):
    assignment = tmp_path / "toy"  # the toy assignment, its answer stage a service with a probe
    shutil.copytree(TOY, assignment)
    spec = assignment / "assignment.yaml"
    spec.write_text(spec.read_text().replace(
        "    outputs: {answer.txt: 1k}\n",
        "    outputs: {answer.txt: 1k}\n    probe: {command: [python, probe.py], timeout: 2}\n"))
    calls = []

    def probed(request, output):
        calls.append(request.name)  # a probe killed at its limit: the harness's own code failed
        probe = RunResult(status=StageStatus.TIMEOUT, exit_code=137, seconds=2.0, log="probe log\n",
                          detail="killed after the 2 s limit")
        return dataclasses.replace(ok("42")(request, output), probe=probe)

    install_fake_backend(FakeBackend({("slow", "answer"): probed}))
    first = api.grade(assignment, [str(make_submission(tmp_path / "subs", "slow"))], backend="fake",
                      results_dir=tmp_path / "results", backoff_s=0.0, retries=2, log_to_mlflow=False)
    result = first.items[0].result
    assert calls.count("answer") == 1 and result.attempts == 1
    assert result.status is Status.INFRA_ERROR
    assert result.message.startswith("ungraded: the probe of stage answer failed (timeout")

    def flaky(request, output):
        calls.append(request.name)
        raise InfraError("docker failed while running stage fit: 500 Server Error")

    calls.clear()
    install_fake_backend(FakeBackend({("unlucky", "fit"): flaky}))
    again = api.grade(assignment, [str(make_submission(tmp_path / "subs2", "unlucky"))], backend="fake",
                      results_dir=tmp_path / "results", backoff_s=0.0, retries=2, log_to_mlflow=False)
    result = again.items[0].result
    assert calls == ["fit"] * 3 and result.attempts == 3
    assert result.status is Status.INFRA_ERROR
    assert result.message.startswith("ungraded after 3 attempts: docker failed")


def test_a_library_the_image_promises_missing_is_an_image_defect_not_the_candidates_error(tmp_path):
    # LightGBM's wheel loads the system's libgomp; an image without it failed every LightGBM
    # submission as `error`, as if the candidate's code were at fault.
    loader = ("Traceback (most recent call last):\n  File \"train.py\", line 3, in <module>\n"
              "OSError: libgomp.so.1: cannot open shared object file: No such file or directory\n")

    def missing(request, output):
        return RunResult(status=StageStatus.ERROR, exit_code=1, seconds=0.1, log=loader, detail="exit 1")

    def own_library(request, output):  # a library of the candidate's own: their problem
        return RunResult(status=StageStatus.ERROR, exit_code=1, seconds=0.1, detail="exit 1",
                         log="OSError: libmystuff.so.2: cannot open shared object file: No such file\n")

    checked: list[tuple[str, ...]] = []

    def image_lacks_it(request, output):  # the harness's own check, in the assignment's image
        checked.append(request.command)
        return RunResult(status=StageStatus.OK, exit_code=0, seconds=0.1, log="libgomp.so.1\n")

    subs = tmp_path / "subs"
    backend = FakeBackend({("lgbm", "fit"): missing, ("mine", "fit"): own_library,
                           ("?", "fit-libcheck"): image_lacks_it})
    items = by_candidate(run(tmp_path, [make_submission(subs, "lgbm"), make_submission(subs, "mine")],
                             backend, retries=2))
    lgbm = items["lgbm"].result
    assert lgbm.status is Status.INFRA_ERROR and lgbm.total_score is None and lgbm.attempts == 1
    assert lgbm.message.startswith("ungraded: image defect: stage fit could not load libgomp.so.1")
    assert items["mine"].result.status is Status.ERROR
    # checked once, for lgbm only, by harness code run without site packages or the submission
    assert [c[:4] for c in checked] == [("python3", "-I", "-S", "-c")] and checked[0][-1] == "libgomp.so.1"


def test_a_log_that_only_claims_a_missing_library_stays_the_candidates_error(tmp_path):
    # a failing submission could print the loader's message to be left ungraded instead of scored:
    # the image is checked, loads the library, and the failure stays the candidate's
    def claims(request, output):
        return RunResult(status=StageStatus.ERROR, exit_code=1, seconds=0.1, detail="exit 1",
                         log="OSError: libgomp.so.1: cannot open shared object file: No such file\n")

    def image_has_it(request, output):
        return RunResult(status=StageStatus.OK, exit_code=0, seconds=0.1, log="\n")

    backend = FakeBackend({("faker", "fit"): claims, ("?", "fit-libcheck"): image_has_it})
    result = run(tmp_path, [make_submission(tmp_path / "subs", "faker")], backend).items[0].result
    assert result.status is Status.ERROR and result.total_score is not None


def test_rerun_skips_graded_and_retries_ungraded(tmp_path):
    subs = tmp_path / "subs"
    good, flaky = make_submission(subs, "good"), make_submission(subs, "flaky")

    def down(request, output):
        raise InfraError("down")

    first = run(tmp_path, [good, flaky], FakeBackend({("flaky", "fit"): down}), retries=0)
    assert by_candidate(first)["flaky"].result.status is Status.INFRA_ERROR
    backend = FakeBackend({})
    second = run(tmp_path, [good, flaky], backend)
    items = by_candidate(second)
    assert items["good"].skipped and not items["flaky"].skipped
    assert items["flaky"].result.status is Status.OK
    assert {c for c, _ in backend.calls} == {"flaky"}
    forced = FakeBackend({})
    run(tmp_path, [good], forced, force=True)
    assert {c for c, _ in forced.calls} == {"good"}


def test_changed_content_is_a_new_result(tmp_path):
    sub = make_submission(tmp_path / "subs", "editor")
    first = run(tmp_path, [sub], FakeBackend({})).items[0]
    (sub / "run.py").write_text("print('v2')\n")
    second = run(tmp_path, [sub], FakeBackend({})).items[0]
    assert not second.skipped and second.result.key != first.result.key
    assert second.folder != first.folder and load_result(first.folder) is not None


def test_rejected_input_does_not_stop_the_batch(tmp_path):
    good = make_submission(tmp_path / "subs", "good")
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.py")
        tar.addfile(info)
    report = run(tmp_path, [good, evil, tmp_path / "missing"], FakeBackend({}))
    statuses = [i.result.status for i in report.items]
    assert statuses == [Status.OK, Status.REJECTED, Status.REJECTED]
    assert report.exit_code == IntakeError.exit_code
    assert report.items[0].folder is not None and load_result(report.items[0].folder) is not None


def test_results_lists_without_grading_and_json_line_has_contract_fields(tmp_path):
    subs = tmp_path / "subs"
    run(tmp_path, [make_submission(subs, "a"), make_submission(subs, "b")],
        FakeBackend({("b", "answer"): ok("0")}))
    found = api.results(TOY, results_dir=tmp_path / "results")
    assert [r.candidate for r in found] == ["a", "b"]  # best first
    line = json.loads(json.dumps(found[0].summary_line()))
    assert {"submission", "candidate", "status", "total_score", "criteria"} <= set(line)
    assert line["criteria"]["answer"] == {"score": 1.0, "weight": 3.0, "group": None,
                                          "metrics": {"right": 1.0}}


def test_parallel_jobs_grade_everything_once(tmp_path):
    subs = [make_submission(tmp_path / "subs", f"c{i}") for i in range(8)]
    backend = FakeBackend({})
    report = run(tmp_path, subs, backend, jobs=4)
    assert len(report.items) == 8 and all(i.result.status is Status.OK for i in report.items)
    assert sorted(backend.calls) == sorted((f"c{i}", s) for i in range(8) for s in ("fit", "answer"))


def test_non_finite_metrics_are_dropped_so_results_stay_loadable(tmp_path):
    from harness.core import GRADERS

    grader = GRADERS.get("completion")(name="c", weight=1, args=GRADERS.get("completion").Args())
    result = grader.criterion(score=0.5, metrics={"ok": 1.0, "nan": float("nan"), "inf": float("inf")},
                              explanation="x")
    assert result.metrics == {"ok": 1.0}


def test_same_submission_twice_in_one_batch_is_graded_once(tmp_path):
    sub = make_submission(tmp_path / "subs", "twice")
    backend = FakeBackend({})
    report = run(tmp_path, [sub, sub], backend, jobs=2)
    assert sorted(i.skipped for i in report.items) == [False, True]
    assert backend.calls.count(("twice", "fit")) == 1


def test_identical_code_from_two_candidates_gets_two_results(tmp_path):
    a = make_submission(tmp_path / "one", "same")
    b = make_submission(tmp_path / "two", "copy")
    (b / "NAME").write_text("same")  # byte-identical trees under two candidate names
    report = run(tmp_path, [a, b], FakeBackend({}))
    assert report.items[0].result.content_hash == report.items[1].result.content_hash
    assert report.items[0].result.key != report.items[1].result.key
    assert report.items[0].folder != report.items[1].folder


def test_failed_forced_regrade_keeps_the_earlier_graded_result(tmp_path):
    sub = make_submission(tmp_path / "subs", "keeper")
    first = run(tmp_path, [sub], FakeBackend({})).items[0]

    def down(request, output):
        raise InfraError("daemon went away")

    again = run(tmp_path, [sub], FakeBackend({("keeper", "fit"): down}), force=True, retries=0).items[0]
    assert again.result.status is Status.INFRA_ERROR
    kept = load_result(first.folder)
    assert kept is not None and kept.status is Status.OK and kept.total_score == 100.0
    assert (first.folder / "logs" / "fit.log").exists()


def test_unexpected_exception_leaves_one_submission_ungraded_and_the_batch_goes_on(tmp_path):
    def bug(request, output):
        raise ValueError("a bug in a backend")

    subs = [make_submission(tmp_path / "subs", n) for n in ("unlucky", "fine")]
    report = run(tmp_path, subs, FakeBackend({("unlucky", "fit"): bug}))
    items = by_candidate(report)
    unlucky = items["unlucky"].result
    assert unlucky.status is Status.INFRA_ERROR and "ValueError" in unlucky.message
    assert items["fine"].result.status is Status.OK


def test_same_folder_name_from_two_people_gets_two_candidates(tmp_path):
    alice = make_submission(tmp_path / "alice", "submission")
    bob = make_submission(tmp_path / "bob", "submission", {"run.py": "print('bob')\n"})
    (bob / "NAME").write_text("submission")
    report = run(tmp_path, [alice, bob], FakeBackend({}))
    assert sorted(i.result.candidate for i in report.items) == ["alice-submission", "bob-submission"]


def test_editing_the_spec_regrades(tmp_path):
    import shutil

    toy = tmp_path / "toy"
    shutil.copytree(TOY, toy)
    sub = make_submission(tmp_path / "subs", "edited")
    install_fake_backend(FakeBackend({}))
    first = api.grade(toy, [str(sub)], results_dir=tmp_path / "r", backend="fake", log_to_mlflow=False)
    spec = toy / "assignment.yaml"
    spec.write_text(spec.read_text().replace("weight: 3", "weight: 2"))
    second = api.grade(toy, [str(sub)], results_dir=tmp_path / "r", backend="fake", log_to_mlflow=False)
    assert not second.items[0].skipped and second.items[0].result.key != first.items[0].result.key


def test_summary_table_does_not_interpret_candidate_text_as_markup():
    import io

    from rich.console import Console as RichConsole

    from harness.output import summary_table
    from harness.results import SubmissionResult

    result = SubmissionResult(key="k", assignment="toy", assignment_version="1", submission="x",
                              submission_id="s", candidate="[/]evil", status=Status.REJECTED,
                              message="member [bold red]../x[/] refused", harness_version="0")
    out = io.StringIO()
    RichConsole(file=out, width=200).print(summary_table([result]))
    assert "[/]evil" in out.getvalue() and "[bold red]../x[/]" in out.getvalue()


def test_a_full_host_disk_is_infra_not_the_candidates_error(tmp_path, monkeypatch):
    import os
    from types import SimpleNamespace

    real = os.statvfs
    full = SimpleNamespace(f_bavail=1, f_frsize=4096)  # fake: one free block
    sub = make_submission(tmp_path / "subs", "victim")

    def fill_disk(request, output):
        monkeypatch.setattr(os, "statvfs", lambda path: full)
        return fail()(request, output)  # the stage dies of ENOSPC, as it would on a full disk

    report = run(tmp_path, [sub], FakeBackend({("victim", "fit"): fill_disk}), retries=0)
    monkeypatch.setattr(os, "statvfs", real)
    result = report.items[0].result
    assert result.status is Status.INFRA_ERROR and "disk" in result.message
    assert result.total_score is None


def test_messages_drop_characters_that_could_disguise_text():
    from harness.core.text import one_line

    disguised = "ok\u202e\u200bgnirts\x85\x1b[31mred"
    assert one_line(disguised) == "ok gnirts red"


def test_results_show_the_newest_version_per_candidate_unless_all(tmp_path):
    sub = make_submission(tmp_path / "subs", "reviser")
    run(tmp_path, [sub], FakeBackend({}))
    (sub / "run.py").write_text("print('v2')\n")
    newer = run(tmp_path, [sub], FakeBackend({})).items[0].result
    latest = api.results(TOY, results_dir=tmp_path / "results")
    assert [r.content_hash for r in latest] == [newer.content_hash]
    assert len(api.results(TOY, results_dir=tmp_path / "results", latest_only=False)) == 2


def test_log_results_feeds_mlflow_once_and_a_refused_log_exits_as_infra(tmp_path):
    from mlflow.tracking import MlflowClient

    subs = [make_submission(tmp_path / "subs", n) for n in ("a", "b")]
    report = run(tmp_path, subs, FakeBackend({}))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert api.log_results(TOY, results_dir=tmp_path / "results", tracking_uri=uri) == 2
    assert api.log_results(TOY, results_dir=tmp_path / "results", tracking_uri=uri) == 2
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("toy@1.0")
    runs = client.search_runs([experiment.experiment_id])
    assert len([r for r in runs if "mlgrade.cohort" not in r.data.tags]) == 2  # logged once each
    assert len(runs) == 3  # and one parent: the leaderboard
    page = next((tmp_path / "results").rglob("index.html")).read_text()  # the cohort page links each run
    assert all(r.info.run_id in page for r in runs if "mlgrade.cohort" not in r.data.tags)
    report.tracking_uri = uri  # as if logging had been on, and MLflow refused both results
    assert report.unlogged == 2 and report.exit_code == InfraError.exit_code


class ListSink:
    """A fake result sink (the ResultSink protocol, as a team's own store would implement it):
    it keeps what it is handed, and refuses one candidate's result."""

    uri = "memory://test"

    def __init__(self, refuse: str) -> None:
        self.logged: list[tuple[str, bool]] = []
        self.finished: list[int] = []
        self.refuse = refuse

    def log(self, item, *, replace):
        if item.result.candidate == self.refuse:
            item.result.message += " [refused by the sink]"
            return None
        self.logged.append((item.result.candidate, replace))
        return f"id-{item.result.candidate}"

    def after_batch(self, assignment, report, results_dir):
        self.finished.append(len(report.items))


def test_any_sink_gets_each_graded_result_once_and_the_batch_end_and_a_refusal_loses_nothing(tmp_path):
    from harness.batch import run_batch
    from harness.options import GradeOptions

    subs = tmp_path / "subs"
    sources = [str(make_submission(subs, n)) for n in ("good", "broken", "bob")]
    install_fake_backend(FakeBackend({("broken", "fit"): fail()}))
    sink = ListSink(refuse="bob")
    options = GradeOptions(results_dir=tmp_path / "results", backend="fake", backoff_s=0.0)
    report = run_batch(assignment=api.find_assignment(TOY), submissions=sources, options=options, sink=sink,
                       on_event=None)
    assert sorted(sink.logged) == [("broken", False), ("good", False)] and sink.finished == [3]
    items = by_candidate(report)
    assert items["good"].run_id == "id-good" and items["bob"].run_id is None
    assert report.unlogged == 0  # only an MLflow tracking URI counts results as unlogged
    assert load_result(items["bob"].folder).status is Status.OK  # refused by the sink, safe on disk
