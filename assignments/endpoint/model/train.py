"""Train the endpoint assignment's model on synthetic tabular data, deterministically.

    python train.py OUT_DIR

`train(out_dir)` writes `model.pt` (the state_dict, `torch.save`), `meta.json` and a copy of
`model.py` into `out_dir`: the model folder a candidate's server gets as MODEL_DIR. Everything
derives from the public TRAIN_SEED, so every install trains the same model (bit for bit on the
same CPU and torch build; see data/README.md). numpy and torch only; a few seconds on one CPU.

The data: 20 features, the first 16 continuous on very different scales, the last 4 counts
(whole numbers); they are drawn from correlated latent factors, and the label (0, 1 or 2) is the
argmax of three noisy scores, linear and non-linear in those factors (see data/README.md).
"""

import hashlib
import importlib.util
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
TRAIN_SEED = 20260401  # public: the model ships to candidates
N_FEATURES, N_CONTINUOUS, N_CLASSES = 20, 16, 3
MAX_BATCH = 64  # the largest batch a server must accept (written to meta.json)
N_TRAIN, N_TEST = 20_000, 5_000
EPOCHS, BATCH_SIZE, LEARNING_RATE = 12, 128, 3e-3
LABEL_NOISE = 0.35  # scale of the Gumbel noise on the class scores: the Bayes error is not zero
FEATURE_NAMES = tuple(f"x{i:02d}" for i in range(N_CONTINUOUS)) + tuple(
    f"n{i:02d}" for i in range(N_FEATURES - N_CONTINUOUS))


def _load_model_module():
    """model.py next to this file (importable without this folder on sys.path)."""
    spec = importlib.util.spec_from_file_location("_endpoint_model", HERE / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


model_module = _load_model_module()


@dataclass(frozen=True)
class World:
    """The data-generating process, fixed by a seed (public: drawn from TRAIN_SEED)."""

    mix: np.ndarray  # (20, 20): correlates the latent factors
    mean: np.ndarray  # (16,) location of the continuous features
    scale: np.ndarray  # (16,) their spread, from 0.1 to 100
    count_log_mean: np.ndarray  # (4,) log mean of the counts
    weights: np.ndarray  # (20, 3) linear part of the class scores


@dataclass(frozen=True)
class TrainReport:
    test_accuracy: float  # on N_TEST fresh samples from the same world
    majority_rate: float  # share of the most common class among them (accuracy by guessing)
    seconds: float


def make_world(seed: int = TRAIN_SEED) -> World:
    rng = np.random.default_rng([seed, 0])
    mix = np.eye(N_FEATURES) + 0.35 * np.tril(rng.standard_normal((N_FEATURES, N_FEATURES)), -1)
    mix /= np.linalg.norm(mix, axis=1, keepdims=True)  # unit variance per factor
    return World(mix=mix, mean=np.round(rng.uniform(-10, 100, N_CONTINUOUS), 1),
                 scale=np.round(10 ** rng.uniform(-1, 2, N_CONTINUOUS), 2),
                 count_log_mean=rng.uniform(0.5, 2.5, N_FEATURES - N_CONTINUOUS),
                 weights=rng.standard_normal((N_FEATURES, N_CLASSES)))


def latent(world: World, rng: np.random.Generator, n: int) -> np.ndarray:
    """n rows of correlated standard-normal factors, shape (n, 20)."""
    return rng.standard_normal((n, N_FEATURES)) @ world.mix.T


def features(world: World, rng: np.random.Generator, z: np.ndarray) -> np.ndarray:
    """The observed features of latent rows z: continuous ones rounded to 3 decimals, then counts."""
    continuous = np.round(world.mean + world.scale * z[:, :N_CONTINUOUS], 3)
    counts = rng.poisson(np.exp(world.count_log_mean + 0.5 * z[:, N_CONTINUOUS:]))
    return np.hstack([continuous, counts.astype(np.float64)])


def labels(world: World, rng: np.random.Generator, z: np.ndarray) -> np.ndarray:
    """Class 0, 1 or 2: the argmax of linear plus non-linear scores, with Gumbel noise."""
    nonlinear = np.stack([1.5 * z[:, 0] * z[:, 1], 1.5 * (np.abs(z[:, 2]) - 0.8),
                          1.5 * np.sin(2 * z[:, 3])], axis=1)
    scores = 0.5 * z @ world.weights + nonlinear
    return np.argmax(scores + LABEL_NOISE * rng.gumbel(size=scores.shape), axis=1)


def sample(world: World, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n labelled rows: features (n, 20) float64 and labels (n,) int."""
    z = latent(world, rng, n)
    return features(world, rng, z), labels(world, rng, z)


def fit(x: np.ndarray, y: np.ndarray, *, seed: int = TRAIN_SEED):
    """A TabularClassifier trained with Adam on (x, y), in eval mode; deterministic for a seed.

    Uses one thread and its own random state: the caller's torch settings are left as they were.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same sums in the same order on every run
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = model_module.TabularClassifier(N_FEATURES, model_module.HIDDEN, N_CLASSES)
            model.mean.copy_(torch.tensor(x.mean(axis=0), dtype=torch.float32))
            model.scale.copy_(torch.tensor(x.std(axis=0), dtype=torch.float32))
            _optimise(model, torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long))
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _optimise(model, x: torch.Tensor, y: torch.Tensor) -> None:
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _epoch in range(EPOCHS):
        order = torch.randperm(len(x))  # the forked global generator, seeded by fit
        for start in range(0, len(x), BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            optimiser.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimiser.step()


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose predicted label (the reference `predict`) equals y."""
    predicted = [p["label"] for p in model_module.predict(model, x.tolist())]
    return float(np.mean(np.asarray(predicted) == y))


def train(out_dir: Path, *, seed: int = TRAIN_SEED) -> TrainReport:
    """Train on N_TRAIN samples and write model.pt, meta.json and model.py to `out_dir`.

    Raises OSError if a file cannot be written.
    """
    started = time.perf_counter()
    world = make_world(seed)
    x, y = sample(world, np.random.default_rng([seed, 1]), N_TRAIN)
    x_test, y_test = sample(world, np.random.default_rng([seed, 2]), N_TEST)
    model = fit(x, y, seed=seed)
    test_accuracy = accuracy(model, x_test, y_test)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / model_module.WEIGHTS_FILE
    torch.save(model.state_dict(), weights)
    shutil.copyfile(HERE / "model.py", out_dir / "model.py")
    meta = {"n_features": N_FEATURES, "n_classes": N_CLASSES, "hidden": model_module.HIDDEN,
            "feature_names": list(FEATURE_NAMES), "max_batch": MAX_BATCH,
            "torch_version": torch.__version__, "train_seed": seed, "test_accuracy": round(test_accuracy, 4),
            "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    (out_dir / model_module.META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return TrainReport(test_accuracy=test_accuracy, majority_rate=float(np.bincount(y_test).max() / N_TEST),
                       seconds=time.perf_counter() - started)

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python train.py OUT_DIR")
    print(train(Path(sys.argv[1])))
