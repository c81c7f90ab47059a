"""The calibration of the ranking score: where the reference ranking and the oracle sit.

An assignment whose data generator knows its relevance model writes, next to the hidden qrels,
a JSON file with two figures per measure: the measure of ranking by the reference feature
(bm25) and of the oracle (ranking by expected relevance under the generative model), both on
the hidden test set. A submission's *gain share* is how much of the oracle's gain over the
reference it achieves:

    gain_share = (value - reference) / (oracle - reference)

0 is the reference ranking, 1 the oracle; a ranking worse than the reference is negative.
The figures come from the seed of the install, so the scale holds for every hidden test set.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from harness.core import HarnessError, SpecError

MAX_CALIBRATION_BYTES = 64 << 10
# The grader recomputes the reference ranking from the test rows; the generator's figure must
# agree (it is rounded to 6 decimals), or the file belongs to other data.
REFERENCE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Calibration:
    """The reference ranking's and the oracle's value of one measure on the hidden test set."""

    measure: str  # e.g. ndcg_at_10
    reference: float
    oracle: float

    def gain_share(self, value: float) -> float:
        """The share of the oracle's gain over the reference that `value` achieves."""
        return (value - self.reference) / (self.oracle - self.reference)


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise HarnessError(f"{where} must be a finite number, not {value!r}")
    return float(value)


def load_calibration(path: Path, measure: str, feature: str) -> Calibration:
    """Read the figures of `measure` for ranking by `feature` and by the oracle from `path`.

    Raises SpecError when the file lacks the measure or the feature (the spec asks for a scale
    the data does not have), HarnessError when the file is missing, unreadable or malformed.
    """
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_CALIBRATION_BYTES + 1)
        data = json.loads(raw.decode("utf-8")) if len(raw) <= MAX_CALIBRATION_BYTES else None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise HarnessError(f"cannot read the ranking calibration {path}: {exc}; regenerate the data "
                           "(delete results/.cache/data/)") from None
    if not isinstance(data, dict):
        raise HarnessError(f"the ranking calibration {path} is not a JSON object of at most "
                           f"{MAX_CALIBRATION_BYTES} bytes")
    figures = data.get(measure)
    if not isinstance(figures, dict) or feature not in figures or "oracle" not in figures:
        have = sorted(k for k, v in data.items() if isinstance(v, dict))
        raise SpecError(f"{path.name} has no {feature!r} and 'oracle' figures for {measure!r} "
                        f"(it has {have}); match the grader's metric and baseline_feature to the data")
    reference = _number(figures[feature], f"{path.name}: {measure}.{feature}")
    oracle = _number(figures["oracle"], f"{path.name}: {measure}.oracle")
    if oracle <= reference:
        raise HarnessError(f"{path.name}: the oracle ({oracle}) must rank better than {feature} "
                           f"({reference})")
    return Calibration(measure=measure, reference=reference, oracle=oracle)


def check_reference(calibration: Calibration, measured: float, feature: str) -> None:
    """Raise HarnessError unless the grader's own reference figure matches the calibration's."""
    if abs(measured - calibration.reference) > REFERENCE_TOLERANCE:
        raise HarnessError(f"the calibration's {calibration.measure} for {feature} "
                           f"({calibration.reference:.6f}) differs from the test rows' "
                           f"({measured:.6f}): it belongs to other data; regenerate the data")
