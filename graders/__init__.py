"""Grader plugins. Each registers itself by name; outside packages use the `harness.graders` entry points."""

# importing registers: "ab_answer", "completion", "endpoint_*", "ranking"
from graders import abtest, completion, endpoint, ranking  # noqa: F401
from graders._base import GRADERS, CriterionResult, Grader, GradingContext, OutputFile, grader, linear_score

__all__ = ["GRADERS", "CriterionResult", "Grader", "GradingContext", "OutputFile", "grader", "linear_score"]
