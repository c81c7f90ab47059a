"""Code quality: static findings per 100 lines and repository hygiene."""

from graders.quality.grader import CodeQualityGrader

__all__ = ["CodeQualityGrader"]
