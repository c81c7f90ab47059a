"""The classifier: loaded from MODEL_DIR, float32 logits, softmax in float64."""

import importlib.util
import os
from pathlib import Path

import torch

N_FEATURES = 20
MAX_BATCH = 64


def model_dir() -> Path:
    return Path(os.environ.get("MODEL_DIR", "/data/model"))


class Classifier:
    def __init__(self, net: torch.nn.Module) -> None:
        self.net = net.eval()

    @classmethod
    def from_dir(cls, directory: Path) -> "Classifier":
        """Build the network with the model.py shipped next to the weights, and warm it up."""
        torch.set_num_threads(1)
        spec = importlib.util.spec_from_file_location("tabular_model", directory / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        classifier = cls(module.load(directory))
        classifier.predict([[0.0] * N_FEATURES] * MAX_BATCH)  # first call allocates
        return classifier

    def predict(self, rows: list[list[float]]) -> list[dict]:
        with torch.inference_mode():
            logits = self.net(torch.tensor(rows, dtype=torch.float32))
        probs = torch.softmax(logits.double(), dim=1)
        return [{"label": int(label), "probabilities": p}
                for label, p in zip(probs.argmax(dim=1).tolist(), probs.tolist(), strict=True)]
