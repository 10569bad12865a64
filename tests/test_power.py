"""Tests of s2l_scan.functional.power: the calibrated AUC's modelled law against the real
permutation machinery, scipy as the normal-quantile oracle, and the power functions' shape."""

from __future__ import annotations

import numpy as np
import pytest

from s2l_scan.functional import family as F
from s2l_scan.functional import power as P


def _null_statistic(n: int) -> np.ndarray:
    # with one candidate and no ties the permutation law depends on the ranks only: exact
    perms = F.LabelPermutations.build(n, n, n_permutations=19_999)
    return F.crossfit_auc_statistic(np.arange(n) * 2.0 + 1, np.arange(n) * 2.0, perms)


@pytest.mark.parametrize("n", [16, 48])
def test_null_law_matches_the_permutation_distribution(n: int) -> None:
    real = _null_statistic(n)
    values, weights = P.calibrated_auc_law(0.5, n, n)
    mean = float(np.sum(values * weights))
    sd = float(np.sqrt(np.sum(weights * (values - mean) ** 2)))
    assert mean == pytest.approx(0.5, abs=1e-9)
    assert sd == pytest.approx(real.std(), rel=0.03)
    for level in (0.05, 0.01):
        assert P.critical_auc(n, n, level) == pytest.approx(
            float(np.quantile(real, 1 - level)), abs=0.012)


def test_normal_quantile_against_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for p in (1e-6, 0.01, 0.05, 0.5, 0.8, 0.95, 0.999):
        assert F._normal_quantile(p) == pytest.approx(stats.norm.ppf(p), abs=1e-9)


def test_hanley_mcneil_at_the_null_is_the_mann_whitney_variance() -> None:
    for n1, n0 in ((8, 8), (24, 30)):
        assert P._hanley_mcneil(0.5, n1, n0) == pytest.approx(
            (n1 + n0 + 1) / (12 * n1 * n0), rel=0.05)


def test_minimum_detectable_auc_shape() -> None:
    values = [P.minimum_detectable_auc(n, n, 0.05, 5) for n in (16, 32, 64, 128)]
    assert all(v is not None for v in values)
    assert values == sorted(values, reverse=True)
    one = P.minimum_detectable_auc(32, 32, 0.05, 1)
    assert one is not None and one < values[1]
    assert P.minimum_detectable_auc(3, 3, 0.05, 5) is None  # the permutation floor blocks it


def test_images_to_decide_brackets_the_mde() -> None:
    n = P.images_to_decide(0.72, 16, 16, 0.6, 0.05, 5)
    assert n is not None
    at, below = P.minimum_detectable_auc(n, n, 0.05, 5), P.minimum_detectable_auc(n - 1, n - 1,
                                                                                 0.05, 5)
    assert at is not None and at <= 0.72 and (below is None or below > 0.72)
    assert P.images_to_decide(0.6, 16, 16, 0.6) is None
    assert P.images_to_decide(0.5, 16, 16, 0.6) == P.images_for_pass(0.6)


def test_images_for_pass_grows_as_the_margin_shrinks() -> None:
    assert P.images_for_pass(0.6) == 144
    assert P.images_for_pass(0.55) > 4 * P.images_for_pass(0.6) - 4
    with pytest.raises(ValueError, match="max_auc"):
        P.images_for_pass(0.5)


@pytest.mark.slow
def test_images_for_pass_is_the_simulated_80_percent_point() -> None:
    n = P.images_for_pass(0.6)
    rng = np.random.default_rng(0)
    passes = [F.auc_upper_bound(rng.normal(size=n), rng.normal(size=n), seed=s,
                                bootstrap_seed=s) <= 0.6 for s in range(200)]
    assert 0.7 <= np.mean(passes) <= 0.9
