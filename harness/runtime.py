"""What a batch prepares once and every submission shares (the backend, the data sets, the
images, the spec's graders), built by harness.backends; and the candidate's mistake found while
preparing it for one submission."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import ValidationError

from harness.core import GRADERS, Grader
from harness.data import DataSets
from harness.errors import SpecError
from harness.spec import Assignment
from sandbox import SandboxBackend

if TYPE_CHECKING:
    from harness._stages import RunState
    from harness.intake import StagedSubmission


class InvalidSubmission(Exception):
    """The submission breaks the contract before anything runs (e.g. bad requirements.txt)."""


class RemoteStages(Protocol):
    """Runs a submission's sandboxed part elsewhere (a cluster's worker: harness.cluster) and
    brings back what `harness._stages.run_sandboxed` would have left: the logs and outputs under
    `result_dir`, and what happened in `run`. Raises InfraError when it cannot."""

    warnings: list[str]  # e.g. workers refused

    @property
    def slots(self) -> int:
        """Submissions it runs at once."""

    @property
    def plan(self) -> str:
        """Where they run, for the batch's summary."""

    def run(self, *, assignment: Assignment, staged: StagedSubmission, run: RunState,
            result_dir: Path) -> None: ...


@dataclass
class Runtime:
    """What a batch prepares once and every submission shares."""

    backend: SandboxBackend
    data: DataSets
    image: str = ""  # assignment image tag ("" for the local backend)
    image_id: str | None = None
    #: requirements.txt text -> (image tag, image id); raises InvalidSubmission for the candidate's mistakes
    requirements_image: Callable[[str], tuple[str, str]] | None = None
    graders: list[Grader] = field(default_factory=list)
    #: where the stages run when not on this machine's backend (a Dask cluster); None: here
    stages: RemoteStages | None = None


def build_graders(assignment: Assignment) -> list[Grader]:
    """Instantiate the spec's graders; SpecError names the grader and the bad argument."""
    graders = []
    for index, gspec in enumerate(assignment.spec.graders):
        cls = GRADERS.get(gspec.grader)
        try:
            args = cls.Args.model_validate(gspec.args)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise SpecError(f"{assignment.dir / 'assignment.yaml'}: graders.{index}.args "
                            f"({gspec.name}): {problems}") from None
        built = cls(name=gspec.name, weight=gspec.weight, args=args, group=gspec.group)
        try:
            built.check_spec(assignment.spec)
            built.check_files(assignment.dir)
        except SpecError as exc:
            raise SpecError(f"{assignment.dir / 'assignment.yaml'}: graders.{index}.args ({gspec.name}): "
                            f"{exc}") from None
        graders.append(built)
    return graders


def grader_versions(graders: list[Grader]) -> dict[str, str]:
    return {g.name: f"{g.grader_name}:{g.version}" for g in graders}
