"""A Gradescope autograder `results.json` per graded submission, in the format of Gradescope's
autograder specification (https://gradescope-autograders.readthedocs.io/en/latest/specs/,
"Output format"; tests/data/gradescope_results.schema.json holds it as a JSON Schema).

One test per criterion: its points are its share of the 100-point total (weight over the sum
of weights), so the tests' scores add up to the top-level `score`, which is the harness's total
(set the Gradescope assignment's autograder points to 100). Each test carries the criterion's
visibility; its output is the candidate view's note (harness.candidate_view), never the
reviewer's explanation of a criterion scored on hidden material. Every text is declared
`"text"`: the top-level output would otherwise be rendered as HTML ("simple_format" is
Gradescope's default there) and could carry a candidate's markup.
"""

from __future__ import annotations

from typing import Any

from harness.candidate_view import CandidateView, CriterionView

_PLACES = 4


def results_json(view: CandidateView, *, execution_time_s: float) -> dict[str, Any]:
    """The results.json document of one graded submission. Raises ValueError if it is ungraded
    (Gradescope would show its missing score as 0, which the harness never gives)."""
    if not view.graded or view.total is None:
        raise ValueError(f"{view.submission_id}: {view.status} is ungraded; no Gradescope result")
    return {
        "score": round(view.total, _PLACES),
        "execution_time": max(0, round(execution_time_s)),
        "output": _output(view),
        "output_format": "text",
        "test_output_format": "text",
        "test_name_format": "text",
        "stdout_visibility": "hidden",  # nothing of the harness's own output is for candidates
        "extra_data": {"assignment": view.key, "submission_id": view.submission_id, "status": view.status},
        "tests": [_test(c, number) for number, c in enumerate(view.criteria, 1)],
    }


def _test(c: CriterionView, number: int) -> dict[str, Any]:
    test: dict[str, Any] = {
        "name": c.label,
        "name_format": "text",
        "number": str(number),
        "score": round(c.points or 0.0, _PLACES),
        "max_score": round(c.max_points, _PLACES),
        "output": c.note,
        "output_format": "text",
        "visibility": c.visibility,
    }
    if c.group:
        test["tags"] = [c.group]
    return test


def _output(view: CandidateView) -> str:
    lines = [f"{view.title} ({view.key}): {view.status}."]
    if view.reason:
        lines.append(view.reason)
    return "\n".join(lines)
