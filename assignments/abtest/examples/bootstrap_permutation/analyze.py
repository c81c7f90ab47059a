"""Checkout A/B test by resampling: bootstrap CIs, permutation p-values, CUPED, SRM, the call.

python analyze.py --data-dir DIR --output-dir DIR  (writes DIR/answers.json)
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from resampling import bootstrap_lifts, permutation_p_values
from scipy import stats
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import proportion_effectsize

SEED = 2026  # the resampling is reproducible
SRM_ALPHA = 0.001


def sample_sizes(design: dict) -> dict:
    """Users per arm (Cohen's h for conversion, a t-test for revenue) and days to get them."""
    alternative = "two-sided" if design["two_sided"] else "larger"
    common = {"alpha": design["alpha"], "power": design["power"], "ratio": 1.0, "alternative": alternative}
    p1 = design["baseline_conversion"]
    h = proportion_effectsize(p1 * (1 + design["mde_relative"]), p1)
    n_conv = math.ceil(NormalIndPower().solve_power(effect_size=abs(h), **common))
    d = design["mde_relative"] * design["baseline_revenue_per_user"] / design["revenue_std"]
    n_rev = math.ceil(TTestIndPower().solve_power(effect_size=d, **common))
    per_day = design["daily_traffic_eligible"] * design["allocation"]
    return {metric: {"sample_size_per_arm": n, "duration_days": math.ceil(design["arms"] * n / per_day)}
            for metric, n in (("conversion", n_conv), ("revenue", n_rev))}


def srm_check(df: pd.DataFrame, planned: dict) -> dict:
    """Chi-square goodness of fit of the users per arm against the planned split."""
    users = df["variant"].value_counts().reindex(["control", "treatment"])
    expected = [users.sum() * planned["control"], users.sum() * planned["treatment"]]
    p = float(stats.chisquare(users.to_numpy(), f_exp=expected).pvalue)
    return {"p_value": p, "detected": p < SRM_ALPHA}


METRICS = ["converted", "revenue", "revenue_cuped"]


def compare(df: pd.DataFrame, rng: np.random.Generator) -> list[dict]:
    """Bootstrap lifts and CIs and a permutation p-value for each of METRICS."""
    control = df.loc[df["variant"] == "control", METRICS].to_numpy(float)
    treatment = df.loc[df["variant"] == "treatment", METRICS].to_numpy(float)
    results = bootstrap_lifts(control, treatment, rng)
    for result, p in zip(results, permutation_p_values(control, treatment, rng), strict=True):
        result["p_value"] = p
    return results


def add_cuped(df: pd.DataFrame) -> float:
    """Adds `revenue_cuped` (theta from both arms pooled) and returns theta."""
    theta = df["pre_metric"].cov(df["revenue"]) / df["pre_metric"].var()
    df["revenue_cuped"] = df["revenue"] - theta * (df["pre_metric"] - df["pre_metric"].mean())
    return float(theta)


def decide(conversion: dict, cuped: dict, srm: dict) -> str:
    if srm["detected"]:
        return "inconclusive"
    if conversion["ci_abs"][0] > 0 and cuped["ci_abs"][1] >= 0:
        return "ship"
    if conversion["ci_abs"][1] < 0:
        return "dont_ship"
    return "inconclusive"


def analyse(df: pd.DataFrame, design: dict) -> dict:
    rng = np.random.default_rng(SEED)
    theta = add_cuped(df)
    conversion, revenue, cuped = compare(df, rng)
    cuped = {"lift_abs": cuped["lift_abs"], "ci_abs": cuped["ci_abs"], "p_value": cuped["p_value"],
             "theta": theta}
    srm = srm_check(df, design["planned_split"])
    return {"design": sample_sizes(design),
            "analysis": {"conversion": conversion, "revenue": revenue, "revenue_cuped": cuped},
            "srm": srm, "decision": decide(conversion, cuped, srm)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args()
    df = pd.read_csv(args.data_dir / "experiment.csv")
    design = json.loads((args.data_dir / "design.json").read_text())
    answers = analyse(df, design)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "answers.json").write_text(json.dumps(answers, indent=2))
    print(json.dumps(answers["srm"]), answers["decision"])


if __name__ == "__main__":
    main()
