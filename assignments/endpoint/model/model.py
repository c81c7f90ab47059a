"""The endpoint assignment's model: a small feed-forward classifier over 20 numeric features.

This file ships with the weights (`model.pt`, a state_dict saved with `torch.save`) and
`meta.json` in the model folder a server gets as `MODEL_DIR`. It is the reference: the expected
answers are `predict(load(MODEL_DIR), instances)`. It checks nothing about its input (that is the
server's job): give it a list of instances, each a list of N_FEATURES finite numbers.

    import model                       # this file, from MODEL_DIR
    net = model.load(MODEL_DIR)
    model.predict(net, [[0.5] * 20])   # [{"label": 1, "probabilities": [0.1, 0.7, 0.2]}]

Only torch is needed.
"""

import json
from pathlib import Path

import torch

N_FEATURES = 20
N_CLASSES = 3
HIDDEN = 64
WEIGHTS_FILE = "model.pt"
META_FILE = "meta.json"


class TabularClassifier(torch.nn.Module):
    """Standardise the features, then 20 -> 64 -> 64 -> 3 with ReLU; returns logits.

    `mean` and `scale` (per feature) are buffers saved in the state_dict with the weights, so the
    raw features go in as they are.
    """

    def __init__(self, n_features: int = N_FEATURES, hidden: int = HIDDEN, n_classes: int = N_CLASSES):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_features, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape (batch, n_classes), for float32 features of shape (batch, n_features)."""
        return self.net((x - self.mean) / self.scale)


def load(model_dir: str | Path) -> TabularClassifier:
    """The model saved in `model_dir` (meta.json gives its sizes), on the CPU, in eval mode.

    Raises OSError if a file is missing, ValueError/RuntimeError if they do not match.
    """
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / META_FILE).read_text(encoding="utf-8"))
    model = TabularClassifier(meta["n_features"], meta["hidden"], meta["n_classes"])
    state = torch.load(model_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    return model


def predict(model: TabularClassifier, instances: list[list[float]]) -> list[dict]:
    """One {"label": int, "probabilities": [float] * n_classes} per instance, in order.

    The features go in as float32 and the logits come out in float32; the softmax is taken in
    float64, and the label is the index of the largest probability.
    """
    x = torch.tensor(instances, dtype=torch.float32)
    with torch.inference_mode():
        logits = model(x)
    probabilities = torch.softmax(logits.double(), dim=1)
    labels = probabilities.argmax(dim=1)
    return [{"label": label, "probabilities": row}
            for label, row in zip(labels.tolist(), probabilities.tolist(), strict=True)]
