"""Shared by the A/B-test tests: the assignment's data generator and its runs for a fixed secret."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

GENERATOR = Path(__file__).resolve().parents[1] / "assignments" / "abtest" / "data" / "generate.py"
SECRET = 124856728094189941987656391770411119511  # drawn once with secrets.randbits(128), not picked


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("abtest_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = load_generator()


def materialize_runs(root: Path, secret: int = SECRET) -> Path:
    """Write every run (public, hidden and truth) under `root/data` for `secret`; return that folder."""
    (root / "hidden").mkdir(parents=True)
    (root / "hidden" / "seed.txt").write_text(f"{secret}\n")
    generate.materialize(root / "data", root / "hidden")
    return root / "data"


def run_folder(data: Path, run: str) -> Path:
    return data / "public" if run == "public" else data / "hidden_runs" / run
