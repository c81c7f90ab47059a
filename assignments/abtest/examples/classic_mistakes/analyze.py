"""A plausible-looking analysis full of classic A/B-testing mistakes (on purpose).

- peeking: looks at the data day by day and stops at the first day the conversion test is
  "significant", reporting that day's cumulative numbers;
- one-sided everywhere: p-values halved, 95% "CIs" with z = 1.645, sample sizes with one-sided z;
- pooled variances where unpooled belong: Student's t-test, pooled SE in the intervals;
- CUPED theta fitted on the treatment arm only.
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

Z = 1.645  # one-sided 95%


def plan(d: dict) -> dict:
    z = stats.norm.ppf(1 - d["alpha"]) + stats.norm.ppf(d["power"])
    p1 = d["baseline_conversion"]
    p2 = p1 * (1 + d["mde_relative"])
    n_conv = math.ceil(z**2 * (p1 * (1 - p1) + p2 * (1 - p2)) / (p2 - p1) ** 2)
    n_rev = math.ceil(2 * (z * d["revenue_std"] / (d["mde_relative"] * d["baseline_revenue_per_user"])) ** 2)
    daily = d["daily_traffic_eligible"] * d["allocation"]
    return {name: {"sample_size_per_arm": n, "duration_days": math.ceil(d["arms"] * n / daily)}
            for name, n in (("conversion", n_conv), ("revenue", n_rev))}


def proportions(c: np.ndarray, t: np.ndarray) -> dict:
    pooled = np.concatenate([c, t]).mean()
    se = math.sqrt(pooled * (1 - pooled) * (1 / c.size + 1 / t.size))
    diff = float(t.mean() - c.mean())
    p_value = stats.norm.sf(abs(diff / se))  # two-sided p halved
    return {"lift_abs": diff, "lift_rel": float(t.mean() / c.mean() - 1),
            "ci_abs": [diff - Z * se, diff + Z * se],
            "ci_rel": [(diff - Z * se) / c.mean(), (diff + Z * se) / c.mean()], "p_value": float(p_value)}


def student(c: np.ndarray, t: np.ndarray) -> dict:
    test = stats.ttest_ind(t, c)  # equal variances assumed
    sp2 = ((c.size - 1) * c.var(ddof=1) + (t.size - 1) * t.var(ddof=1)) / (c.size + t.size - 2)
    se = math.sqrt(sp2 * (1 / c.size + 1 / t.size))
    diff = float(t.mean() - c.mean())
    return {"lift_abs": diff, "lift_rel": float(t.mean() / c.mean() - 1),
            "ci_abs": [diff - Z * se, diff + Z * se],
            "ci_rel": [(diff - Z * se) / c.mean(), (diff + Z * se) / c.mean()],
            "p_value": float(test.pvalue / 2)}


def peek(log: pd.DataFrame) -> pd.DataFrame:
    """The data up to the first day on which conversion looks significant (or all of it)."""
    for day in sorted(log["exposure_date"].unique()):
        seen = log[log["exposure_date"] <= day]
        treated = seen["variant"] == "treatment"
        if proportions(seen.loc[~treated, "converted"].to_numpy(float),
                       seen.loc[treated, "converted"].to_numpy(float))["p_value"] < 0.05:
            print(f"significant on {day}: stopping the test")
            return seen
    return log


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args()
    log = peek(pd.read_csv(args.data_dir / "experiment.csv"))
    t = (log["variant"] == "treatment").to_numpy()
    conv, y, x = log["converted"].to_numpy(float), log["revenue"].to_numpy(), log["pre_metric"].to_numpy()
    theta = float(np.cov(x[t], y[t])[0, 1] / x[t].var(ddof=1))
    cuped = student((y - theta * (x - x.mean()))[~t], (y - theta * (x - x.mean()))[t])
    srm_p = float(stats.chisquare([int((~t).sum()), int(t.sum())]).pvalue)
    answers = {
        "design": plan(json.loads((args.data_dir / "design.json").read_text())),
        "analysis": {"conversion": proportions(conv[~t], conv[t]), "revenue": student(y[~t], y[t]),
                     "revenue_cuped": {**{k: cuped[k] for k in ("lift_abs", "ci_abs", "p_value")},
                                       "theta": theta}},
        "srm": {"p_value": srm_p, "detected": srm_p < 0.001},
    }
    conv_ci = answers["analysis"]["conversion"]["ci_abs"]
    if answers["srm"]["detected"]:
        answers["decision"] = "inconclusive"
    elif conv_ci[0] > 0 and cuped["ci_abs"][1] >= 0:
        answers["decision"] = "ship"
    elif conv_ci[1] < 0:
        answers["decision"] = "dont_ship"
    else:
        answers["decision"] = "inconclusive"
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "answers.json").write_text(json.dumps(answers, indent=2))


if __name__ == "__main__":
    main()
