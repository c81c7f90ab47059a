"""Measure the ranker examples on the hidden test set, to calibrate the grader's baseline and target.

Run from the repository root:  python assignments/ranker/data/calibrate.py [EXAMPLE|starter ...]

It materialises the data into a temporary folder, copies each example there with its
/data, /workspace and /output paths pointed at temporary folders, runs train.py and
predict.py on the host (no sandbox: the examples are ours), and grades scores.csv with the
assignment's own grader spec. Prints one line per example.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ASSIGNMENT = Path(__file__).resolve().parents[1]
ROOT = ASSIGNMENT.parents[1]
sys.path.insert(0, str(ROOT))

from graders.ranking.grader import RankingGrader  # noqa: E402
from harness.core.grading import CriterionResult, GradingContext, OutputFile  # noqa: E402
from harness.spec import load_assignment  # noqa: E402

_SANDBOX_PATH = re.compile(r"""(["'])/(data|workspace|output)(?=[/"'])""")


def materialize(data_root: Path) -> None:
    """Run the assignment's generator into `data_root`."""
    spec = importlib.util.spec_from_file_location("ranker_generate", ASSIGNMENT / "data" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.materialize(data_root, ASSIGNMENT / "hidden")


def _stage_example(example: Path, target: Path, tmp: Path) -> None:
    shutil.copytree(example, target)
    for script in target.glob("*.py"):
        # every string literal that starts with /data, /workspace or /output, as candidates write them
        text = _SANDBOX_PATH.sub(lambda m: f"{m[1]}{tmp / m[2]}", script.read_text())
        script.write_text(text)


def run_example(name: str, tmp: Path) -> tuple[Path, dict[str, float]]:
    """Run one example's stages against `tmp/data`; returns where it wrote scores and stage times."""
    for folder in ("workspace", "output"):
        shutil.rmtree(tmp / folder, ignore_errors=True)
        (tmp / folder).mkdir()
    work = tmp / "submissions" / name
    source = ASSIGNMENT / "starter" if name == "starter" else ASSIGNMENT / "examples" / name
    _stage_example(source, work, tmp)
    seconds = {}
    for stage in ("train", "predict"):
        start = time.monotonic()
        done = subprocess.run([sys.executable, f"{stage}.py"], cwd=work, capture_output=True, text=True)
        seconds[stage] = round(time.monotonic() - start, 1)
        if done.returncode:
            seconds[f"{stage}_failed"] = 1.0
            break
    return tmp / "output", seconds


def grade(out_dir: Path, data_root: Path, artifacts: Path) -> CriterionResult:
    """Grade `out_dir/scores.csv` with the first grader of assignment.yaml."""
    assignment = load_assignment(ASSIGNMENT)
    spec = assignment.spec.graders[0]
    grader = RankingGrader(name=spec.name, weight=spec.weight, args=RankingGrader.Args(**spec.args))
    scores = out_dir / "scores.csv"
    ctx = GradingContext(
        submission_dir=out_dir, assignment_dir=ASSIGNMENT, artifacts_dir=artifacts,
        outputs={"scores.csv": OutputFile("scores.csv", scores if scores.exists() else None)},
        hidden={"test_labels": data_root / "test_labels"},
        visible={"train": data_root / "train", "test": data_root / "test"})
    return grader.grade(ctx)


def summary(result: CriterionResult) -> dict[str, float]:
    keep = ("ndcg", "baseline_ndcg", "delta", "oracle")
    return {"score": round(result.score, 3),
            **{k: round(v, 4) for k, v in result.metrics.items() if k.startswith(keep)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("examples", nargs="*",
                        default=["broken", "starter", "baseline", "bad_output", "good"],
                        help="example folder names, or 'starter' for the starter kit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        materialize(tmp / "data")
        for example in args.examples:
            out_dir, seconds = run_example(example, tmp)
            result = grade(out_dir, tmp / "data", tmp / "artifacts" / example)
            print(example, seconds, summary(result), flush=True)


if __name__ == "__main__":
    main()
