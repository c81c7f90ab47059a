"""Checks of the statistics helpers against figures worked out by hand or published."""

import numpy as np
import pytest
from stats_tools import compare_proportions, sample_ratio, users_per_arm_proportions


def test_sample_size_matches_evan_millers_calculator():
    # Evan Miller's calculator: baseline 20%, MDE 5 points absolute (25% relative), 80% power,
    # 5% two-sided significance -> 1,030 per variation (1,031 here: 0.2 * 1.25 rounds up in floats).
    assert users_per_arm_proportions(0.20, 0.25, 0.05, 0.8, True) in (1030, 1031)


def test_equal_arms_show_no_lift():
    result = compare_proportions(100, 1000, 100, 1000)
    assert result["lift_abs"] == 0 and result["p_value"] == pytest.approx(1.0)
    assert result["ci_abs"][0] == pytest.approx(-result["ci_abs"][1])


def test_sample_ratio_mismatch_is_flagged_only_when_clear():
    even = {"control": 0.5, "treatment": 0.5}
    assert not sample_ratio(5000, 5050, even)["detected"]  # chi-square 0.25, p = 0.62
    assert sample_ratio(5000, 5400, even)["detected"]  # chi-square 15.4, p < 0.001
    # a planned 60/40 split of 10,000: 6,000 / 4,000 expected, 6,050 / 3,950 is chi-square 1.04
    assert not sample_ratio(6050, 3950, {"control": 0.6, "treatment": 0.4})["detected"]


def test_relative_interval_contains_the_lift():
    result = compare_proportions(500, 10_000, 560, 10_000)
    low, high = result["ci_rel"]
    assert low < result["lift_rel"] < high and np.isclose(result["lift_rel"], 0.12)
