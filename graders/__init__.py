"""Grader plugins. Each registers itself by name; outside packages use the `harness.graders` entry points."""

# importing registers: "ab_answer", "code_quality", "completion", "endpoint_*", "ranking", "test_*",
# "hidden_tests"
from graders import abtest, code_quality, completion, endpoint, pytest_suite, ranking  # noqa: F401
from graders._base import GRADERS, CriterionResult, Grader, GradingContext, OutputFile, grader, linear_score

__all__ = ["GRADERS", "CriterionResult", "Grader", "GradingContext", "OutputFile", "grader", "linear_score"]
