"""What a worker sends back is checked before it lands in the coordinator's result folder
(harness.cluster._apply), and the kit sent to workers holds no link (unit tests: no Dask)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness._stages import RunState
from harness._trees import pack_tree
from harness.cluster import _apply, _kit
from harness.errors import InfraError, SpecError
from harness.results import Status
from harness.spec import load_assignment
from harness.worker import StageOutcome

REPO = Path(__file__).resolve().parents[1]
RECORD = {"name": "predict", "status": "ok", "exit_code": 0, "seconds": 1.0, "peak_memory_bytes": None,
          "log_file": "logs/predict.log", "log_truncated": False}


def _returned(tmp: Path, files: dict[str, bytes]) -> bytes:
    root = tmp / "sent"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return pack_tree(root)


@pytest.fixture
def result_dir(tmp_path) -> Path:
    folder = tmp_path / "results" / "cand-1234"
    (folder / "review").mkdir(parents=True)
    (folder / "review" / "notes.md").write_text("the coordinator's copy\n")
    return folder


def test_a_sound_return_lands_as_logs_outputs_and_records(tmp_path, result_dir):
    files = _returned(tmp_path, {"logs/predict.log": b"done\n", "outputs/scores.csv": b"qid,doc,score\n"})
    outputs = {"scores.csv": ("outputs/scores.csv", ""), "other.csv": (None, "not written")}
    outcome = StageOutcome(worker="w1", stages=[RECORD], files=files, outputs=outputs)
    run = RunState()
    _apply(outcome, run, result_dir, cap=1 << 20)
    assert (result_dir / "outputs" / "scores.csv").read_bytes() == b"qid,doc,score\n"
    assert run.outputs["scores.csv"].path == result_dir / "outputs" / "scores.csv"
    assert run.outputs["other.csv"].path is None and run.outputs["other.csv"].problem == "not written"
    assert run.stages[0].name == "predict" and run.status is Status.OK
    assert sorted(p.name for p in result_dir.parent.iterdir()) == ["cand-1234"]  # nothing left beside it


@pytest.mark.parametrize(("files", "outputs", "why"), [
    ({"review/notes.md": b"forged\n"}, {}, "'review' is not one of logs, outputs"),
    ({"artifacts/ndcg/plot.png": b"x"}, {}, "'artifacts' is not one of"),
    ({"outputs/a.csv": b"x"}, {"a.csv": ("logs/../outputs/a.csv", "")}, "output 'a.csv'"),
    ({"outputs/a.csv": b"x"}, {"a.csv": ("outputs/missing.csv", "")}, "output 'a.csv'"),
    ({"outputs/big.bin": b"x" * 100_000}, {}, "over"),
])
def test_a_return_outside_what_a_worker_writes_is_refused(tmp_path, result_dir, files, outputs, why):
    outcome = StageOutcome(worker="w1", stages=[RECORD], outputs=outputs, files=_returned(tmp_path, files))
    with pytest.raises(InfraError, match="refused") as caught:
        _apply(outcome, RunState(), result_dir, cap=64 << 10)
    assert why in str(caught.value)
    assert (result_dir / "review" / "notes.md").read_text() == "the coordinator's copy\n"
    assert sorted(p.name for p in result_dir.parent.iterdir()) == ["cand-1234"]


def test_a_record_that_does_not_parse_is_refused(tmp_path, result_dir):
    outcome = StageOutcome(worker="w1", stages=[{"name": "x", "status": "pwned"}],
                           files=_returned(tmp_path, {}))
    with pytest.raises(InfraError, match="refused: ValidationError"):
        _apply(outcome, RunState(), result_dir, cap=64 << 10)


def test_the_kit_holds_the_hidden_suite_and_no_link(tmp_path):
    copy = tmp_path / "ranker"
    shutil.copytree(REPO / "assignments" / "ranker", copy, ignore=shutil.ignore_patterns("examples", "data"))
    (copy / "data").mkdir()
    (copy / "data" / "generate.py").write_text("def materialize(root, hidden): pass\n")
    assignment = load_assignment(copy)
    kit = _kit(assignment)
    assert b"test_interface.py" in kit  # the hidden suite the stages mount
    assert (copy / "hidden" / "README.md").read_bytes() not in kit
    (copy / "hidden_tests" / "conftest_seed.txt").symlink_to(copy / "hidden" / "README.md")
    with pytest.raises(SpecError, match="is a link"):
        _kit(assignment)
