"""The endpoint assignment's data: the model, the probe's hidden inputs and their reference answers.

Trusted code, run by the harness on the host: `materialize(root, hidden_dir)` writes

    root/model/{model.pt,meta.json,model.py}    trained from the public seed (ships to candidates)
    root/probe_inputs/inputs.json               512 instances drawn from the secret seed
    root/probe_inputs/load_inputs.json          32768 more, typical, for the load phases
    root/reference/predictions.json             the reference model's answers to the 512 (graders only)
    root/reference/load_predictions.json        and to the load inputs (graders check a sample)
    root/reference/inputs_meta.json             what each input is (typical, zeros, large, ...)

`inputs.json` is a JSON list of instances (each a list of 20 numbers), in the order the probe
sends them; `predictions.json` the list of `model.predict`'s answers to them, one
{"label", "probabilities"} per input, in the same order; `inputs_meta.json` an object with
`kinds` (one per input), `min_gap` and `weights_sha256` (of the model). The load inputs are as
many as a server meeting every capacity step is sent (about 28,000 requests), so no load request
repeats an input the server has answered before, in the correctness phase or earlier in the load.

The secret seed is `hidden_dir/seed.txt`, created (128 random bits) when missing; see README.md
next to this file. Needs numpy and torch (torch imported only by `materialize`). Raises
ValueError when the seed file is malformed, public or weak (see harness.secret_seed).
"""

import copy
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from harness.secret_seed import secret_seed

TRAIN_FILE = Path(__file__).resolve().parents[1] / "model" / "train.py"
PUBLIC_SEEDS = frozenset({20260401})  # model/train.py's TRAIN_SEED: never a secret
N_INPUTS = 512
MIN_GAP = 0.05  # top-two reference probabilities differ by at least this (see README.md)
MAX_FLOAT64_DIFF = 1e-4  # float32 answers within this of exact (float64) arithmetic
EDGE_CASES = {"zeros": 2, "large": 24, "negative": 24, "tiny": 8, "integers": 8, "near_tie": 32}
NEAR_TIE_MAX_GAP = 0.10
N_LOAD_INPUTS = 32768
SIGNIFICANT_DIGITS = 6


def _load_train():
    """model/train.py (which loads model/model.py next to it); imports torch."""
    spec = importlib.util.spec_from_file_location("_endpoint_train", TRAIN_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def read_seed(hidden_dir: Path) -> int:
    """This install's secret seed (see harness.secret_seed); ValueError if public, weak or malformed."""
    return secret_seed(hidden_dir, public=PUBLIC_SEEDS, what="the probe inputs")


def prepare(hidden_dir: Path) -> None:
    """Create this install's secret seed if there is none (before the harness fingerprints it)."""
    read_seed(hidden_dir)


def probe_seed(secret: int, purpose: str = "probe") -> int:
    """A 128-bit seed for the probe inputs (or the load inputs), derived from the secret (one-way)."""
    return int.from_bytes(hashlib.sha256(f"endpoint:{secret}:{purpose}".encode()).digest()[:16], "big")


def _rows(train, rng: np.random.Generator, n: int) -> np.ndarray:
    """n typical rows (the training distribution), float64 with whole-number counts."""
    world = train.make_world()
    return train.features(world, rng, train.latent(world, rng, n))


def _candidates(train, rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """n rows of one kind (more than needed: some are dropped by `_stable`)."""
    rows = _rows(train, rng, n)
    if kind in ("typical", "near_tie", "integers"):
        return np.round(rows) if kind == "integers" else rows
    if kind == "zeros":
        return np.zeros((n, rows.shape[1]))
    if kind == "negative":  # every value made negative, the counts too: outside the training data
        return -np.abs(rows)
    if kind == "tiny":  # a whole row shrunk to 1e-6 .. 1e-3
        return rows * 10 ** rng.uniform(-6, -3, (n, 1))
    if kind == "large":  # a few features pushed to +-1e2 .. 1e3.5, and the rest scaled by 1 .. 10
        picked = rng.random(rows.shape) < rng.uniform(0.1, 0.3, (n, 1))
        big = rng.choice([-1.0, 1.0], rows.shape) * 10 ** rng.uniform(2, 3.5, rows.shape)
        return np.where(picked, big, rows * 10 ** rng.uniform(0, 1, (n, 1)))
    raise ValueError(f"unknown kind of input {kind!r}")


def _json_rows(rows: np.ndarray, kind: str, n_continuous: int) -> list[list]:
    """Rows as JSON-ready numbers: whole-number counts as ints, the rest to 6 significant digits.

    Integer rows are ints throughout; of the zero rows, every other one is written as ints.
    """
    out: list[list] = []
    for k, row in enumerate(rows.tolist()):
        if kind == "integers" or (kind == "zeros" and k % 2 == 0):
            first_int = 0
        elif kind in ("zeros", "tiny"):
            first_int = len(row)
        else:
            first_int = n_continuous
        out.append([int(v) if i >= first_int and v.is_integer() else float(f"{v:.{SIGNIFICANT_DIGITS}g}")
                    for i, v in enumerate(row)])
    return out


def _stable(train, model, rows: list[list]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top-two probability gap, and whether float32 agrees with float64 arithmetic."""
    answers = train.model_module.predict(model, rows)
    probabilities = np.array([a["probabilities"] for a in answers])
    exact = _predict_float64(model, rows)
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    agrees = np.abs(probabilities - exact).max(axis=1) <= MAX_FLOAT64_DIFF
    return top2[:, 1] - top2[:, 0], agrees


def _predict_float64(model, rows: list[list]) -> np.ndarray:
    import torch  # only here: loading this module for `prepare` stays cheap

    exact = copy.deepcopy(model).double()
    with torch.inference_mode():
        return torch.softmax(exact(torch.tensor(rows, dtype=torch.float64)), dim=1).numpy()


def draw_inputs(train, model, rng: np.random.Generator) -> tuple[list[list], list[str]]:
    """N_INPUTS instances and their kinds, shuffled. Raises RuntimeError if a kind runs short."""
    counts = {**EDGE_CASES, "typical": N_INPUTS - sum(EDGE_CASES.values())}
    instances: list[list] = []
    kinds: list[str] = []
    for kind, needed in counts.items():
        pool = 100 * needed if kind == "near_tie" else 4 * needed  # near ties: ~1.7% of rows
        rows = _json_rows(_candidates(train, rng, kind, pool), kind, train.N_CONTINUOUS)
        gap, agrees = _stable(train, model, rows)
        keep = agrees & (gap >= MIN_GAP)
        if kind == "near_tie":
            keep &= gap < NEAR_TIE_MAX_GAP
        chosen = np.flatnonzero(keep)[:needed]
        if len(chosen) < needed:
            raise RuntimeError(f"only {len(chosen)} of {needed} usable inputs of kind {kind!r}")
        instances += [rows[i] for i in chosen]
        kinds += [kind] * needed
    order = rng.permutation(len(instances))
    return [instances[i] for i in order], [kinds[i] for i in order]


def draw_load_inputs(train, model, rng: np.random.Generator, *, exclude: list[list],
                     n: int = N_LOAD_INPUTS) -> list[list]:
    """n typical instances, stable as the probe inputs are (a clear top label, float32 exact enough),
    distinct from each other and from `exclude`. Raises RuntimeError if too few are usable."""
    rows = _json_rows(_candidates(train, rng, "typical", 2 * n), "typical", train.N_CONTINUOUS)
    gap, agrees = _stable(train, model, rows)
    chosen, seen = [], {tuple(row) for row in exclude}
    for i in np.flatnonzero(agrees & (gap >= MIN_GAP)):
        key = tuple(rows[i])
        if key not in seen:
            seen.add(key)
            chosen.append(rows[i])
        if len(chosen) == n:
            return chosen
    raise RuntimeError(f"only {len(chosen)} of {n} usable load inputs")


def _write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, separators=(",", ":")) + "\n", encoding="utf-8")


def materialize(root: Path, hidden_dir: Path) -> None:
    """Write the model, the probe inputs and the reference answers under `root` (see the docstring).

    Raises ValueError (see `read_seed`) for a malformed, public or weak secret seed; OSError if a
    file cannot be written.
    """
    secret = read_seed(hidden_dir)  # refuses a bad seed before anything is written
    train = _load_train()
    import torch

    with torch.random.fork_rng(devices=[]):  # building a model draws from torch's global generator
        train.train(root / "model")
        model = train.model_module.load(root / "model")
        instances, kinds = draw_inputs(train, model, np.random.default_rng(probe_seed(secret)))
        load = draw_load_inputs(train, model, np.random.default_rng(probe_seed(secret, "load")),
                                exclude=instances)
    meta = json.loads((root / "model" / "meta.json").read_text(encoding="utf-8"))
    _write_json(root / "probe_inputs" / "inputs.json", instances)
    _write_json(root / "probe_inputs" / "load_inputs.json", load)
    _write_json(root / "reference" / "predictions.json", train.model_module.predict(model, instances))
    _write_json(root / "reference" / "load_predictions.json", train.model_module.predict(model, load))
    _write_json(root / "reference" / "inputs_meta.json", {
        "version": 1, "kinds": kinds, "min_gap": MIN_GAP, "weights_sha256": meta["weights_sha256"]})
