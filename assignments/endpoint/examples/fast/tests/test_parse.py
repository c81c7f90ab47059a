"""The request validation of server.py: what reaches the model, and what is refused."""

import json

import pytest
from server import MAX_BATCH, N_FEATURES, BadRequest, parse


def body(instances) -> bytes:
    return json.dumps({"instances": instances}).encode()


def test_a_good_batch_parses_to_floats():
    rows = parse(body([[1] * N_FEATURES, [0.5] * N_FEATURES]))
    assert rows == [[1.0] * N_FEATURES, [0.5] * N_FEATURES]


@pytest.mark.parametrize("payload", [
    b"{not json", body([]), body([[1] * N_FEATURES] * (MAX_BATCH + 1)), body([[1] * (N_FEATURES - 1)]),
    body([[True] * N_FEATURES]), b'{"instances": [[NaN' + b", 1" * (N_FEATURES - 1) + b"]]}",
    json.dumps({"rows": [[1] * N_FEATURES]}).encode()])
def test_bad_requests_are_refused_with_a_4xx(payload):
    with pytest.raises(BadRequest) as refused:
        parse(payload)
    assert 400 <= refused.value.status < 500
