"""The `ab_gated` grader: an engineering criterion that counts only as far as the analysis did the task.

It wraps another grader (code quality, the submission's own tests, their coverage) and multiplies
its score by the share of the hidden runs on which the analysis wrote a readable answers.json,
and by 0 when every run wrote the same document: answers that do not change with the data were
not computed from it. A notebook that raises on every run, or a script that pastes one set of
answers, thus earns no engineering credit however clean its code or its tests.

Spec errors (an unknown inner grader or bad inner arguments) raise SpecError via pydantic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from graders.abtest._answers import read_answers
from harness.core.grading import GRADERS, CriterionResult, Grader, GradingContext, grader
from harness.core.text import one_line

if TYPE_CHECKING:
    from harness.spec import AssignmentSpec


class AbGatedArgs(BaseModel):
    """Arguments of `ab_gated`: the inner grader, its arguments, and the runs that gate it."""

    model_config = ConfigDict(extra="forbid")

    grader: str
    args: dict[str, Any] = Field(default_factory=dict)
    answers: str = "answers.json"
    runs: list[str] = Field(min_length=2)
    _inner_args: BaseModel | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _inner(self) -> AbGatedArgs:
        if self.grader == "ab_gated":
            raise ValueError("ab_gated cannot wrap itself")
        try:
            cls = GRADERS.get(self.grader)
            self._inner_args = cls.Args.model_validate(self.args)
        except ValidationError as exc:
            raise ValueError(f"args of {self.grader}: {one_line(exc, 300)}") from None
        except Exception as exc:  # noqa: BLE001 - the registry's miss names the close names
            raise ValueError(one_line(exc, 300)) from None
        return self


@grader("ab_gated")
class AbGatedGrader(Grader):
    """Scores the inner grader, scaled by whether the analysis ran and followed the data."""

    version = "1"
    Args = AbGatedArgs
    args: AbGatedArgs

    def __init__(self, *, name: str, weight: float, args: BaseModel, group: str | None = None) -> None:
        super().__init__(name=name, weight=weight, args=args, group=group)
        inner_args = self.args._inner_args
        assert inner_args is not None  # noqa: S101 - set by the validator
        self.inner = GRADERS.get(self.args.grader)(name=name, weight=weight, args=inner_args, group=group)

    def check_spec(self, spec: AssignmentSpec) -> None:
        self.inner.check_spec(spec)

    def check_files(self, assignment_dir: Path) -> None:
        self.inner.check_files(assignment_dir)

    def grade(self, ctx: GradingContext) -> CriterionResult:
        inner = self.inner.grade(ctx)
        share, why = self._gate(ctx)
        text = inner.explanation if share == 1 else f"{why}; {inner.explanation}"
        metrics = {**inner.metrics, "gate.share": share, "ungated_score": inner.score}
        details = {**inner.details, "gate": {"share": share, "reason": why, "runs": self.args.runs,
                                            "inner_grader": self.args.grader}}
        return self.criterion(score=inner.score * share, metrics=metrics, explanation=text, details=details)

    def _gate(self, ctx: GradingContext) -> tuple[float, str]:
        """The share of gate runs with readable answers (0 if all alike), and why it is below 1."""
        docs, missing = [], []
        for run in self.args.runs:
            output = ctx.outputs.get(f"{run}/{self.args.answers}")
            answers = read_answers(output.path, output.problem) if output is not None else None
            if answers is None or answers.data is None:
                missing.append(run)
            else:
                docs.append(json.dumps(answers.data, sort_keys=True, default=repr))
        if len(docs) >= 2 and len(set(docs)) == 1:
            return 0.0, (f"not counted: the same {self.args.answers} on every hidden run, so the "
                         "answers were not computed from the data")
        share = len(docs) / len(self.args.runs)
        if not missing:
            return 1.0, ""
        return share, (f"counted {share:.0%}: the analysis wrote no readable {self.args.answers} on "
                       f"runs {', '.join(missing)}")
