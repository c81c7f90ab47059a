"""`harness check --run`: a submission's stages run on the public data only, in the grading image
and sandbox, and what they wrote is held against the contract. Nothing hidden is mounted (no
hidden data, no hidden test suite, no probe that reads hidden inputs), no grader runs and no result
is written: everything lives in a temporary folder removed on the way out."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

from harness._stages import RunState, run_stages
from harness._workdirs import remove_tree
from harness.check_contract import output_checks
from harness.data import DataSets
from harness.errors import IntakeError
from harness.intake import stage_submission
from harness.kit import Check, check_submission, public_spec
from harness.results import Status
from harness.runtime import InvalidSubmission, Runtime
from harness.spec import Assignment
from sandbox import RunRequest, RunResult, SandboxBackend


class _Recording:
    """The backend, recording every mount it was asked for (CheckReport.mounted)."""

    def __init__(self, inner: SandboxBackend) -> None:
        self._inner = inner
        self.mounted: list[Path] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def run(self, request: RunRequest) -> RunResult:
        for req in (request, request.probe, request.calibration):
            if req is not None:
                self.mounted += [m.source for m in req.mounts]
        return self._inner.run(request)


@dataclass(frozen=True)
class CheckReport:
    """The checklist, and what the run touched (for a reader who must know nothing hidden was)."""

    checks: list[Check]
    stages: tuple[str, ...] = ()  # the stages run, in order
    mounted: tuple[Path, ...] = ()  # every host path mounted into a sandbox

    @property
    def failed(self) -> bool:
        return any(c.level == "fail" for c in self.checks)


def run_check(assignment: Assignment, submission: Path, *,
              make_runtime: Callable[[Assignment], Runtime]) -> CheckReport:
    """The static checks, then (unless a required file is missing) the public stages in the sandbox
    `make_runtime` builds, then the outputs against the contract. A candidate's failure is a line
    of the checklist; raises HarnessError only for the harness's own failures (a missing image, Docker
    down)."""
    checks = check_submission(assignment, submission)
    if any(c.level == "fail" and c.text.startswith(("required file", "one of")) for c in checks):
        return CheckReport([*checks, Check("fail", "stages not run: a required file is missing")])
    spec, skipped = public_spec(assignment.spec)
    public = Assignment(spec, assignment.dir)
    checks += [Check("warn", f"stage {name} runs only when graded: {why}") for name, why in skipped]
    runtime = make_runtime(assignment)
    recording = _Recording(runtime.backend)
    # only the public sets can be mounted, whatever the stages name; graders never run
    # a SandboxBackend by delegation (__getattr__), not by class: the backend's own attributes stay its own
    runtime = replace(runtime, backend=cast(SandboxBackend, recording), graders=[], data=DataSets(
        visible={n: p for n, p in runtime.data.visible.items() if n in spec.data.public},
        hidden={}, fingerprint=runtime.data.fingerprint))
    work = Path(tempfile.mkdtemp(prefix="mlgrade-check-"))
    try:
        _run(public, submission, runtime, work, checks)
    finally:
        remove_tree(work)
        runtime.backend.close()
    return CheckReport(checks, stages=tuple(s.name for s in spec.stages), mounted=tuple(recording.mounted))


def _run(public: Assignment, submission: Path, runtime: Runtime, work: Path, checks: list[Check]) -> None:
    try:
        staged = stage_submission(str(submission), dest=work / "submission")
    except IntakeError as exc:
        checks.append(Check("fail", f"the submission cannot be handed in: {exc}"))
        return
    run = RunState(image=runtime.image, image_id=runtime.image_id)
    if not _image(public, staged.path, runtime, run, checks):
        return
    (work / "result" / "logs").mkdir(parents=True)
    run_stages(public, staged, runtime, run, work / "result", work / "scratch")
    for record in run.stages:
        if record.status == "ok":
            checks.append(Check("ok", f"stage {record.name} ran ({record.seconds:.1f} s)"))
        else:
            checks.append(Check("fail", f"stage {record.name}: {record.failure}"))
    if run.status is Status.OK:
        checks += output_checks(public, run.outputs, runtime.data.visible)


def _image(public: Assignment, submission: Path, runtime: Runtime, run: RunState,
           checks: list[Check]) -> bool:
    """The candidate's image (the assignment's plus requirements.txt), as grading builds it."""
    requirements = submission / "requirements.txt"
    if not (public.spec.image.candidate_requirements and requirements.is_file()):
        return True
    if runtime.requirements_image is None:
        checks.append(Check("warn", "requirements.txt not installed: the local backend runs with the host's "
                                    "Python packages"))
        return True
    try:
        run.image, run.image_id = runtime.requirements_image(requirements.read_text(encoding="utf-8"))
    except (InvalidSubmission, UnicodeDecodeError) as exc:
        checks.append(Check("fail", f"requirements.txt: {exc}"))
        return False
    checks.append(Check("ok", "requirements.txt installs on the assignment's image"))
    return True
