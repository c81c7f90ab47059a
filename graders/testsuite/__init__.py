"""Test suites: the candidate's own tests (pass rate, coverage) and the hidden tests."""

from graders.testsuite.grader import CoverageGrader, HiddenTestsGrader, PassRateGrader

__all__ = ["CoverageGrader", "HiddenTestsGrader", "PassRateGrader"]
