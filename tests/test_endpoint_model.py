"""The endpoint assignment's model (model/train.py, model/model.py) and data generator.

The reference `predict` is checked against an independent forward pass written here in numpy
float64 from the saved state_dict (standardise, two ReLU layers, logits, softmax), and the
model's accuracy against the majority-class rate of held-out rows drawn from a stream the
training never used. Training runs twice (once per secret), which also checks determinism.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

ASSIGNMENT = Path(__file__).resolve().parents[1] / "assignments" / "endpoint"
SECRET_A = 99750186253667409973637718282314934616  # drawn once with secrets.randbits(128)
SECRET_B = 14333293646921984821468623764694501072


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


generate = _load("endpoint_generate", ASSIGNMENT / "data" / "generate.py")
train = _load("endpoint_train", ASSIGNMENT / "model" / "train.py")


def _materialize(root: Path, secret: int) -> Path:
    (root / "hidden").mkdir(parents=True)
    (root / "hidden" / "seed.txt").write_text(f"{secret}\n")
    generate.materialize(root / "data", root / "hidden")
    return root / "data"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    threads, rng_state = torch.get_num_threads(), torch.random.get_rng_state()
    out = {s: _materialize(tmp_path_factory.mktemp("endpoint"), s) for s in (SECRET_A, SECRET_B)}
    # training must leave the caller's torch settings alone (the harness runs it in-process)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    return out


def _read(data: Path, rel: str):
    return json.loads((data / rel).read_text())


def _numpy_forward(model_dir: Path, rows: list[list[float]]) -> np.ndarray:
    """Softmax probabilities from the state_dict, in float64 numpy (independent of model.py)."""
    state = {k: v.double().numpy() for k, v in torch.load(model_dir / "model.pt", weights_only=True).items()}
    h = (np.asarray(rows, dtype=np.float64) - state["mean"]) / state["scale"]
    for i in (0, 2, 4):
        h = h @ state[f"net.{i}.weight"].T + state[f"net.{i}.bias"]
        h = np.maximum(h, 0) if i < 4 else h
    e = np.exp(h - h.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_public_seed_is_refused_as_a_secret(tmp_path: Path) -> None:
    assert train.TRAIN_SEED in generate.PUBLIC_SEEDS
    (tmp_path / "seed.txt").write_text(f"{train.TRAIN_SEED}\n")
    with pytest.raises(ValueError, match="public seed"):
        generate.prepare(tmp_path)


def test_predict_shapes_on_an_untrained_model() -> None:
    torch.manual_seed(0)
    model = train.model_module.TabularClassifier().eval()
    answers = train.model_module.predict(model, [[0.0] * 20, [1, 2, 3] + [4.5] * 17])
    assert [sorted(a) for a in answers] == [["label", "probabilities"]] * 2
    for answer in answers:
        p = answer["probabilities"]
        assert len(p) == 3 and all(isinstance(x, float) and x >= 0 for x in p)
        assert abs(sum(p) - 1) < 1e-12 and answer["label"] == int(np.argmax(p))


@pytest.mark.slow
def test_training_is_deterministic_and_the_model_secret_free(data: dict[int, Path]) -> None:
    a, b = data[SECRET_A] / "model", data[SECRET_B] / "model"
    assert (a / "model.pt").read_bytes() == (b / "model.pt").read_bytes()
    assert (a / "meta.json").read_text() == (b / "meta.json").read_text()
    assert (a / "model.py").read_bytes() == (ASSIGNMENT / "model" / "model.py").read_bytes()
    meta = _read(data[SECRET_A], "model/meta.json")
    assert (meta["n_features"], meta["n_classes"], meta["max_batch"]) == (20, 3, 64)
    assert len(meta["feature_names"]) == 20 and meta["torch_version"] == torch.__version__


@pytest.mark.slow
def test_reference_predict_matches_an_independent_forward_pass(data: dict[int, Path]) -> None:
    model_dir = data[SECRET_A] / "model"
    inputs = _read(data[SECRET_A], "probe_inputs/inputs.json")
    answers = train.model_module.predict(train.model_module.load(model_dir), inputs)
    expected = _numpy_forward(model_dir, inputs)
    got = np.array([a["probabilities"] for a in answers])
    assert np.allclose(got.sum(axis=1), 1, atol=1e-12)
    assert np.abs(got - expected).max() < 1e-4  # float32 logits against float64 throughout
    assert [a["label"] for a in answers] == expected.argmax(axis=1).tolist()


@pytest.mark.slow
def test_model_is_clearly_better_than_chance(data: dict[int, Path]) -> None:
    world = train.make_world()
    x, y = train.sample(world, np.random.default_rng([train.TRAIN_SEED, 99]), 4000)  # unseen stream
    model = train.model_module.load(data[SECRET_A] / "model")
    labels = np.array([a["label"] for a in train.model_module.predict(model, x.tolist())])
    majority = np.bincount(y).max() / len(y)
    assert majority < 0.45
    assert (labels == y).mean() > majority + 0.3


@pytest.mark.slow
def test_materialize_writes_inputs_and_their_reference(data: dict[int, Path]) -> None:
    inputs = _read(data[SECRET_A], "probe_inputs/inputs.json")
    reference = _read(data[SECRET_A], "reference/predictions.json")
    kinds = _read(data[SECRET_A], "reference/inputs_meta.json")["kinds"]
    assert len(inputs) == generate.N_INPUTS == len(reference) == len(kinds)
    for row in inputs:
        assert len(row) == 20 and all(type(v) in (int, float) and np.isfinite(v) for v in row)
    model = train.model_module.load(data[SECRET_A] / "model")
    assert reference == train.model_module.predict(model, inputs)
    expected_kinds = {**generate.EDGE_CASES, "typical": generate.N_INPUTS - sum(generate.EDGE_CASES.values())}
    assert {k: kinds.count(k) for k in expected_kinds} == expected_kinds


@pytest.mark.slow
def test_every_input_is_clear_of_a_tie_and_each_kind_is_what_it_says(data: dict[int, Path]) -> None:
    inputs = _read(data[SECRET_A], "probe_inputs/inputs.json")
    reference = _read(data[SECRET_A], "reference/predictions.json")
    kinds = _read(data[SECRET_A], "reference/inputs_meta.json")["kinds"]
    for row, kind, answer in zip(inputs, kinds, reference, strict=True):
        top2 = sorted(answer["probabilities"])[-2:]
        assert top2[1] - top2[0] >= generate.MIN_GAP
        if kind == "near_tie":
            assert top2[1] - top2[0] < generate.NEAR_TIE_MAX_GAP
        if kind == "zeros":
            assert all(v == 0 for v in row)
        if kind == "integers":
            assert all(type(v) is int for v in row)
        if kind == "negative":
            assert all(v <= 0 for v in row)
        if kind == "large":
            assert max(abs(v) for v in row) >= 100
    assert any(type(v) is int for row in inputs for v in row[16:])  # counts go out as JSON integers


@pytest.mark.slow
def test_inputs_come_from_the_secret(data: dict[int, Path]) -> None:
    a = _read(data[SECRET_A], "probe_inputs/inputs.json")
    b = _read(data[SECRET_B], "probe_inputs/inputs.json")
    shared = {json.dumps(r) for r in a} & {json.dumps(r) for r in b}
    assert all(not any(json.loads(r)) for r in shared)  # only the all-zero rows coincide
    model = train.model_module.load(data[SECRET_A] / "model")
    again, _kinds = generate.draw_inputs(train, model, np.random.default_rng(generate.probe_seed(SECRET_A)))
    assert again == a


@pytest.mark.slow
def test_load_inputs_are_new_to_the_server_distinct_and_clear_of_ties(data: dict[int, Path]) -> None:
    load = _read(data[SECRET_A], "probe_inputs/load_inputs.json")
    reference = _read(data[SECRET_A], "reference/load_predictions.json")
    inputs = _read(data[SECRET_A], "probe_inputs/inputs.json")
    assert len(load) == generate.N_LOAD_INPUTS == len(reference)
    rows = {json.dumps(r) for r in load}
    assert len(rows) == len(load)  # no request of the load phases repeats another
    assert not rows & {json.dumps(r) for r in inputs}  # nor one the correctness phase sent
    assert not rows & {json.dumps(r) for r in _read(data[SECRET_B], "probe_inputs/load_inputs.json")}
    model = train.model_module.load(data[SECRET_A] / "model")
    sample = load[::64]  # the reference is the model's answer (a sample: the whole is 32768 rows)
    assert reference[::64] == train.model_module.predict(model, sample)
    gaps = [np.diff(sorted(a["probabilities"])[-2:])[0] for a in reference]
    assert min(gaps) >= generate.MIN_GAP


@pytest.mark.slow
def test_brief_example_is_the_reference_answer(data: dict[int, Path]) -> None:
    brief = (ASSIGNMENT / "BRIEF.md").read_text()
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", brief, re.S)]
    request = next(b for b in blocks if "instances" in b)
    response = next(b for b in blocks if "predictions" in b)
    model = train.model_module.load(data[SECRET_A] / "model")
    answers = train.model_module.predict(model, request["instances"])
    expected = response["predictions"]
    assert [a["label"] for a in answers] == [p["label"] for p in expected]
    got, shown = [a["probabilities"] for a in answers], [p["probabilities"] for p in expected]
    assert np.allclose(got, shown, atol=1e-6)  # the brief rounds to 6 decimals
