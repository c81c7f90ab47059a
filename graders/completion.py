"""The `completion` grader: did every stage run to the end within its limits?"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from harness.core.grading import CriterionResult, Grader, GradingContext, grader


class CompletionArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stages: tuple[str, ...] = ()  # which stages count; empty = all that the spec runs


@grader("completion")
class CompletionGrader(Grader):
    """Score = fraction of the counted stages that finished with status ok."""

    version = "1"
    Args = CompletionArgs
    args: CompletionArgs

    def grade(self, ctx: GradingContext) -> CriterionResult:
        wanted = self.args.stages or ctx.stages or tuple(ctx.stage_statuses)
        if not wanted:
            return self.criterion(score=0.0, metrics={"stages_ok": 0.0}, explanation="no stage ran")
        statuses = {name: ctx.stage_statuses.get(name, "not run") for name in wanted}
        passed = sum(status == "ok" for status in statuses.values())
        failed = [f"{name}: {status}" for name, status in statuses.items() if status != "ok"]
        explanation = (f"all {passed} stages finished" if not failed
                       else f"{passed} of {len(statuses)} stages finished; " + ", ".join(failed))
        return self.criterion(score=passed / len(statuses), metrics={"stages_ok": float(passed)},
                              explanation=explanation, details={"stages": statuses})
