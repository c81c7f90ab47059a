"""A model endpoint: cold start, correctness, robustness, latency and capacity from the probe's report."""

from graders.endpoint.grader import (
    CapacityGrader,
    ColdStartGrader,
    CorrectnessGrader,
    LatencyGrader,
    RobustnessGrader,
)

__all__ = ["CapacityGrader", "ColdStartGrader", "CorrectnessGrader", "LatencyGrader", "RobustnessGrader"]
