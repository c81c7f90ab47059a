"""Stages with `runs`: one container per data set, isolated from each other, outputs per run.

Played by the fake backend (tests/fakes.py); the Docker path is covered by the abtest end-to-end
test (tests/test_abtest_docker.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import api
from harness.errors import HarnessError, SpecError
from harness.results import Status
from harness.spec import AssignmentSpec
from sandbox import RunResult, StageStatus
from tests.fakes import FIXTURES, FakeBackend, install_fake_backend, make_submission

MULTIRUN = FIXTURES / "assignments" / "multirun"


def _mount(request, target: str) -> Path:
    return next(m.source for m in request.mounts if m.target == target)


def fit(request, output):
    base = (_mount(request, "/data/shared") / "base.txt").read_text()
    (_mount(request, "/workspace") / "model.txt").write_text(base)
    (_mount(request, "/submission") / "beside.txt").write_text(base)  # a model file beside the script
    return RunResult(status=StageStatus.OK, exit_code=0, seconds=0.01, log="fit\n")


def answer(seen: list, *, fail_on: str | None = None, answers_on_failure: bool = False):
    """Writes model + value; records what each run could see of the others' workspace writes."""

    def play(request, output):
        value = (_mount(request, "/data/input") / "value.txt").read_text()
        workspace = _mount(request, "/workspace")
        sources = tuple(str(m.source) for m in request.mounts)
        beside = _mount(request, "/submission")
        seen.append((value, sorted(p.name for p in workspace.iterdir()), dict(request.env), sources,
                     sorted(p.name for p in beside.iterdir())))
        (workspace / f"left-by-{value}.txt").write_text("x")
        (beside / f"left-by-{value}.txt").write_text("x")
        model = (workspace / "model.txt").read_text()
        if value == fail_on:
            (output / "executed.ipynb").write_text('{"cells": []}')
            if answers_on_failure:
                (output / "answer.txt").write_text(str(int(model) + int(value)))
            return RunResult(status=StageStatus.ERROR, exit_code=1, seconds=0.01, log="boom\n",
                             detail="exit 1")
        (output / "answer.txt").write_text(str(int(model) + int(value)))
        return RunResult(status=StageStatus.OK, exit_code=0, seconds=0.01, log=f"run {value}\n")

    return play


def grade(tmp_path, backend, files=None):
    install_fake_backend(backend)
    sub = make_submission(tmp_path / "subs", "cand", {"main.py": "", **(files or {})})
    report = api.grade(MULTIRUN, [str(sub)], results_dir=tmp_path / "results", backend="fake",
                       backoff_s=0.0, log_to_mlflow=False)
    return report.items[0]


def test_each_run_gets_its_data_and_a_private_copy_of_the_workspace(tmp_path):
    seen: list = []
    item = grade(tmp_path, FakeBackend({("cand", "fit"): fit, ("cand", "answer"): answer(seen)}))
    result = item.result
    assert result.status is Status.OK and result.total_score == 100.0
    assert sorted(v for v, *_ in seen) == ["1", "2", "3"]
    # every run sees the fit stage's model and nothing another run wrote
    assert all(files == ["model.txt"] for _, files, *_ in seen)
    # the same for the working copy of the submission: fit's file beside the script, no other run's
    assert all(beside == ["NAME", "beside.txt", "main.py", "run.py"] for *_, beside in seen)
    # nothing in the environment or the mount sources (visible in /proc/self/mountinfo) names the run
    assert all(not any(r in str(env) for r in ("first", "second", "third")) for _, _, env, *_ in seen)
    assert len({sources for *_, sources, _ in seen}) == 1
    assert not (tmp_path / "subs" / "cand" / "beside.txt").exists()  # the original is untouched
    assert [s.name for s in result.stages] == ["fit", "answer/first", "answer/second", "answer/third"]
    assert (item.folder / "outputs" / "third" / "answer.txt").read_text() == "13"
    assert "run 2" in (item.folder / "logs" / "answer" / "second.log").read_text()


def test_a_failed_run_fails_the_submission_but_the_other_runs_are_graded(tmp_path):
    seen: list = []
    play = answer(seen, fail_on="2", answers_on_failure=True)
    item = grade(tmp_path, FakeBackend({("cand", "fit"): fit, ("cand", "answer"): play}))
    result = item.result
    assert len(seen) == 3  # the third run still ran
    assert result.status is Status.ERROR and "on runs second" in result.message
    scores = {c.name: c.score for c in result.criteria}
    assert scores["third"] == 1.0
    # what the failed run wrote is not graded, but its notebook is kept (and rendered) for reviewers
    assert scores["second"] == 0.0
    second = next(c for c in result.criteria if c.name == "second")
    assert "not graded" in second.explanation and "answer/second failed" in second.explanation
    assert not (item.folder / "outputs" / "second" / "answer.txt").exists()
    assert (item.folder / "outputs" / "second" / "executed.html").is_file()


def test_groups_share_a_summary_column(tmp_path):
    from harness.results import group_scores

    seen: list = []
    result = grade(tmp_path, FakeBackend({("cand", "fit"): fit,
                                          ("cand", "answer"): answer(seen, fail_on="3")})).result
    assert group_scores(result.criteria) == {"runs": 50.0, "completion": 50.0}  # fit ok, answer not
    assert next(c for c in result.criteria if c.name == "second").group == "runs"


def test_one_of_the_entry_points_is_required(tmp_path):
    backend = FakeBackend({})
    install_fake_backend(backend)
    sub = make_submission(tmp_path / "subs", "cand")  # neither main.ipynb nor main.py
    report = api.grade(MULTIRUN, [str(sub)], results_dir=tmp_path / "results", backend="fake",
                       backoff_s=0.0, log_to_mlflow=False)
    result = report.items[0].result
    assert result.status is Status.INVALID and "one of main.ipynb or main.py" in result.message
    assert backend.calls == []


def test_review_files_are_copied_and_links_are_not_followed(tmp_path):
    seen: list = []
    backend = FakeBackend({("cand", "fit"): fit, ("cand", "answer"): answer(seen)})
    item = grade(tmp_path, backend, files={"NOTES.md": "we should ship"})
    assert (item.folder / "review" / "NOTES.md").read_text() == "we should ship"
    sub = make_submission(tmp_path / "subs", "linked", {"main.py": "", "inner.md": "x"})
    (sub / "NOTES.md").symlink_to("inner.md")  # inside the submission, so intake keeps it
    report = api.grade(MULTIRUN, [str(sub)], results_dir=tmp_path / "results", backend="fake",
                       backoff_s=0.0, log_to_mlflow=False)
    folder = report.items[0].folder
    assert not (folder / "review" / "NOTES.md").exists()
    assert "NOTES.md: symlink" in (folder / "review" / "MISSING.txt").read_text()


def _spec(**stage):
    return {"schema_version": 1, "id": "x", "version": "1", "title": "x", "brief": "B.md",
            "data": {"visible": {"a": "a", "input": "i"}},
            "stages": [{"name": "s", "command": ["true"], "timeout": 1, **stage}],
            "graders": [{"name": "c", "grader": "completion", "weight": 1}]}


@pytest.mark.parametrize(("stage", "message"), [
    ({"runs": ["a", "missing"]}, "unknown data ['missing']"),
    ({"runs": ["a", "a"]}, "runs repeat"),
    ({"runs": ["a"], "data": ["input"]}, "/data/input"),
])
def test_bad_runs_are_spec_errors(stage, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AssignmentSpec.model_validate(_spec(**stage))


def test_x_keys_hold_anchors_and_are_ignored(tmp_path):
    from harness.spec import load_spec

    path = tmp_path / "assignment.yaml"
    path.write_text("schema_version: 1\nid: x\nversion: '1'\ntitle: x\nbrief: B.md\n"
                    "x-common: &w {weight: 2}\n"
                    "stages: [{name: s, command: ['true'], timeout: 1}]\n"
                    "graders: [{name: c, grader: completion, <<: *w}]\n")
    assert load_spec(path).graders[0].weight == 2
    path.write_text(path.read_text().replace("x-common", "common"))
    with pytest.raises(SpecError, match="common"):
        load_spec(path)


def test_the_candidate_kit_has_brief_and_public_data_only(tmp_path):
    kit = tmp_path / "kit"
    api.export_kit(MULTIRUN, kit, results_dir=tmp_path / "results")
    files = sorted(p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file())
    # no other run, no hidden answers; and no check.yaml, since every stage mounts `shared`, which is
    # not public, so `harness check --run` would have nothing to run
    assert files == ["BRIEF.md", "data/first/value.txt"]
    with pytest.raises(HarnessError, match="not empty"):
        api.export_kit(MULTIRUN, kit, results_dir=tmp_path / "results")


def test_a_group_may_not_take_the_name_of_an_ungrouped_criterion():
    from pydantic import ValidationError

    spec = _spec()
    spec["graders"] = [{"name": "c", "grader": "completion", "weight": 1},
                       {"name": "d", "group": "c", "grader": "completion", "weight": 1}]
    with pytest.raises(ValidationError, match="group 'c' has the name of an ungrouped criterion"):
        AssignmentSpec.model_validate(spec)


# Each sequence a terminal would act on: an OSC 52 clipboard write, a window title, a C1 CSI that
# clears the screen, colours, a bell and a backspace, a bare carriage return that would overwrite
# the line, and the bidi overrides and isolates and a zero-width space that disguise text. The CSI
# sequences go whole; the others lose their ESC, BEL or ST, and what is left is plain text.
HOSTILE = ("Ship it.\x1b]52;c;Y3VybCBldmlsLnNofHNo\x07 \x1b]0;innocent title\x1b\\now\n"
           "\x9b2J\x1b[31mred\x1b[0m \u202eevil\u202c \u2066iso\u2069 zero\u200bwidth\n"
           "\tindented\r\nhidden\rshown bell\x07 backspace\x08\n")
VISIBLE = ("Ship it.", "now", "red", "evil", "iso", "zero", "width", "\tindented\n", "hidden", "shown bell",
           "backspace")


def assert_terminal_safe(data: bytes) -> str:
    text = data.decode("utf-8")  # always written as UTF-8
    raw = [hex(ord(c)) for c in text if c in "\x1b\x07\x08\r" or "\x80" <= c <= "\x9f"
           or "\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069" or c == "\u200b"]
    assert not raw, raw
    return text


def test_files_kept_for_reviewers_carry_no_terminal_controls_and_keep_their_text(tmp_path):
    def hostile(request, output):
        value = (_mount(request, "/data/input") / "value.txt").read_text()
        (output / "answer.txt").write_text(str(int((_mount(request, "/workspace") / "model.txt").read_text())
                                               + int(value)) + ("\x1b[8m" if value == "2" else ""))
        (output / "executed.ipynb").write_text(json.dumps(
            {"cells": [{"cell_type": "markdown", "metadata": {}, "source": HOSTILE}], "metadata": {},
             "nbformat": 4, "nbformat_minor": 5}, ensure_ascii=False))
        return RunResult(status=StageStatus.OK, exit_code=0, seconds=0.01, log=HOSTILE)

    item = grade(tmp_path, FakeBackend({("cand", "fit"): fit, ("cand", "answer"): hostile}),
                 files={"NOTES.md": HOSTILE})
    folder = item.folder
    for path in (folder / "review" / "NOTES.md", folder / "logs" / "answer" / "second.log"):
        text = assert_terminal_safe(path.read_bytes())
        assert all(v in text for v in VISIBLE), (path, text)
        assert "Ship it.]52;c;Y3VybCBldmlsLnNofHNo ]0;innocent title\\now\n" in text  # inert text now
        assert "hidden\nshown" in text  # a bare CR is a new line: nothing overwrites what came before
    # JSON escapes ESC and BEL as \u001b and \u0007 (plain text to a terminal); C1 and bidi go
    notebook = assert_terminal_safe((folder / "outputs" / "second" / "executed.ipynb").read_bytes())
    source = json.loads(notebook)["cells"][0]["source"]  # still a notebook
    assert all(v.strip() in source for v in VISIBLE) and "\x9b" not in source and "\u202e" not in source
    assert assert_terminal_safe((folder / "outputs" / "second" / "answer.txt").read_bytes()) == "12"
    scores = {c.name: c.score for c in item.result.criteria}
    assert scores == {"second": 0.0, "third": 1.0, "completion": 1.0}  # graded on the bytes as written
    assert "NOTES.md: 14 terminal control" in (folder / "review" / "MISSING.txt").read_text()


def test_a_review_file_that_is_not_utf8_is_kept_as_text_with_a_note(tmp_path):
    item = grade(tmp_path, FakeBackend({("cand", "fit"): fit, ("cand", "answer"): answer([])}),
                 files={"NOTES.md": "naïve café — ship\n"})
    assert (item.folder / "review" / "NOTES.md").read_text() == "naïve café — ship\n"
    sub = make_submission(tmp_path / "subs", "binary", {"main.py": ""})
    (sub / "NOTES.md").write_bytes(b"ship \xff\xfe it \x9b2J\x1b]52;c;eA==\x07done\n")
    report = api.grade(MULTIRUN, [str(sub)], results_dir=tmp_path / "results", backend="fake",
                       backoff_s=0.0, log_to_mlflow=False)
    folder = report.items[0].folder
    text = assert_terminal_safe((folder / "review" / "NOTES.md").read_bytes())
    assert text == "ship \ufffd\ufffd it \ufffd2J]52;c;eA==done\n"
    assert "NOTES.md: not UTF-8" in (folder / "review" / "MISSING.txt").read_text()
    assert not (item.folder / "review" / "MISSING.txt").exists()  # a clean file gets no note


def test_the_disk_limit_grows_by_the_submission_as_handed_in_not_by_what_stages_wrote_there(tmp_path):
    # the working copy of the submission does not count against a stage's disk limit, but what an
    # earlier stage wrote into it does: it must not buy the next stage a larger allowance
    limits: list[int] = []

    def fit_big(request, output):
        limits.append(request.limits.disk_bytes)
        (_mount(request, "/workspace") / "model.txt").write_text("10")
        (_mount(request, "/submission") / "big.bin").write_bytes(b"\0" * (8 << 20))
        return RunResult(status=StageStatus.OK, exit_code=0, seconds=0.01, log="fit\n")

    def answer_limit(request, output):
        limits.append(request.limits.disk_bytes)
        (output / "answer.txt").write_text("11")
        return RunResult(status=StageStatus.OK, exit_code=0, seconds=0.01, log="ok\n")

    grade(tmp_path, FakeBackend({("cand", "fit"): fit_big, ("cand", "answer"): answer_limit}))
    handed_in = sum(p.stat().st_size for p in (tmp_path / "subs" / "cand").rglob("*") if p.is_file())
    spec_limit = 1 << 30  # the multirun fixture sets no disk limit: the spec's default, 1 GiB
    assert len(limits) == 4 and set(limits) == {spec_limit + handed_in}


def test_every_sandbox_outcome_has_one_submission_status_and_records_keep_the_type():
    """The sandbox's StageStatus and the harness's Status meet in one typed table; a new sandbox
    outcome without a status fails here, not as a KeyError in a candidate's grade."""
    from pydantic import ValidationError

    from harness.results import STATUS_OF_STAGE, StageRecord

    assert set(STATUS_OF_STAGE) == set(StageStatus)
    assert {stage.value: status.value for stage, status in STATUS_OF_STAGE.items()} == {
        "ok": "ok", "error": "error", "timeout": "timeout", "oom": "oom", "output_limit": "output_limit",
        "disk_limit": "disk_limit"}
    record = StageRecord.model_validate_json('{"name": "fit", "status": "oom"}')  # as result.json has it
    assert record.status is StageStatus.OOM and record.model_dump(mode="json")["status"] == "oom"
    with pytest.raises(ValidationError):
        StageRecord(name="fit", status="exploded")
