"""Grade one staged submission: run its stages in the sandbox, read outputs back, score them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from harness._stages import RunState, run_sandboxed
from harness._workdirs import owned_name, remove_tree, replace_folder
from harness.core import CriterionResult, Grader, GradingContext, OutputFile
from harness.core.text import one_line, reviewer_text
from harness.errors import DeterministicInfraError, HarnessError, InfraError, sandbox_errors
from harness.intake import StagedSubmission
from harness.report import render_report
from harness.results import (
    StageRecord,
    Status,
    SubmissionResult,
    new_result,
    now_iso,
    save_result,
    total_score,
    write_atomic,
)
from harness.review import carried_review, manual_criteria, previous_of
from harness.runtime import Runtime, grader_versions
from harness.spec import Assignment
from sandbox import OutputRefused, read_bounded
from sandbox._cpus import host_locks

REVIEW_DIR = "review"  # the submission's files a reviewer reads (spec: review_files)


def grade_submission(*, assignment: Assignment, staged: StagedSubmission, runtime: Runtime,
                     key: str, result_dir: Path, scratch: Path,
                     on_step: Callable[[str], None] | None = None,
                     earlier: SubmissionResult | None = None) -> SubmissionResult:
    """Run and score one submission; write result.json (last) and report.md into `result_dir`.
    `on_step` is told the name of each step as it starts (see RunState.on_step). `earlier` is the
    result being replaced: its manual review is kept when it judged the same content, and its
    scores are remembered (`previous`) when it was graded under another key (harness.review).

    Candidate failures become statuses. Raises InfraError when the harness itself fails
    (DeterministicInfraError when it would fail again on the same submission).
    """
    started, t0 = now_iso(), time.monotonic()
    # Built aside and swapped in whole, so a re-grade that fails leaves the previous result as it was.
    final_dir, result_dir = result_dir, result_dir.with_name(owned_name(f".{result_dir.name}"))
    (result_dir / "logs").mkdir(parents=True)
    run = RunState(image=runtime.image, image_id=runtime.image_id)
    if on_step is not None:
        run.on_step = on_step
    try:
        _check_contract(assignment, staged, run)
        _copy_review_files(assignment, staged, result_dir)
        if run.status is Status.OK and runtime.stages is not None:  # on a cluster's worker
            runtime.stages.run(assignment=assignment, staged=staged, run=run, result_dir=result_dir)
        elif run.status is Status.OK:
            run_sandboxed(assignment, staged, runtime, run, result_dir, scratch)
        run.on_step("scoring")
        criteria = _unmeasured(_score(assignment, staged, runtime, run, result_dir), run)
        review = carried_review(earlier, staged.content_hash)
        criteria += manual_criteria(assignment.spec, review, run.status)  # invalid: 0, not pending
        _outputs_for_reviewers(result_dir / "outputs")  # graded as written, kept terminal-safe
    except BaseException:
        remove_tree(result_dir)
        raise
    finally:
        remove_tree(scratch)
    result = new_result(
        assignment=assignment, source=staged.source, staged=staged, key=key, status=run.status,
        backend=runtime.backend.name, grader_versions=grader_versions(runtime.graders),
        total_score=None if run.status is Status.MACHINE_BUSY else total_score(criteria), message=run.message,
        reason=run.reason, criteria=criteria, stages=run.stages, image=run.image or None,
        image_id=run.image_id, started_at=started, duration_s=round(time.monotonic() - t0, 3),
        artifacts=_artifacts(result_dir), review=review, previous=previous_of(earlier, key),
    )
    result.artifacts["report"] = "report.md"
    write_atomic(result_dir / "report.md", render_report(result, folder=result_dir))
    save_result(result, result_dir)
    replace_folder(result_dir, final_dir)
    return result


def _check_contract(assignment: Assignment, staged: StagedSubmission, run: RunState) -> None:
    spec = assignment.spec
    missing = [f for f in spec.required_files if not (staged.path / f).is_file()]
    if spec.required_one_of and not any((staged.path / f).is_file() for f in spec.required_one_of):
        missing.append(f"one of {' or '.join(spec.required_one_of)}")
    if missing:
        run.status, run.message = Status.INVALID, f"required files missing: {', '.join(missing)}"


def _copy_review_files(assignment: Assignment, staged: StagedSubmission, result_dir: Path) -> None:
    """Copy the files the spec names for reviewers (bounded, no links) into `review/` as terminal-safe
    text (see `reviewer_text`); a missing or refused one becomes a note in `review/MISSING.txt`, never
    a failure, and so does a file that had to be changed to be shown safely."""
    notes = []
    root = staged.path.resolve()
    for name, cap in assignment.spec.review_files.items():
        if root not in (staged.path / name).resolve().parents:  # a linked folder on the way out
            notes.append(f"{name}: outside the submission")
            continue
        try:
            data = read_bounded(staged.path / name, cap)
        except OutputRefused as exc:
            notes.append(f"{name}: {exc.reason}")
            continue
        target = result_dir / REVIEW_DIR / name
        target.parent.mkdir(parents=True, exist_ok=True)
        text, changes = reviewer_text(data)
        target.write_text(text, encoding="utf-8", newline="")
        notes += [f"{name}: {change}" for change in changes]
    if notes:
        write_atomic(result_dir / REVIEW_DIR / "MISSING.txt", "\n".join(notes) + "\n")


_BINARY_OUTPUTS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".npy", ".npz", ".parquet", ".feather", ".pt",
                             ".pth", ".pkl", ".joblib", ".onnx", ".zip", ".gz", ".bz2", ".xz", ".hdr"})


def _outputs_for_reviewers(outputs: Path) -> None:
    """Rewrite the stored outputs as reviewer text (`reviewer_text`), once graders have read them as
    written. Notebooks stay valid JSON: what is removed can only stand inside its strings. Their
    HTML renderings are sanitised when rendered and are left alone, and so are files whose suffix
    says they are binary (_BINARY_OUTPUTS: images, arrays, models), which a reviewer does not print."""
    for path in sorted(outputs.rglob("*")):
        if not path.is_file() or path.is_symlink() or (path.suffix == ".html"
                                                        and path.with_suffix(".ipynb").is_file()):
            continue
        if path.suffix.lower() in _BINARY_OUTPUTS:  # not printed by a reviewer; rewriting would corrupt it
            continue
        data = path.read_bytes()
        text, _ = reviewer_text(data)
        if text.encode("utf-8") != data:
            path.write_text(text, encoding="utf-8", newline="")


def _score(assignment: Assignment, staged: StagedSubmission, runtime: Runtime, run: RunState,
           result_dir: Path) -> list:
    if run.status is Status.INVALID:  # one rule for every assignment: it scores 0 and nothing is run
        return [grader.criterion(score=0.0, metrics={}, explanation=f"not graded: {run.message}")
                for grader in runtime.graders]
    declared = {key for stage in assignment.spec.stages for key in stage.output_keys()}
    outputs = {n: run.outputs.get(n) or OutputFile(n, None, _why_missing(run)) for n in declared}
    criteria = []
    # graders run tools (code quality): not beside a measurement
    with sandbox_errors(), host_locks().other_stage():
        for grader in runtime.graders:
            criteria.append(_grade_one(grader, assignment, staged, runtime, run, result_dir, outputs))
    return _apply_requires(assignment, criteria)


def _grade_one(grader: Grader, assignment: Assignment, staged: StagedSubmission, runtime: Runtime,
               run: RunState, result_dir: Path, outputs: dict[str, OutputFile]) -> CriterionResult:
    artifacts = result_dir / "artifacts" / grader.name
    artifacts.mkdir(parents=True, exist_ok=True)
    ctx = GradingContext(submission_dir=staged.path, outputs=outputs, hidden=runtime.data.hidden,
                         visible=runtime.data.visible, assignment_dir=assignment.dir,
                         artifacts_dir=artifacts, stage_statuses=_stage_statuses(run.stages),
                         stages=tuple(s.name for s in assignment.spec.stages))
    try:
        criterion = grader.grade(ctx)
    except HarnessError:
        raise
    except (OSError, MemoryError) as exc:  # a full disk, a busy machine: a retry may succeed
        raise InfraError(f"grader {grader.name!r} failed: {exc.__class__.__name__}: {exc}") from exc
    except Exception as exc:  # a grader bug is the harness's failure, never the candidate's zero
        raise DeterministicInfraError(f"grader {grader.name!r} crashed: {exc.__class__.__name__}: "
                                      f"{exc}") from exc
    if not any(artifacts.iterdir()):
        artifacts.rmdir()  # most graders write nothing: keep the result folder readable
    return criterion


def _unmeasured(criteria: list[CriterionResult], run: RunState) -> list[CriterionResult]:
    """When the machine stayed busy through a timed service's measurements (RunState.machine.busy),
    its timing criteria are ungraded, and so is the result: status machine_busy, no total, and
    re-graded on the next run; what was measured stays in the report. Unless they all have full
    marks: a quieter machine could not raise them."""
    if run.machine is not None:  # what the machine was like, beside what it measured (MLflow, reports)
        figures = {"machine_reference_p99_ms": run.machine.reference_p99_ms,
                   "machine_other_cores": run.machine.other_cores, "machine_attempts": run.machine.attempts}
        extra = {k: float(v) for k, v in figures.items() if v is not None}
        criteria = [c.model_copy(update={"metrics": c.metrics | extra}) if c.name in run.timed_criteria else c
                    for c in criteria]
    busy = run.machine.busy if run.machine is not None else ""
    if not busy:
        return criteria
    timed = [c for c in criteria if c.name in run.timed_criteria]
    if timed and all(c.score == 1.0 for c in timed):
        # a busy machine only slows a server down: full marks measured on one are exact as they stand
        note = f" Measured on a busy machine ({busy}), with full marks all the same."
        return [c.model_copy(update={"explanation": c.explanation + note}) if c in timed else c
                for c in criteria]
    # whatever else the stages did: a result with an ungraded criterion has no total to rank by
    failed = f" (and {run.status.value}: {run.message})" if run.status is not Status.OK else ""
    run.status, run.reason = Status.MACHINE_BUSY, busy
    run.message = f"{busy}; re-measured on the next run{failed}"
    return [c.model_copy(update={"ungraded": busy}) if c in timed else c for c in criteria]


def _apply_requires(assignment: Assignment, criteria: list[CriterionResult]) -> list[CriterionResult]:
    """Zero each criterion whose required criteria (spec: graders[].requires) did not all score
    above 0 and at least their minimum, keeping what it measured in its metrics (`ungated_score`)
    and explanation."""
    by_name = {c.name: c for c in criteria}
    gated = []
    for gspec, criterion in zip(assignment.spec.graders, criteria, strict=True):
        failed = {name: least for name, least in gspec.requires.items()
                  if by_name[name].score == 0 or by_name[name].score < least}
        if failed:
            scored = " and ".join(f"{name} scored {by_name[name].score:.2f}" + (f" (needs {least:g})" if least
                                                                                else "")
                                  for name, least in failed.items())
            why = "; ".join(f"{name}: {one_line(by_name[name].explanation, 160)}" for name in failed)
            criterion = criterion.model_copy(update={
                # an ungated_score the grader set itself (an inner gate's) is the truer one: kept
                "score": 0.0, "metrics": {"ungated_score": criterion.score, **criterion.metrics},
                "explanation": f"not counted: {scored}, so the submission did not do the task ({why}); "
                               f"as measured: {criterion.explanation}"})
        gated.append(criterion)
    return gated


def _stage_statuses(records: list[StageRecord]) -> dict[str, str]:
    """Status per record ("answer/first") and per stage ("answer": its first failed run, else ok)."""
    statuses: dict[str, str] = {}
    for record in records:
        statuses[record.name] = record.status
        stage = record.name.split("/")[0]
        if statuses.get(stage, "ok") == "ok":
            statuses[stage] = record.status
    return statuses


def _why_missing(run: RunState) -> str:
    if run.status is Status.OK:
        return "not written by the submission"
    return f"not produced: {run.message}"


def _artifacts(result_dir: Path) -> dict[str, str]:
    found = {}
    for path in sorted(result_dir.rglob("*")):
        if path.is_file() and path.name != "result.json":
            rel = path.relative_to(result_dir).as_posix()
            found[rel] = rel
    return found
