"""A/B test analysis: answers checked against a reference analysis, and engineering gated on the task."""

from graders.abtest.gate import AbGatedGrader
from graders.abtest.grader import AbAnswerGrader

__all__ = ["AbAnswerGrader", "AbGatedGrader"]
