import json

import pytest
import torch
from service.app import create_app
from service.model import MAX_BATCH, N_FEATURES, Classifier
from service.validation import InvalidInput, parse_instances


class FirstThree(torch.nn.Module):
    """Stand-in for the real network: the logits are the first three features."""

    def forward(self, x):
        return x[:, :3]


@pytest.fixture
def client():
    app = create_app(Classifier(FirstThree()))
    return app.test_client()


def features(a=0.0, b=0.0, c=0.0):
    return [a, b, c] + [0.0] * (N_FEATURES - 3)


def test_health(client):
    assert client.get("/health").get_json() == {"status": "ok"}


def test_predictions_are_softmax_of_the_logits(client):
    res = client.post("/predict", json={"instances": [features(), features(c=5)]})
    assert res.status_code == 200
    equal, third = res.get_json()["predictions"]
    assert equal["probabilities"] == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert third["label"] == 2
    expected = torch.softmax(torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64), 0).tolist()
    assert third["probabilities"] == pytest.approx(expected)


@pytest.mark.parametrize("payload", [
    {"rows": [features()]},
    {"instances": []},
    {"instances": [features()] * (MAX_BATCH + 1)},
    {"instances": [features()[:-1]]},
    {"instances": [["0.5"] * N_FEATURES]},
    {"instances": [[False] * N_FEATURES]},
    {"instances": [[float("nan")] * N_FEATURES]},
    {"instances": [[10**400] + [0] * (N_FEATURES - 1)]},
])
def test_bad_instances_are_refused(payload):
    with pytest.raises(InvalidInput):
        parse_instances(payload)


def test_errors_are_json(client):
    cases = [
        client.post("/predict", data="{oops", content_type="application/json"),
        client.post("/predict", data=json.dumps({"instances": [features()]}), content_type="text/plain"),
        client.post("/predict", data=b"x" * (2 * 1024 * 1024), content_type="application/json"),
        client.post("/predict", json={"instances": []}),
        client.get("/predict"),
        client.get("/nope"),
    ]
    assert [r.status_code for r in cases] == [400, 415, 413, 400, 405, 404]
    assert all("error" in r.get_json() for r in cases)
