"""What a grader is: a named, versioned plugin that turns a run's outputs into one criterion."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from harness.core.registry import Registry

if TYPE_CHECKING:  # harness.spec imports the sandbox package; graders need only its shape
    from harness.spec import AssignmentSpec


class CriterionResult(BaseModel):
    """One criterion of a result: what a reviewer reads and MLflow records."""

    model_config = ConfigDict(extra="forbid")

    name: str
    group: str | None = None  # criteria of a group share one summary column (spec: graders[].group)
    grader: str
    grader_version: str
    score: float = Field(ge=0.0, le=1.0)
    weight: float = Field(ge=0.0)
    metrics: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = Field(default_factory=dict)
    explanation: str  # one or two sentences a reviewer can read
    details: dict[str, Any] = Field(default_factory=dict)  # JSON-able extras for the report
    spec: dict[str, Any] = Field(default_factory=dict)  # the arguments that produced it
    #: why it has no score (e.g. "machine busy: ..."): the result is then ungraded, and `score`
    #: (what was measured, kept for the report) counts for nothing
    ungraded: str = ""


@dataclass(frozen=True)
class OutputFile:
    """A file a stage wrote, already copied out of the sandbox (bounded) into a harness-owned path."""

    name: str
    path: Path | None  # None when missing or refused
    problem: str = ""  # why it is missing or refused


@dataclass(frozen=True)
class GradingContext:
    """Everything a grader may look at. Hidden data lives here, outside any sandbox."""

    submission_dir: Path  # the staged (read-only) submission
    outputs: dict[str, OutputFile]
    hidden: dict[str, Path]  # hidden data set name -> directory (labels etc.)
    visible: dict[str, Path]  # visible data set name -> directory
    assignment_dir: Path
    artifacts_dir: Path  # graders may write report material here
    stage_statuses: dict[str, str] = field(default_factory=dict)  # stages that ran -> status
    stages: tuple[str, ...] = ()  # every stage the spec declares, in order


class Grader(ABC):
    """Base class. Subclasses set `version`, an `Args` pydantic model, and implement `grade`."""

    version: ClassVar[str] = "1"
    Args: ClassVar[type[BaseModel]]

    def __init__(self, *, name: str, weight: float, args: BaseModel, group: str | None = None) -> None:
        self.name = name
        self.weight = weight
        self.args = args
        self.group = group

    @property
    def grader_name(self) -> str:
        return getattr(type(self), "registered_name", type(self).__name__)

    def check_spec(self, spec: AssignmentSpec) -> None:
        """Check the arguments against the whole assignment spec when it loads, before any grading.

        The default accepts everything. Overrides raise harness.errors.SpecError naming the
        argument and the fix (e.g. an output no stage declares, a data set that does not exist).
        """
        return None  # a hook, not an abstract method: most graders reference nothing in the spec

    def check_files(self, assignment_dir: Path) -> None:
        """Check what the arguments name inside the assignment folder, once, before any grading.

        The default accepts everything; overrides raise harness.errors.SpecError (e.g. a hidden
        test suite that does not parse or holds no test).
        """
        return None

    @classmethod
    def score_bounds(cls, result: CriterionResult) -> tuple[float, float] | None:
        """The scores `result` would have at the two ends of its measure's 95% interval, read from
        the stored result alone (the cohort page's range of the total); None when the measure carries
        no interval. Overrides return None whenever they cannot reproduce the stored score."""
        return None

    @abstractmethod
    def grade(self, ctx: GradingContext) -> CriterionResult:
        """Score one submission. A candidate's bad output is a low score, never an exception."""

    def criterion(self, *, score: float, metrics: dict[str, float], explanation: str,
                  details: dict[str, Any] | None = None) -> CriterionResult:
        return CriterionResult(
            name=self.name, group=self.group, grader=self.grader_name, grader_version=self.version,
            score=min(1.0, max(0.0, score)), weight=self.weight,
            metrics={k: float(v) for k, v in metrics.items() if math.isfinite(v)},  # JSON has no NaN
            explanation=explanation, details=details or {},
            spec=self.args.model_dump(mode="json"),
        )


GRADERS: Registry[type[Grader]] = Registry("grader", entry_point_group="harness.graders", base=Grader)


def grader(name: str):
    """Class decorator: register a Grader subclass under `name`."""

    def decorator(cls: type[Grader]) -> type[Grader]:
        cls.registered_name = name  # type: ignore[attr-defined]
        return GRADERS.register(name)(cls)

    return decorator


def linear_score(value: float, *, baseline: float, target: float) -> float:
    """Map `value` linearly: `baseline` -> 0, `target` -> 1, clipped to [0, 1]."""
    if target == baseline:
        return 1.0 if value >= target else 0.0
    return min(1.0, max(0.0, (value - baseline) / (target - baseline)))
