"""Loading the classifier from MODEL_DIR and running it."""

import importlib.util
import os
from pathlib import Path

import torch

DEFAULT_MODEL_DIR = "/data/model"


def model_dir() -> Path:
    return Path(os.environ.get("MODEL_DIR", DEFAULT_MODEL_DIR))


def load_model(directory: Path) -> torch.nn.Module:
    """The TabularClassifier from directory/model.py with the weights in directory/model.pt."""
    spec = importlib.util.spec_from_file_location("tabular_model", directory / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.load(directory)
    model.eval()
    return model


class Classifier:
    """The model behind the API: float32 logits, softmax in float64, label = argmax."""

    def __init__(self, model: torch.nn.Module, n_features: int) -> None:
        self.model = model
        self.n_features = n_features

    def predict(self, rows: list[list[float]]) -> list[dict]:
        with torch.inference_mode():
            logits = self.model(torch.tensor(rows, dtype=torch.float32))
        probabilities = torch.softmax(logits.to(torch.float64), dim=1)
        labels = probabilities.argmax(dim=1).tolist()
        return [{"label": label, "probabilities": probs}
                for label, probs in zip(labels, probabilities.tolist(), strict=True)]

    def warm_up(self, batch: int) -> None:
        """The first forward passes allocate and pick kernels: do them before serving."""
        for size in (1, batch):
            self.predict([[0.0] * self.n_features] * size)
