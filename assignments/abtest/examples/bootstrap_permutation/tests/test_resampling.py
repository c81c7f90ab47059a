import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from resampling import bootstrap_lifts, bootstrap_means, percentile_ci, permutation_p_values  # noqa: E402


def test_bootstrap_spread_matches_the_standard_error():
    rng = np.random.default_rng(1)
    values = rng.normal(10, 2, (4000, 1))
    means = bootstrap_means(values, rng, n_boot=1000)
    assert means[:, 0].std() == pytest.approx(2 / np.sqrt(4000), rel=0.1)  # sigma / sqrt(n)


def test_percentile_ci_of_a_known_sample():
    assert percentile_ci(np.arange(1001.0)) == pytest.approx([25.0, 975.0])


def test_lifts_of_identical_arms_are_zero():
    rng = np.random.default_rng(2)
    arm = rng.binomial(1, 0.1, (3000, 1)).astype(float)
    (result,) = bootstrap_lifts(arm, arm.copy(), rng, n_boot=500)
    assert result["lift_abs"] == 0 and result["lift_rel"] == 0
    assert result["ci_abs"][0] < 0 < result["ci_abs"][1]


def test_permutation_p_value_is_small_for_a_big_difference_and_never_zero():
    rng = np.random.default_rng(3)
    control, treatment = rng.normal(0, 1, (500, 2)), rng.normal(0.5, 1, (500, 2))
    assert permutation_p_values(control, treatment, rng, n_perm=200) == [1 / 201, 1 / 201]
    assert permutation_p_values(control, control.copy(), rng, n_perm=200) == [1.0, 1.0]
