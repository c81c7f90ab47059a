"""Grader plugins. Each registers itself by name; outside packages use the `harness.graders` entry points."""

from graders import abtest, completion, ranking  # noqa: F401 - register "ab_answer", "completion", "ranking"
from graders._base import GRADERS, CriterionResult, Grader, GradingContext, OutputFile, grader, linear_score

__all__ = ["GRADERS", "CriterionResult", "Grader", "GradingContext", "OutputFile", "grader", "linear_score"]
