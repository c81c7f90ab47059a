"""Starter script: `python analyze.py --data-dir DIR --output-dir DIR` writes DIR/answers.json.

The statistics are left for you (each TODO raises NotImplementedError); the reading, the shape
of the answers and the writing are done. See BRIEF.md and answers.schema.json for every field.
If you submit analysis.ipynb instead, delete this file (when both exist the notebook is used).
"""

import argparse
import json
from pathlib import Path

import pandas as pd


def design(d: dict) -> dict:
    """Part 1, from design.json: users per arm and whole days, for conversion and for revenue."""
    # TODO: {"conversion": {"sample_size_per_arm": int, "duration_days": int}, "revenue": {...}}
    raise NotImplementedError("Part 1: size the follow-up experiment")


def analysis(log: pd.DataFrame) -> dict:
    """Part 2: treatment against control at 95%, two-sided."""
    # TODO: {"conversion": {"lift_abs", "lift_rel", "ci_abs", "ci_rel", "p_value"},
    #        "revenue": {same keys}, "revenue_cuped": {"lift_abs", "ci_abs", "p_value", "theta"}}
    raise NotImplementedError("Part 2: compare the arms")


def srm_check(log: pd.DataFrame, planned: dict) -> dict:
    """Sample-ratio mismatch: chi-square of the arm counts against the planned shares.

    `planned` is design.json's `planned_split`, e.g. {"control": 0.5, "treatment": 0.5}.
    """
    # TODO: {"p_value": float, "detected": bool}
    raise NotImplementedError("Part 2: check the split")


def decide(results: dict, srm: dict) -> str:
    """The decision rule of the brief: "ship", "dont_ship" or "inconclusive"."""
    raise NotImplementedError("the call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args()
    log = pd.read_csv(args.data_dir / "experiment.csv")
    plan = json.loads((args.data_dir / "design.json").read_text())
    results, srm = analysis(log), srm_check(log, plan["planned_split"])
    answers = {"design": design(plan),
               "analysis": results, "srm": srm, "decision": decide(results, srm)}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    # numpy numbers (np.float64, np.int64, np.bool_) are written as plain JSON values
    text = json.dumps(answers, indent=2, default=lambda value: value.item())
    (args.output_dir / "answers.json").write_text(text)


if __name__ == "__main__":
    main()
