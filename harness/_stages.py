"""Run a submission's stages in the sandbox and collect what they wrote (bounded, validated)."""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from harness._quiet import calibration_request, check_machine, warm_request
from harness._reasons import read_failure
from harness._workdirs import remove_tree
from harness.core import OutputFile
from harness.core.text import one_line, terminal_safe
from harness.errors import DeterministicInfraError, InfraError, sandbox_errors
from harness.intake import StagedSubmission
from harness.notebook_html import render_notebook
from harness.results import STATUS_OF_STAGE, MachineCheck, StageRecord, Status
from harness.runtime import InvalidSubmission
from harness.spec import RUN_INPUT, TESTS_MOUNT, Assignment, StageSpec
from sandbox import (
    RUNNERS_DIR,
    RUNNERS_MOUNT,
    Limits,
    Mount,
    OutputRefused,
    RunRequest,
    RunResult,
    StageStatus,
    copy_workspace,
    make_writable_dir,
    read_bounded,
    tree_size,
)
from sandbox._base import LIBRARY_CHECK, WHEEL_SYSTEM_LIBRARIES
from sandbox._cpus import host_locks

if TYPE_CHECKING:
    from harness.runtime import Runtime

PROBE_PIDS = 32768  # see _probe_request
_KERNEL_DIED = re.compile(r"^run\.py: (.*: kernel died .*)$", re.MULTILINE)
_LOG_TAIL_CHARS = 4096
PROBE_BUDGET_ENV = "MLGRADE_PROBE_BUDGET_S"  # = sandbox/runners/probe.py's BUDGET_ENV


def probe_budget_s(timeout_s: float) -> float:
    """The seconds a probe plans its phases within: its time limit less a margin for starting the
    interpreter, writing its report and exiting (5% of the limit, 2 to 30 s)."""
    return round(timeout_s - min(max(0.05 * timeout_s, 2.0), 30.0), 3)
_DISK_MARGIN = 256 << 20  # free space kept beyond a stage's own disk limit
_DISK_LOW = 64 << 20  # below this after a failed stage, the host disk (not the stage) is to blame


@dataclass
class RunState:
    """Mutable state of one grading."""

    status: Status = Status.OK
    message: str = ""
    reason: str = ""  # the failing stage's exception line (SubmissionResult.reason)
    stages: list[StageRecord] = field(default_factory=list)
    outputs: dict[str, OutputFile] = field(default_factory=dict)
    image: str = ""
    image_id: str | None = None
    #: the last machine check of a timed service (spec probe.quiet), and the criteria it bears on:
    #: still busy after the last attempt, those criteria are ungraded
    machine: MachineCheck | None = None
    timed_criteria: tuple[str, ...] = ()
    #: told each step as it starts (a stage, "predict/first" for a run, "image", "scoring"): progress
    on_step: Callable[[str], None] = field(default=lambda step: None, repr=False)


def _stage_request(assignment: Assignment, stage: StageSpec, *, submission: Mount, runtime: Runtime,
                   image: str, workspace: Path, output: Path, run_input: Path | None = None,
                   copy_bytes: int = 0) -> RunRequest:
    mounts = [submission, Mount(workspace, "/workspace", read_only=False),
              Mount(output, "/output", read_only=False), Mount(RUNNERS_DIR, RUNNERS_MOUNT)]
    mounts += [Mount(runtime.data.visible[name], f"/data/{name}") for name in stage.data]
    if run_input is not None:
        mounts.append(Mount(run_input, f"/data/{RUN_INPUT}"))
    if stage.pytest is not None and stage.pytest.hidden:
        mounts.append(Mount(assignment.path(stage.pytest.suite), TESTS_MOUNT))
    threads = str(max(1, math.floor(assignment.spec.limits.cpus)))
    env = (("OMP_NUM_THREADS", threads), ("OPENBLAS_NUM_THREADS", threads), ("MKL_NUM_THREADS", threads),
           ("MLGRADE_STAGE", stage.name), ("HOME", "/tmp"))  # noqa: S108 - in the sandbox; root is read-only
    limits = assignment.spec.stage_limits(stage)
    if not submission.read_only:  # the disk limit is on what stages write, not on the submission copied
        limits = replace(limits, disk_bytes=limits.disk_bytes + copy_bytes)
    return RunRequest(name=stage.name, command=stage.command, image=image, mounts=tuple(mounts),
                      limits=limits, env=env, workdir="/submission",
                      labels=(("mlgrade.assignment", assignment.key),))


def _probe_request(assignment: Assignment, stage: StageSpec, *, staged: StagedSubmission, runtime: Runtime,
                   output: Path) -> RunRequest:
    """The probe: harness code, so it runs in the assignment's image, never the candidate's (whose
    packages could run code at interpreter start), and sees only the submission, its data and output."""
    probe = stage.probe
    assert probe is not None  # noqa: S101 - called for probe stages only
    mounts = [Mount(staged.path, "/submission"), Mount(output, "/output", read_only=False),
              Mount(RUNNERS_DIR, RUNNERS_MOUNT)]
    mounts += [Mount(runtime.data.visible[name], f"/data/{name}") for name in probe.data]
    # pids: harness code needs few, but the local backend's RLIMIT_NPROC counts every process of
    # the sandbox uid on the host, candidates' included: a busy neighbour must not starve the probe
    limits = replace(assignment.spec.stage_limits(stage), cpus=probe.cpus, memory_bytes=probe.memory,
                     timeout_s=probe.timeout, pids=PROBE_PIDS)
    return RunRequest(name=f"{stage.name}-probe", command=probe.command, image=runtime.image,
                      mounts=tuple(mounts), limits=limits,
                      env=(("HOME", "/tmp"), (PROBE_BUDGET_ENV, f"{probe_budget_s(probe.timeout):g}")),  # noqa: S108
                      workdir="/tmp", labels=(("mlgrade.assignment", assignment.key),))  # noqa: S108


def _probe_outcome(step: _Step, outcome: RunResult, output: Path, result_dir: Path, run: RunState) -> None:
    """Record the probe and collect its outputs. A probe that fails is the harness's failure, and
    one it would repeat on this submission (DeterministicInfraError): Docker's own failures are
    raised by the backend instead."""
    run.stages.append(_record(f"{step.label}/probe", outcome, result_dir))
    if outcome.status is not StageStatus.OK:  # the result folder is dropped: say what the log says
        raise DeterministicInfraError(f"the probe of stage {step.stage.name} failed "
                                      f"({outcome.status.value}: {outcome.detail}): "
                                      f"{one_line(outcome.log[-600:], 600)}")
    assert step.stage.probe is not None  # called for probe stages only
    probe_step = _Step(step.stage.model_copy(update={"outputs": step.stage.probe.outputs, "runs": ()}))
    _collect_outputs(probe_step, output, result_dir, run, failure=None)
    remove_tree(output)


@dataclass(frozen=True)
class _Folders:
    """The writable folders a submission's stages share, in stage order."""

    workspace: Path
    submission: Path  # the working copy of the submission (spec: stages[].submission: copy)
    submission_bytes: int = 0  # the size of the submission as handed in (what was copied)


@dataclass(frozen=True)
class _Step:
    """One container: a stage, or one run of a stage that has runs."""

    stage: StageSpec
    run: str | None = None

    @property
    def label(self) -> str:
        return self.stage.name if self.run is None else f"{self.stage.name}/{self.run}"


@dataclass(frozen=True)
class _Shared:
    """What every step of one submission's stages shares."""

    assignment: Assignment
    staged: StagedSubmission
    runtime: Runtime
    run: RunState
    result_dir: Path
    scratch: Path
    folders: _Folders


REQUIREMENTS_FILE = "requirements.txt"
_REQUIREMENTS_MAX = 64 << 10


def run_sandboxed(assignment: Assignment, staged: StagedSubmission, runtime: Runtime, run: RunState,
                  result_dir: Path, scratch: Path) -> None:
    """Everything of a grading that runs in the sandbox, on this machine: the candidate's image
    (requirements.txt), then the stages. Writes logs and outputs under `result_dir`, and what
    happened into `run`; a cluster's worker runs this same function (harness.worker)."""
    _requirements_image(assignment, staged, runtime, run)
    if run.status is Status.OK:
        run_stages(assignment, staged, runtime, run, result_dir, scratch)
    else:
        remove_tree(scratch)


def _requirements_image(assignment: Assignment, staged: StagedSubmission, runtime: Runtime,
                        run: RunState) -> None:
    requirements = staged.path / REQUIREMENTS_FILE
    if not (assignment.spec.image.candidate_requirements and requirements.exists()):
        return
    if runtime.requirements_image is None:
        run.message = "requirements.txt ignored: this backend runs with the host's Python packages"
        return
    try:
        text = read_bounded(requirements, _REQUIREMENTS_MAX).decode("utf-8")
        run.on_step("image")
        # an image build (pip) is heavy work: not beside a measurement
        with sandbox_errors(), host_locks().other_stage():
            run.image, run.image_id = runtime.requirements_image(text)
    except (OutputRefused, UnicodeDecodeError) as exc:
        run.status, run.message = Status.INVALID, f"requirements.txt unreadable: {exc}"
    except InvalidSubmission as exc:
        run.status, run.message = Status.INVALID, f"requirements.txt: {exc}"


def run_stages(assignment: Assignment, staged: StagedSubmission, runtime: Runtime, run: RunState,
               result_dir: Path, scratch: Path) -> None:
    uid, gid = runtime.backend.run_as
    scratch.mkdir(parents=True, exist_ok=True)
    scratch.chmod(0o755)
    # code that writes beside itself (relative paths, a model file next to the script) works; the
    # original stays read-only and is what was hashed and is graded for quality
    folders = _Folders(workspace=scratch / "workspace", submission=scratch / "submission",
                       submission_bytes=tree_size([staged.path])[0])
    make_writable_dir(folders.workspace, uid, gid)
    copy_workspace(staged.path, folders.submission, uid, gid)
    shared = _Shared(assignment, staged, runtime, run, result_dir, scratch, folders)
    for stage in assignment.spec.stages:
        if run.status is not Status.OK and stage.blocking:
            continue  # an earlier stage failed; independent stages (tests) still run
        steps = [_Step(stage, r) for r in stage.runs] or [_Step(stage)]
        # in a fresh random order: how long the stage has been going says nothing about the run
        order = secrets.SystemRandom().sample(steps, len(steps))
        first_record = len(run.stages)
        failed = [step for step in order if not _run_timed_step(shared, step)]
        labels = [s.label for s in steps]  # records and failures are reported in the spec's order
        run.stages[first_record:] = sorted(run.stages[first_record:],
                                           key=lambda r: labels.index(r.name.removesuffix("/probe")))
        failed.sort(key=steps.index)
        if failed and stage.blocking:
            first = run.stages[[s.name for s in run.stages].index(failed[0].label)]
            run.status = STATUS_OF_STAGE[first.status]
            which = f" on runs {', '.join(s.run or '' for s in failed)}" if stage.runs else ""
            run.message = f"stage {stage.name}{which}: {first.failure}"
            run.reason = first.cause


def pause(seconds: float) -> None:
    """Wait before measuring a busy machine again (a seam for tests' fake clock)."""
    time.sleep(seconds)


def _run_timed_step(shared: _Shared, step: _Step) -> bool:
    """_run_step, and for a service whose timing needs a quiet machine (spec probe.quiet): its
    machine check, re-measuring a disturbed one after a pause (doubling), up to the spec's retries;
    if the machine stays busy, the timing criteria are left ungraded (RunState.machine.busy)."""
    assignment, runtime, run, scratch = shared.assignment, shared.runtime, shared.run, shared.scratch
    run.on_step(step.label)
    probe = step.stage.probe
    if probe is None or probe.quiet is None:
        return _run_step(shared, step).status is StageStatus.OK
    quiet = probe.quiet
    calibration = scratch / "calibration"
    warm = warm_request(quiet, image=runtime.image, limits=assignment.spec.stage_limits(step.stage))
    for attempt in range(1, quiet.retries + 2):
        if warm is not None and runtime.image:  # the local backend has the host's packages, warm or not
            runtime.backend.run(warm)  # its outcome does not matter: it only fills the page cache
        first, outputs = len(run.stages), dict(run.outputs)
        make_writable_dir(calibration, *runtime.backend.run_as)
        outcome = _run_step(shared, step, calibration=calibration)
        probe_file = next((out.path for out in run.outputs.values() if out.path is not None
                           and out.name in probe.outputs), None)
        check = check_machine(quiet, outcome=outcome, calibration_dir=calibration, probe_file=probe_file,
                              attempts=attempt)
        remove_tree(calibration)
        run.stages[first] = run.stages[first].model_copy(update={"machine": check})
        run.machine, run.timed_criteria = check, quiet.criteria
        if not check.busy:
            break
        if attempt <= quiet.retries:  # measure again: this attempt's records and outputs go
            del run.stages[first:]
            for key, out in run.outputs.items():
                if out.path is not None and outputs.get(key) != out:
                    out.path.unlink(missing_ok=True)  # not left for reviewers if the next attempt writes none
            run.outputs = outputs
            pause(quiet.backoff * 2 ** (attempt - 1))
    return outcome.status is StageStatus.OK


def _run_step(shared: _Shared, step: _Step, *, calibration: Path | None = None) -> RunResult:
    """Run one container and collect its outputs; its outcome. `calibration`: the folder the
    reference server's probe writes to, for a service with a machine check (spec probe.quiet)."""
    assignment, staged, runtime, run = shared.assignment, shared.staged, shared.runtime, shared.run
    result_dir, scratch, folders = shared.result_dir, shared.scratch, shared.folders
    uid, gid = runtime.backend.run_as
    # A run's folders have the same host paths whichever run it is: mount sources show inside the
    # sandbox (/proc/self/mountinfo), so a path naming the run would tell the stage which run it is.
    slug = "run" if step.run is not None else step.stage.name
    output = scratch / f"output-{slug}"
    make_writable_dir(output, uid, gid)
    copy = step.stage.submission == "copy"
    submission = Mount(folders.submission, "/submission", read_only=False) if copy else Mount(staged.path,
                                                                                             "/submission")
    run_input = private = private_copy = None
    if step.run is not None:  # nothing one run writes is seen by another
        private = scratch / "workspace-run"
        copy_workspace(folders.workspace, private, uid, gid)
        if copy:
            private_copy = scratch / "submission-run"
            copy_workspace(folders.submission, private_copy, uid, gid)
            submission = replace(submission, source=private_copy)
        run_input = scratch / "input-run"
        shutil.copytree(runtime.data.visible[step.run], run_input)
        _readable(run_input)
    request = _stage_request(assignment, step.stage, submission=submission, runtime=runtime,
                             image=run.image or runtime.image, run_input=run_input,
                             workspace=private or folders.workspace, output=output,
                             copy_bytes=folders.submission_bytes)
    probe_output = scratch / f"probe-{slug}"
    if step.stage.probe is not None:
        make_writable_dir(probe_output, uid, gid)
        probe = _probe_request(assignment, step.stage, staged=staged, runtime=runtime, output=probe_output)
        request = replace(request, probe=probe)
        if calibration is not None and step.stage.probe.quiet is not None:
            request = replace(request, calibration=calibration_request(
                step.stage.probe.quiet, image=runtime.image, limits=request.limits,
                probe_limits=probe.limits, runners=RUNNERS_DIR, output=calibration))
    _require_free_space(scratch, request.limits.disk_bytes + _DISK_MARGIN, step.label)
    outcome = runtime.backend.run(request)
    for folder in (private, private_copy, run_input):
        if folder is not None:
            remove_tree(folder)
    run.stages.append(_record(step.label, outcome, result_dir))
    _check_image(outcome, step, runtime)
    if outcome.probe is not None:
        _probe_outcome(step, outcome.probe, probe_output, result_dir, run)
    if outcome.status is not StageStatus.OK:
        _require_free_space(scratch, _DISK_LOW, step.label)  # a full host disk is not a verdict
    ok = outcome.status is StageStatus.OK
    failure = None if ok else run.stages[-1].failure
    if ok or step.run is not None:
        _collect_outputs(step, output, result_dir, run, failure=failure)
    remove_tree(output)
    return outcome


_EXPLAINED = frozenset({StageStatus.ERROR, StageStatus.OOM, StageStatus.DISK_LIMIT})
_MISSING_LIBRARY = re.compile(r"(lib[\w+.-]+\.so(?:\.\d+)*): cannot open shared object file")


def _check_image(outcome: RunResult, step: _Step, runtime: Runtime) -> None:
    """DeterministicInfraError if the stage failed loading a system library the image promises
    (WHEEL_SYSTEM_LIBRARIES) and the image indeed cannot load it: the image is broken, and the
    candidate's code is not to blame. A log can say anything, so the claim is checked in the
    assignment's image (which the candidate's image only adds Python packages to) by harness
    code run without site packages. InfraError if that check cannot run."""
    if outcome.status is StageStatus.OK:
        return
    named = set(_MISSING_LIBRARY.findall(outcome.log[-_LOG_TAIL_CHARS:]))
    claimed = sorted(named & set(WHEEL_SYSTEM_LIBRARIES))
    if not claimed:
        return
    check = RunRequest(name=f"{step.stage.name}-libcheck", image=runtime.image, workdir="/tmp",  # noqa: S108
                       command=("python3", "-I", "-S", "-c", LIBRARY_CHECK, *claimed),
                       limits=Limits(cpus=1, memory_bytes=256 << 20, pids=16, timeout_s=60,
                                     output_bytes=4096))
    verdict = runtime.backend.run(check)
    if verdict.status is not StageStatus.OK:
        raise InfraError(f"checking the image for {', '.join(claimed)} failed ({verdict.status.value}: "
                         f"{verdict.detail}): {one_line(verdict.log[-300:], 300)}")
    missing = sorted(set(verdict.log.split()) & set(claimed))
    if missing:
        raise DeterministicInfraError(
            f"image defect: stage {step.label} could not load {', '.join(missing)}, a system library the "
            f"image {runtime.image} must carry for common wheels; remove it (docker rmi) and run "
            "harness prepare")


def _readable(root: Path) -> None:
    """Harness-owned data copied for a run: readable (not writable) by the sandbox user."""
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)  # noqa: S103 - read-only data for the sandbox user
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)


def _require_free_space(path: Path, needed: int, stage: str) -> None:
    """InfraError unless the file system holding `path` has `needed` bytes free."""
    stats = os.statvfs(path)
    free = stats.f_bavail * stats.f_frsize
    if free < needed:
        raise InfraError(f"host disk nearly full at {path} ({free >> 20} MiB free, stage {stage} "
                         f"needs {needed >> 20} MiB): free some space and re-run")


def _record(name: str, outcome: RunResult, result_dir: Path) -> StageRecord:
    log_file = f"logs/{name}.log"
    (result_dir / log_file).parent.mkdir(parents=True, exist_ok=True)
    (result_dir / log_file).write_text(terminal_safe(outcome.log)[0], encoding="utf-8", errors="replace",
                                       newline="")  # for reviewers' terminals
    detail = outcome.detail
    failed = outcome.status is not StageStatus.OK
    died = _kernel_death(outcome.log) if failed else ""
    if died:
        detail = f"{detail}; {died}" if detail else died
    # A traceback explains an exit with an error, memory or disk running out (MemoryError, ENOSPC);
    # not a kill for time or output, which came from outside. The last line explains only an error.
    found = read_failure(outcome.log, failed=outcome.status in _EXPLAINED and not died,
                         last_line=outcome.status is StageStatus.ERROR)
    return StageRecord(name=name, status=outcome.status, exit_code=outcome.exit_code,
                       seconds=round(outcome.seconds, 3), peak_memory_bytes=outcome.peak_memory_bytes,
                       log_file=log_file, log_truncated=outcome.log_truncated, detail=detail,
                       reason=found.reason, cell=found.cell, cell_line=found.cell_line,
                       warnings=list(found.warnings))


def _kernel_death(log: str) -> str:
    """The notebook runner's (sandbox/runners/run.py) last word on a kernel that died mid-cell, if
    it said one near the end of the log: which cell, and how."""
    found = _KERNEL_DIED.findall(log[-_LOG_TAIL_CHARS:])
    return one_line(found[-1], 300) if found else ""


def _collect_outputs(step: _Step, output: Path, result_dir: Path, run: RunState, *,
                     failure: str | None) -> None:
    """Copy each declared output out of the stage's folder: bounded, no links, regular files only.

    A failed run's outputs are not graded, but its notebooks are kept for reviewers (executed up
    to the error, they show what went wrong).
    """
    prefix = "" if step.run is None else f"{step.run}/"
    for name, cap in step.stage.outputs.items():
        key = prefix + name
        if failure and not name.endswith(".ipynb"):
            run.outputs[key] = OutputFile(name=key, path=None,
                                          problem=f"not graded: stage {step.label} failed ({failure})")
            continue
        try:
            data = read_bounded(output / name, cap)
        except OutputRefused as exc:
            run.outputs[key] = OutputFile(name=key, path=None, problem=f"{name}: {exc.reason}")
            continue
        target = result_dir / "outputs" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        run.outputs[key] = OutputFile(name=key, path=target)
        if name.endswith(".ipynb"):
            render_notebook(target, target.with_suffix(".html"))
