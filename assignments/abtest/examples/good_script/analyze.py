"""Size the follow-up test, analyse the finished one and make the call; writes answers.json."""

import argparse
import json
import math
from pathlib import Path

import pandas as pd
from stats_tools import (
    compare_means,
    compare_proportions,
    cuped,
    sample_ratio,
    users_per_arm_means,
    users_per_arm_proportions,
)


def days_needed(per_arm: int, d: dict) -> int:
    return math.ceil(d["arms"] * per_arm / (d["daily_traffic_eligible"] * d["allocation"]))


def design(d: dict) -> dict:
    common = {"alpha": d["alpha"], "power": d["power"], "two_sided": d["two_sided"]}
    n_conv = users_per_arm_proportions(d["baseline_conversion"], d["mde_relative"], **common)
    delta = d["mde_relative"] * d["baseline_revenue_per_user"]
    n_rev = users_per_arm_means(delta, d["revenue_std"], **common)
    return {"conversion": {"sample_size_per_arm": n_conv, "duration_days": days_needed(n_conv, d)},
            "revenue": {"sample_size_per_arm": n_rev, "duration_days": days_needed(n_rev, d)}}


def analysis(log: pd.DataFrame, planned: dict) -> tuple[dict, dict]:
    treated = (log["variant"] == "treatment").to_numpy()
    conv = log["converted"].to_numpy()
    revenue, pre = log["revenue"].to_numpy(float), log["pre_metric"].to_numpy(float)
    n_t, n_c = int(treated.sum()), int((~treated).sum())
    results = {
        "conversion": compare_proportions(int(conv[~treated].sum()), n_c, int(conv[treated].sum()), n_t),
        "revenue": compare_means(revenue[~treated], revenue[treated]),
        "revenue_cuped": cuped(revenue, pre, treated),
    }
    return results, sample_ratio(n_c, n_t, planned)


def decide(results: dict, srm: dict) -> str:
    conv_ci, cuped_ci = results["conversion"]["ci_abs"], results["revenue_cuped"]["ci_abs"]
    if srm["detected"]:
        return "inconclusive"  # a broken split: none of the numbers can be trusted
    if conv_ci[0] > 0 and cuped_ci[1] >= 0:
        return "ship"
    if conv_ci[1] < 0:
        return "dont_ship"
    return "inconclusive"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args()
    log = pd.read_csv(args.data_dir / "experiment.csv")
    plan = json.loads((args.data_dir / "design.json").read_text())
    results, srm = analysis(log, plan["planned_split"])
    answers = {"design": design(plan),
               "analysis": results, "srm": srm, "decision": decide(results, srm)}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    # numpy scalars (np.int64, np.bool_) become plain Python values
    text = json.dumps(answers, indent=2, default=lambda value: value.item())
    (args.output_dir / "answers.json").write_text(text)
    print(f"decision: {answers['decision']}")


if __name__ == "__main__":
    main()
