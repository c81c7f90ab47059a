"""The API with a stand-in model (the real weights live in MODEL_DIR, not in this repository)."""

import pytest
import torch
from app import main
from app.inference import Classifier
from app.schemas import MAX_BATCH, N_FEATURES
from fastapi.testclient import TestClient


class Linear3(torch.nn.Module):
    """Three logits from the first three features, so the expected answer is easy to write down."""

    def forward(self, x):
        return x[:, :3]


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setattr(main, "load_model", lambda directory: Linear3())
    with TestClient(main.app) as test_client:
        yield test_client


def row(*first: float) -> list[float]:
    return [*first] + [0.0] * (N_FEATURES - len(first))


def test_health(client):
    assert client.get("/health").json() == {"status": "ok"}


def test_predict_returns_softmax_and_argmax(client):
    answer = client.post("/predict", json={"instances": [row(0, 0, 0), row(0, 2, 0)]})
    assert answer.status_code == 200
    first, second = answer.json()["predictions"]
    assert first["probabilities"] == pytest.approx([1 / 3] * 3)
    assert second["label"] == 1
    assert sum(second["probabilities"]) == pytest.approx(1.0)


def test_integers_are_numbers(client):
    assert client.post("/predict", json={"instances": [[1] * N_FEATURES]}).status_code == 200


@pytest.mark.parametrize("body", [
    {"inputs": [row(1)]},
    {"instances": []},
    {"instances": [row(1)] * (MAX_BATCH + 1)},
    {"instances": [row(1)[:-1]]},
    {"instances": [["1"] * N_FEATURES]},
    {"instances": [[True] * N_FEATURES]},
])
def test_bad_bodies_are_422(client, body):
    answer = client.post("/predict", json=body)
    assert answer.status_code == 422 and "detail" in answer.json()


def test_nan_and_infinity_are_refused(client):
    body = '{"instances": [[NaN, 1e999' + ", 0" * (N_FEATURES - 2) + "]]}"
    answer = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422


def test_content_type_and_size_are_checked(client):
    text = client.post("/predict", content="{}", headers={"content-type": "text/plain"})
    assert text.status_code == 415 and "error" in text.json()
    huge = client.post("/predict", content=b"[" * (2 << 20), headers={"content-type": "application/json"})
    assert huge.status_code == 413


def test_classifier_matches_a_float64_softmax():
    classifier = Classifier(Linear3(), N_FEATURES)
    [answer] = classifier.predict([row(1.0, 2.0, 3.0)])
    expected = torch.softmax(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), dim=0).tolist()
    assert answer == {"label": 2, "probabilities": pytest.approx(expected)}
