"""The abtest data generator: determinism, no truth in visible files, and planted effects found.

The planted effects are checked with the harness's reference statistics (graders/abtest/stats.py,
itself tested against published figures in tests/test_abstats.py). The CUPED check uses the
identity of Deng, Xu, Kohavi and Walker (WSDM 2013, "Improving the sensitivity of online
controlled experiments by utilizing pre-experiment data", section 3.2): with the optimal theta
the variance falls by the factor 1 - corr(x, y)^2. Tests never touch the repository's `hidden/`
folder; they give the generator a temporary one.
"""

from __future__ import annotations

import csv
import functools
import json
import stat
from pathlib import Path

import numpy as np
import pytest

from graders.abtest.stats import cuped, srm_test, two_proportion_test, welch_test
from tests.abtest_runs import SECRET, generate, materialize_runs, run_folder

OTHER_SECRET = 59762680961794307607054800443212711258
RUNS = ("no_effect", "clear_win", "srm")
LOG_COLUMNS = ["user_id", "variant", "exposure_date", "pre_metric", "converted", "revenue"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize_runs(tmp_path_factory.mktemp("abtest"))


@functools.cache
def _log(data: Path, run: str) -> dict[str, np.ndarray]:
    with (run_folder(data, run) / "experiment.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {"treated": np.array([r["variant"] == "treatment" for r in rows]),
            "converted": np.array([int(r["converted"]) for r in rows]),
            "revenue": np.array([float(r["revenue"]) for r in rows]),
            "pre": np.array([float(r["pre_metric"]) for r in rows])}


def _truth(data: Path, run: str) -> dict:
    return json.loads((data / "truth" / run / "truth.json").read_text())


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _proportions(log: dict[str, np.ndarray]):
    t, c = log["treated"], log["converted"]
    return two_proportion_test(int(c[~t].sum()), int((~t).sum()), int(c[t].sum()), int(t.sum()))


def test_same_secret_same_files_and_public_data_ignores_the_secret(data: Path, tmp_path: Path) -> None:
    again = _files(materialize_runs(tmp_path / "a", SECRET))
    assert again == _files(data)
    other = _files(materialize_runs(tmp_path / "b", OTHER_SECRET))
    public = [k for k in again if k.startswith("public/")]
    assert public and all(other[k] == again[k] for k in public)
    for run in RUNS:
        assert other[f"hidden_runs/{run}/experiment.csv"] != again[f"hidden_runs/{run}/experiment.csv"]


def test_simulate_is_deterministic_per_seed() -> None:
    kwargs = {"n_users": 2000, "true_lift_conv": 0.1, "true_lift_revenue": 0.1, "srm": 0.05}
    a, b = generate.simulate(seed=7, **kwargs), generate.simulate(seed=7, **kwargs)
    c = generate.simulate(seed=8, **kwargs)
    assert np.array_equal(a.user_id, b.user_id) and np.array_equal(a.revenue, b.revenue)
    assert not np.array_equal(a.revenue, c.revenue)


def test_visible_files_carry_no_truth(data: Path) -> None:
    for run in ("public", *RUNS):
        folder = run_folder(data, run)
        assert sorted(p.name for p in folder.iterdir()) == ["design.json", "experiment.csv", "history.csv"]
        with (folder / "experiment.csv").open() as fh:
            assert next(csv.reader(fh)) == LOG_COLUMNS
        with (folder / "history.csv").open() as fh:
            assert next(csv.reader(fh)) == ["date", "visitors", "conversions", "revenue"]
        design = json.loads((folder / "design.json").read_text())
        assert not [k for k in design if any(w in k for w in ("lift", "effect", "true", "srm", "drop"))]
        assert {"baseline_conversion", "mde_relative", "alpha", "power", "daily_traffic_eligible",
                "revenue_std"} <= design.keys()
        truth = _truth(data, run)  # the truth lives apart, for every run
        assert {"true_lift_conv", "true_lift_revenue", "srm"} <= truth.keys()
    assert not list((data / "public").rglob("truth*")) and not list((data / "hidden_runs").rglob("truth*"))


def test_srm_flagged_only_on_the_srm_run(data: Path) -> None:
    for run in ("public", *RUNS):
        log = _log(data, run)
        counts = [int((~log["treated"]).sum()), int(log["treated"].sum())]
        split = json.loads((run_folder(data, run) / "design.json").read_text())["planned_split"]
        assert srm_test(counts, [split["control"], split["treatment"]]).flagged == (run == "srm"), run
        assert _truth(data, run)["treatment_share"] == split["treatment"]
    truth, log = _truth(data, "srm"), _log(data, "srm")
    assert truth["srm"] > 0 and truth["dropped"] == truth["n_assigned"] - log["treated"].size
    treated = int(log["treated"].sum())
    assert truth["dropped"] == round(truth["srm"] * (treated + truth["dropped"]))  # lost from treatment


def test_clear_win_detected_with_the_true_lift_inside_the_ci(data: Path) -> None:
    result, truth = _proportions(_log(data, "clear_win")), _truth(data, "clear_win")
    assert truth["true_lift_conv"] >= 0.1
    assert result.p_value < 0.01
    assert result.relative_ci.low <= truth["true_lift_conv"] <= result.relative_ci.high
    assert result.ci.low <= truth["true_diff_conv"] <= result.ci.high


def test_null_run_ci_contains_zero(data: Path) -> None:
    result, truth = _proportions(_log(data, "no_effect")), _truth(data, "no_effect")
    assert truth["true_lift_conv"] == 0 and truth["true_lift_revenue"] == 0
    assert result.ci.low <= 0 <= result.ci.high and result.relative_ci.low <= 0 <= result.relative_ci.high
    log = _log(data, "no_effect")
    welch = welch_test(log["revenue"][~log["treated"]], log["revenue"][log["treated"]])
    assert welch.ci.low <= 0 <= welch.ci.high


def test_cuped_on_public_run_cuts_variance_by_corr_squared(data: Path) -> None:
    log = _log(data, "public")
    corr = float(np.corrcoef(log["pre"], log["revenue"])[0, 1])
    assert 0.6 <= corr <= 0.75  # the README: correlation 0.67 to 0.70 (bounds kept loose)
    result = cuped(log["revenue"], log["pre"], log["treated"].astype(int))
    assert result.variance_reduction == pytest.approx(corr**2, abs=1e-6)
    plain = welch_test(log["revenue"][~log["treated"]], log["revenue"][log["treated"]])
    width = (result.adjusted.ci.high - result.adjusted.ci.low) / (plain.ci.high - plain.ci.low)
    assert width == pytest.approx(np.sqrt(1 - corr**2), rel=0.05)


def test_revenue_is_zero_without_conversion_and_pre_metric_heavy_tailed(data: Path) -> None:
    log = _log(data, "public")
    assert np.all(log["revenue"][log["converted"] == 0] == 0)
    assert np.all(log["revenue"][log["converted"] == 1] > 0)
    pre = log["pre"][log["pre"] > 0]
    assert np.quantile(pre, 0.999) > 8 * np.median(pre)


def test_missing_seed_file_is_created_private_with_128_bits(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    generate.prepare(hidden)
    path = hidden / "seed.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    seed = int(path.read_text())
    assert 2**64 <= seed < 2**128
    generate.prepare(hidden)
    assert int(path.read_text()) == seed  # an existing seed is kept


@pytest.mark.parametrize("text", ["20260302", "12345", "not a seed"])
def test_public_weak_or_malformed_seed_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "seed.txt").write_text(text)
    with pytest.raises(ValueError, match="seed"):
        generate.prepare(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("secret", [SECRET, OTHER_SECRET, 250437406457935838395474003386431219477])
def test_hidden_runs_are_clear_cut_for_any_secret(secret: int) -> None:
    # The conditions are re-checked here with statsmodels and scipy, independently of the generator.
    from scipy.stats import chisquare, ttest_ind
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize, proportions_ztest

    def cohen_h_size(d: generate.Design) -> float:
        h = proportion_effectsize(d.baseline_conversion * (1 + d.mde_relative), d.baseline_conversion)
        return NormalIndPower().solve_power(effect_size=h, alpha=d.alpha, power=d.power)

    def conversion(run: generate.Experiment) -> tuple[list[int], float, float]:
        treated = run.variant == "treatment"
        counts = [int((~treated).sum()), int(treated.sum())]
        wins = [int(run.converted[~treated].sum()), int(run.converted[treated].sum())]
        _, p = proportions_ztest(wins[::-1], counts[::-1])
        return counts, wins[1] / counts[1] - wins[0] / counts[0], p

    public = generate.simulate(seed=generate.PUBLIC_SEED, n_users=generate.N_USERS,
                               true_lift_conv=generate.PUBLIC_LIFT_CONV,
                               true_lift_revenue=generate.PUBLIC_LIFT_REVENUE)
    public_design = generate.history(seed=generate.PUBLIC_SEED).design
    _, public_diff, public_p = conversion(public)
    unlike = generate.signature(public, public_design)
    for name in RUNS:
        seed, run = generate.clear_cut_run(secret, name, unlike=unlike)
        treated = run.variant == "treatment"
        counts, diff, p_conv = conversion(run)
        share = 0.4 if name == "clear_win" else 0.5  # the planned split (clear_win: 60/40)
        assert run.truth.treatment_share == share
        planned = [sum(counts) * (1 - share), sum(counts) * share]
        assert (chisquare(counts, f_exp=planned).pvalue < 1e-6) == (name == "srm"), name
        p_rev = ttest_ind(run.revenue[treated], run.revenue[~treated], equal_var=False).pvalue
        assert not 0.025 < p_conv < 0.1 and not 0.025 < p_rev < 0.1, name
        if name == "clear_win":
            assert p_conv < 0.025
        # Nothing pasted from the public run fits: another sample size, a conversion lift more
        # than 4 tolerances (5e-5 each) away, a p-value outside twice the p-value rule.
        ratio = cohen_h_size(generate.history(seed=seed).design) / cohen_h_size(public_design)
        assert not 1 / 1.06 < ratio < 1.06, name  # a pasted sample size is off by more than 2x3%
        assert abs(diff - public_diff) > 2e-4, name
        assert abs(np.log10(max(p_conv, 1e-6) / public_p)) > 0.4 or abs(p_conv - public_p) > 0.04, name
