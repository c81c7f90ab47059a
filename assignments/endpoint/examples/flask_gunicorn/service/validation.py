"""Checking a /predict body before it gets anywhere near the model."""

import math

from service.model import MAX_BATCH, N_FEATURES


class InvalidInput(ValueError):
    """The body breaks the contract; the message says how."""


def parse_instances(payload: object) -> list[list[float]]:
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidInput('expected {"instances": [[...20 numbers...], ...]}')
    instances = payload["instances"]
    if not isinstance(instances, list) or not 1 <= len(instances) <= MAX_BATCH:
        raise InvalidInput(f"instances must be a list of 1 to {MAX_BATCH} rows")
    return [_row(i, row) for i, row in enumerate(instances)]


def _row(i: int, row: object) -> list[float]:
    if not isinstance(row, list) or len(row) != N_FEATURES:
        raise InvalidInput(f"row {i}: expected {N_FEATURES} numbers")
    values = []
    for value in row:
        # bool is a subclass of int in Python, but true/false are not features
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"row {i}: {value!r} is not a number")
        try:
            number = float(value)
        except OverflowError:  # a huge JSON integer
            raise InvalidInput(f"row {i}: {value} is too large") from None
        if not math.isfinite(number):
            raise InvalidInput(f"row {i}: NaN and infinity are not allowed")
        values.append(number)
    return values
