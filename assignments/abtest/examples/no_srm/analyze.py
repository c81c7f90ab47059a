"""Sound statistics, but the split is never checked: no `srm` answer, and the call ignores it."""

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))


def plan(d: dict) -> dict:
    z_a = stats.norm.ppf(1 - d["alpha"] / 2 if d["two_sided"] else 1 - d["alpha"])
    z_b = stats.norm.ppf(d["power"])
    p1 = d["baseline_conversion"]
    p2 = p1 * (1 + d["mde_relative"])
    spread = z_a * math.sqrt(2 * p1 * (1 - p1)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    n_conv = math.ceil(spread**2 / (p2 - p1) ** 2)
    delta = d["mde_relative"] * d["baseline_revenue_per_user"]
    n_rev = math.ceil(2 * (d["revenue_std"] * (z_a + z_b) / delta) ** 2)
    daily = d["daily_traffic_eligible"] * d["allocation"]
    return {name: {"sample_size_per_arm": n, "duration_days": math.ceil(d["arms"] * n / daily)}
            for name, n in (("conversion", n_conv), ("revenue", n_rev))}


def relative(mc: float, vc: float, mt: float, vt: float) -> tuple[float, list[float]]:
    """mt/mc - 1 with a delta-method CI; vc and vt are the variances of the two means."""
    se = math.sqrt(vt / mc**2 + mt**2 * vc / mc**4)
    lift = float(mt / mc - 1)
    return lift, [lift - Z95 * se, lift + Z95 * se]


def welch(c: np.ndarray, t: np.ndarray) -> dict:
    test = stats.ttest_ind(t, c, equal_var=False)
    ci = test.confidence_interval(0.95)
    lift_rel, ci_rel = relative(c.mean(), c.var(ddof=1) / c.size, t.mean(), t.var(ddof=1) / t.size)
    return {"lift_abs": float(t.mean() - c.mean()), "lift_rel": lift_rel,
            "ci_abs": [float(ci.low), float(ci.high)], "ci_rel": ci_rel, "p_value": float(test.pvalue)}


def proportions(c: np.ndarray, t: np.ndarray) -> dict:
    diff = float(t.mean() - c.mean())
    pooled = np.concatenate([c, t]).mean()
    z = diff / math.sqrt(pooled * (1 - pooled) * (1 / c.size + 1 / t.size))
    vc, vt = c.mean() * (1 - c.mean()) / c.size, t.mean() * (1 - t.mean()) / t.size
    se = math.sqrt(vc + vt)
    lift_rel, ci_rel = relative(c.mean(), vc, t.mean(), vt)
    return {"lift_abs": diff, "lift_rel": lift_rel, "ci_abs": [diff - Z95 * se, diff + Z95 * se],
            "ci_rel": ci_rel, "p_value": float(2 * stats.norm.sf(abs(z)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args()
    log = pd.read_csv(args.data_dir / "experiment.csv")
    t = log["variant"].eq("treatment").to_numpy()
    conv, y, x = log["converted"].to_numpy(float), log["revenue"].to_numpy(), log["pre_metric"].to_numpy()
    theta = float(np.cov(x, y)[0, 1] / x.var(ddof=1))
    adjusted = y - theta * (x - x.mean())
    cuped = welch(adjusted[~t], adjusted[t])
    cuped = {k: cuped[k] for k in ("lift_abs", "ci_abs", "p_value")}
    analysis = {"conversion": proportions(conv[~t], conv[t]), "revenue": welch(y[~t], y[t]),
                "revenue_cuped": {**cuped, "theta": theta}}
    conv_ci = analysis["conversion"]["ci_abs"]
    if conv_ci[0] > 0 and cuped["ci_abs"][1] >= 0:
        decision = "ship"
    elif conv_ci[1] < 0:
        decision = "dont_ship"
    else:
        decision = "inconclusive"
    answers = {"design": plan(json.loads((args.data_dir / "design.json").read_text())),
               "analysis": analysis, "decision": decision}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "answers.json").write_text(json.dumps(answers, indent=2))


if __name__ == "__main__":
    main()
