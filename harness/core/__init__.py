"""The small public core that grader plugins build on: the criterion and output types, the grader
base class and its registry, the harness's errors, and the helpers that make a candidate's text
safe to show. A grader imports this package and nothing else of the harness (tests/test_layers.py).
"""

from harness.core.grading import (
           GRADERS,
           CriterionResult,
           Grader,
           GradingContext,
           OutputFile,
           grader,
           linear_score,
)
from harness.core.registry import Registry
from harness.core.text import one_line, printable, reviewer_text, terminal_safe
from harness.errors import DeterministicInfraError, HarnessError, SpecError

__all__ = ["GRADERS", "CriterionResult", "DeterministicInfraError", "Grader", "GradingContext",
           "HarnessError", "OutputFile", "Registry", "SpecError", "grader", "linear_score", "one_line",
           "printable", "reviewer_text", "terminal_safe"]
