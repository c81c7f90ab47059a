"""The small public core that grader plugins build on: the criterion and output types, the grader
base class and its registry, the harness's errors, and the helpers that make a candidate's text
safe to show. A grader imports this package and nothing else of the harness (tests/test_layers.py).

Names load on first use, so that importing one light module of the core (`harness.core.text`, by
the command line at start-up) does not import pydantic through the grading types.
"""

from importlib import import_module
from typing import TYPE_CHECKING

_PUBLIC = {
    "GRADERS": "harness.core.grading", "CriterionResult": "harness.core.grading",
    "Grader": "harness.core.grading", "GradingContext": "harness.core.grading",
    "OutputFile": "harness.core.grading", "grader": "harness.core.grading",
    "linear_score": "harness.core.grading", "Registry": "harness.core.registry",
    "one_line": "harness.core.text", "printable": "harness.core.text", "reviewer_text": "harness.core.text",
    "terminal_safe": "harness.core.text", "DeterministicInfraError": "harness.errors",
    "HarnessError": "harness.errors", "SpecError": "harness.errors",
}
__all__ = ["GRADERS", "CriterionResult", "DeterministicInfraError", "Grader", "GradingContext",
           "HarnessError", "OutputFile", "Registry", "SpecError", "grader", "linear_score", "one_line",
           "printable", "reviewer_text", "terminal_safe"]

if TYPE_CHECKING:
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


def __getattr__(name: str) -> object:
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'harness.core' has no attribute {name!r}")
