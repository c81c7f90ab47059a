"""Shared by the hostile-input tests (tests/test_hostile_*.py): what a defined grader result is, and
strategies for the extreme values a candidate's process can write into a file.

A defined result is what the pipeline can store and a reviewer can read: a CriterionResult with a
finite score in [0, 1], finite metrics, a non-empty explanation without control characters, and a
JSON serialisation (result.json is written with `model_dump_json`, which refuses lone surrogates).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from hypothesis import strategies as st

from harness.core import CriterionResult
from harness.core.text import CONTROL

HUGE_INT = 10**400  # float() and math.isfinite() raise OverflowError
OVER_DIGIT_LIMIT = b"1" * (sys.get_int_max_str_digits() + 700)  # int() and json raise ValueError

# JSON tokens and literals that `json.dumps` will not write, spliced in as raw bytes.
RAW_EXTREMES = (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", str(HUGE_INT).encode(),
                b"-" + str(HUGE_INT).encode(), OVER_DIGIT_LIMIT, b'"\\ud800"', b'"\\u0000"', b'"\\u202e"')

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12) | st.sampled_from([HUGE_INT, -HUGE_INT, 2**1024, 1.7e308, 5e-324, -0.0]))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8)


def dumps(value: Any) -> bytes:
    """`value` as JSON bytes, NaN and Infinity written as the tokens Python's json reads back."""
    return json.dumps(value, allow_nan=True).encode()


def assert_defined(result: Any, *, max_explanation: int = 8000) -> CriterionResult:
    """Fail unless `result` is a criterion the pipeline can store and a reviewer can read."""
    assert isinstance(result, CriterionResult), type(result)
    assert math.isfinite(result.score) and 0.0 <= result.score <= 1.0, result.score
    assert result.explanation.strip(), "empty explanation"
    assert not CONTROL.search(result.explanation), repr(result.explanation)
    assert len(result.explanation) <= max_explanation, len(result.explanation)
    assert all(math.isfinite(v) for v in result.metrics.values()), result.metrics
    stored = json.loads(result.model_dump_json())  # what result.json holds
    json.dumps(stored, allow_nan=False)
    return result
