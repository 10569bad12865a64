"""Tests of s2l_scan.functional.metrics: sklearn as oracle, properties, bootstrap and errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from s2l_scan.functional import metrics as M

FPR_TARGETS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)

# Scores on a coarse grid (k/4): many ties, and monotone maps (exp, affine) keep distinct values
# distinct in floating point, so invariance is an exact property rather than a rounding gamble.
grid_scores = st.lists(st.integers(-20, 20).map(lambda k: k / 4), min_size=1, max_size=40)
real_scores = st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
                       min_size=1, max_size=40)
any_scores = st.one_of(grid_scores, real_scores)
PROPERTY = settings(max_examples=100, deadline=None)


def _sklearn_inputs(member: Any, nonmember: Any) -> tuple[np.ndarray, np.ndarray]:
    member, nonmember = np.asarray(member, float), np.asarray(nonmember, float)
    labels = np.r_[np.ones(member.size), np.zeros(nonmember.size)]
    return labels, np.r_[member, nonmember]


def _sklearn_tpr_at_fpr(member: Any, nonmember: Any, target: float) -> float:
    fpr, tpr, _ = skm.roc_curve(*_sklearn_inputs(member, nonmember), drop_intermediate=False)
    return float(tpr[fpr <= target].max())


def _normal_pair(seed: int, n: int, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, n)


# Table of score sets for the oracle comparisons: continuous, heavily tied, degenerate, unequal.
def _case(name: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(sum(map(ord, name)))  # a fixed seed per case
    cases: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "normal": (rng.normal(0.5, 1, 200), rng.normal(0, 1, 150)),
        "tied-integers": (rng.integers(0, 5, 120).astype(float),
                          rng.integers(0, 4, 90).astype(float)),
        "all-equal": (np.full(7, 3.0), np.full(5, 3.0)),
        "separated": (np.arange(10, 20.0), np.arange(0, 10.0)),
        "reversed": (np.arange(0, 10.0), np.arange(10, 20.0)),
        "single-each": (np.array([1.0]), np.array([1.0])),
        "unequal-sizes": (rng.normal(0, 1, 3), rng.normal(0, 1, 400)),
    }
    return cases[name]


CASES = ("normal", "tied-integers", "all-equal", "separated", "reversed", "single-each",
         "unequal-sizes")


# ---------------------------------------------------------------------------------------------
# hand-computed values


@pytest.mark.parametrize(("member", "nonmember", "expected"), [
    ([1.0], [0.0], 1.0),
    ([0.0], [1.0], 0.0),
    ([1.0], [1.0], 0.5),
    ([2.0, 1.0], [1.0, 0.0], 0.875),  # pairs: 2>1, 2>0, 1=1 (½), 1>0 → 3.5/4
    ([3.0, 2.0, 1.0], [2.5, 0.0], 4 / 6),
])
def test_auc_hand_values(member: list[float], nonmember: list[float], expected: float) -> None:
    assert M.auc(member, nonmember) == pytest.approx(expected, abs=1e-15)


# members [3, 2, 1], nonmembers [2.5, 0]: the ROC points by threshold are
# inf (0, 0), 3 (0, 1/3), 2.5 (1/2, 1/3), 2 (1/2, 2/3), 1 (1/2, 1), 0 (1, 1)  as (fpr, tpr).
HAND_MEMBER, HAND_NONMEMBER = [3.0, 2.0, 1.0], [2.5, 0.0]


def test_roc_curve_hand_values() -> None:
    fpr, tpr, thresholds = M.roc_curve(HAND_MEMBER, HAND_NONMEMBER)
    np.testing.assert_array_equal(thresholds, [np.inf, 3, 2.5, 2, 1, 0])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1])


@pytest.mark.parametrize(("target", "tpr", "threshold"), [
    (0.0, 1 / 3, 3.0),
    (0.49, 1 / 3, 3.0),
    (0.5, 1.0, 1.0),
    (1.0, 1.0, 1.0),  # TPR 1 is already reached at FPR ½: the higher threshold is chosen
])
def test_operating_point_hand_values(target: float, tpr: float, threshold: float) -> None:
    assert M.tpr_at_fpr(HAND_MEMBER, HAND_NONMEMBER, target) == pytest.approx(tpr)
    assert M.threshold_at_fpr(HAND_MEMBER, HAND_NONMEMBER, target) == threshold


def test_operating_point_only_origin() -> None:
    # every nonmember outranks every member: no point besides the origin has FPR 0
    assert M.tpr_at_fpr([0.0, 1.0], [2.0, 3.0], 0.0) == 0.0
    assert M.threshold_at_fpr([0.0, 1.0], [2.0, 3.0], 0.0) == math.inf
    assert M.tpr_fpr_at_threshold([0.0, 1.0], [2.0, 3.0], math.inf) == (0.0, 0.0)


def test_best_balanced_accuracy_hand_values() -> None:
    assert M.best_balanced_accuracy(HAND_MEMBER, HAND_NONMEMBER) == (0.75, 1.0)
    # an uninformative scorer still gets ½ (predict nobody a member)
    assert M.best_balanced_accuracy([1.0, 1.0], [1.0]) == (0.5, math.inf)


@pytest.mark.parametrize(("threshold", "expected"), [
    (math.inf, (0.0, 0.0)), (3.0, (1 / 3, 0.0)), (2.5, (1 / 3, 0.5)), (2.0, (2 / 3, 0.5)),
    (1.5, (2 / 3, 0.5)), (0.0, (1.0, 1.0)), (-math.inf, (1.0, 1.0)),
])
def test_tpr_fpr_at_threshold_hand_values(threshold: float,
                                          expected: tuple[float, float]) -> None:
    assert M.tpr_fpr_at_threshold(HAND_MEMBER, HAND_NONMEMBER, threshold) == pytest.approx(
        expected)


# ---------------------------------------------------------------------------------------------
# sklearn as oracle


@pytest.mark.parametrize("name", CASES)
def test_auc_matches_sklearn(name: str) -> None:
    member, nonmember = _case(name)
    expected = skm.roc_auc_score(*_sklearn_inputs(member, nonmember))
    assert M.auc(member, nonmember) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_roc_curve_matches_sklearn(name: str) -> None:
    member, nonmember = _case(name)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(*_sklearn_inputs(member, nonmember),
                                           drop_intermediate=False)
    fpr, tpr, thresholds = M.roc_curve(member, nonmember)
    np.testing.assert_array_equal(thresholds, sk_thr)
    np.testing.assert_allclose(fpr, sk_fpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tpr, sk_tpr, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("target", FPR_TARGETS)
def test_tpr_at_fpr_matches_sklearn(name: str, target: float) -> None:
    member, nonmember = _case(name)
    assert M.tpr_at_fpr(member, nonmember, target) == _sklearn_tpr_at_fpr(member, nonmember,
                                                                           target)


@PROPERTY
@given(any_scores, any_scores, st.sampled_from(FPR_TARGETS))
def test_property_matches_sklearn(member: list[float], nonmember: list[float],
                                  target: float) -> None:
    labels, scores = _sklearn_inputs(member, nonmember)
    assert M.auc(member, nonmember) == pytest.approx(skm.roc_auc_score(labels, scores),
                                                     abs=1e-12)
    assert M.tpr_at_fpr(member, nonmember, target) == _sklearn_tpr_at_fpr(member, nonmember,
                                                                           target)


# ---------------------------------------------------------------------------------------------
# properties


@PROPERTY
@given(any_scores, any_scores)
def test_property_sign_swap(member: list[float], nonmember: list[float]) -> None:
    flipped = M.auc(-np.asarray(member), -np.asarray(nonmember))
    assert flipped == pytest.approx(1.0 - M.auc(member, nonmember), abs=1e-12)
    # swapping the roles of the classes is the same reflection
    assert M.auc(nonmember, member) == pytest.approx(flipped, abs=1e-12)


@PROPERTY
@given(grid_scores, grid_scores, st.sampled_from(FPR_TARGETS))
def test_property_monotone_invariance(member: list[float], nonmember: list[float],
                                      target: float) -> None:
    m, n = np.asarray(member), np.asarray(nonmember)
    transforms: list[Callable[[np.ndarray], np.ndarray]] = [np.exp, lambda x: 3.0 * x - 7.0]
    for transform in transforms:
        assert M.auc(transform(m), transform(n)) == M.auc(m, n)
        assert M.tpr_at_fpr(transform(m), transform(n), target) == M.tpr_at_fpr(m, n, target)
        assert M.best_balanced_accuracy(transform(m), transform(n))[0] == \
            M.best_balanced_accuracy(m, n)[0]


@PROPERTY
@given(any_scores, any_scores)
def test_property_bounds_and_curve_shape(member: list[float], nonmember: list[float]) -> None:
    assert 0.0 <= M.auc(member, nonmember) <= 1.0
    fpr, tpr, thresholds = M.roc_curve(member, nonmember)
    assert (fpr[0], tpr[0], thresholds[0]) == (0.0, 0.0, math.inf)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.all(np.diff(thresholds) < 0)
    assert thresholds.size == 1 + np.unique(np.r_[member, nonmember]).size
    asr, _ = M.best_balanced_accuracy(member, nonmember)
    assert 0.5 <= asr <= 1.0


@PROPERTY
@given(any_scores, any_scores, st.floats(0.0, 1.0))
def test_property_threshold_realises_tpr_at_fpr(member: list[float], nonmember: list[float],
                                                target: float) -> None:
    threshold = M.threshold_at_fpr(member, nonmember, target)
    tpr, fpr = M.tpr_fpr_at_threshold(member, nonmember, threshold)
    assert tpr == M.tpr_at_fpr(member, nonmember, target)
    assert fpr <= target


@PROPERTY
@given(any_scores, any_scores)
def test_property_best_balanced_accuracy_is_brute_force_max(member: list[float],
                                                            nonmember: list[float]) -> None:
    candidates = [math.inf, *np.unique(np.r_[member, nonmember])]
    brute = max((t + 1 - f) / 2 for t, f in
                (M.tpr_fpr_at_threshold(member, nonmember, c) for c in candidates))
    asr, threshold = M.best_balanced_accuracy(member, nonmember)
    assert asr == pytest.approx(brute, abs=1e-12)
    tpr, fpr = M.tpr_fpr_at_threshold(member, nonmember, threshold)
    assert (tpr + 1 - fpr) / 2 == pytest.approx(asr, abs=1e-12)


@pytest.mark.parametrize("distribution", ["normal", "exponential", "integers-with-ties"])
def test_shuffled_labels_average_half(distribution: str) -> None:
    # Under H0 (same distribution, random labels) AUC has mean ½ and, without ties, variance
    # (m + n + 1) / (12 m n); ties only shrink it, so 4 standard errors of the mean over S seeds
    # bound a correct implementation (a fixed-seed false failure is ~6e-5 likely).
    m = n = 64
    seeds = 1000
    draw: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
        "normal": lambda rng: rng.normal(0, 1, m + n),
        "exponential": lambda rng: rng.exponential(1.0, m + n),
        "integers-with-ties": lambda rng: rng.integers(0, 5, m + n).astype(float),
    }
    aucs = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        pool = rng.permutation(draw[distribution](rng))
        aucs.append(M.auc(pool[:m], pool[m:]))
    sd = math.sqrt((m + n + 1) / (12 * m * n))
    assert abs(np.mean(aucs) - 0.5) < 4 * sd / math.sqrt(seeds)
    if distribution != "integers-with-ties":
        # the spread matches theory too (an AUC stuck near ½ would pass the mean check);
        # the sample SD's relative standard error is ~1/sqrt(2(S-1)) ≈ 2.2%, so 4 SE ≈ 9%
        assert np.std(aucs, ddof=1) == pytest.approx(sd, rel=4 / math.sqrt(2 * (seeds - 1)))


# ---------------------------------------------------------------------------------------------
# bootstrap


def _tpr_at_10pct(member: np.ndarray, nonmember: np.ndarray) -> float:
    return M.tpr_at_fpr(member, nonmember, 0.1)


def _asr(member: np.ndarray, nonmember: np.ndarray) -> float:
    return M.best_balanced_accuracy(member, nonmember)[0]


STATISTICS = [M.auc, _tpr_at_10pct, _asr]


@pytest.mark.parametrize("statistic", STATISTICS)
def test_bootstrap_ci_contains_point_estimate(statistic: M.Statistic) -> None:
    member, nonmember = _normal_pair(seed=3, n=300)
    low, high = M.bootstrap_ci(member, nonmember, statistic, n_resamples=500)
    assert low < statistic(member, nonmember) < high


def test_bootstrap_ci_width_matches_delong_variance() -> None:
    # DeLong's variance is the nonparametric variance of the AUC estimator that the stratified
    # bootstrap estimates; a 95% percentile interval should be ≈ 2·1.96·SD wide.
    member, nonmember = _normal_pair(seed=5, n=256)
    member_place = np.array([np.mean(x > nonmember) + 0.5 * np.mean(x == nonmember)
                             for x in member])
    nonmember_place = np.array([np.mean(member > y) + 0.5 * np.mean(member == y)
                                for y in nonmember])
    sd = math.sqrt(member_place.var(ddof=1) / member.size
                   + nonmember_place.var(ddof=1) / nonmember.size)
    low, high = M.bootstrap_ci(member, nonmember, M.auc, n_resamples=4000)
    assert (high - low) / (2 * 1.959964 * sd) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("statistic", STATISTICS)
def test_bootstrap_ci_deterministic_given_seed(statistic: M.Statistic) -> None:
    member, nonmember = _normal_pair(seed=4, n=100)
    first = M.bootstrap_ci(member, nonmember, statistic, n_resamples=200, seed=11)
    assert M.bootstrap_ci(member, nonmember, statistic, n_resamples=200, seed=11) == first
    assert M.bootstrap_ci(member, nonmember, statistic, n_resamples=200, seed=12) != first


@pytest.mark.parametrize("statistic", STATISTICS)
def test_bootstrap_ci_narrows_with_more_samples(statistic: M.Statistic) -> None:
    # the width shrinks like 1/sqrt(n): 10× the samples should give ≈3.2× narrower
    widths = []
    for n in (100, 1000):
        low, high = M.bootstrap_ci(*_normal_pair(seed=6, n=n), statistic, n_resamples=300)
        widths.append(high - low)
    assert widths[0] / widths[1] > 2.0


def test_bootstrap_ci_widens_with_confidence() -> None:
    member, nonmember = _normal_pair(seed=7, n=200)
    low80, high80 = M.bootstrap_ci(member, nonmember, M.auc, confidence=0.8)
    low99, high99 = M.bootstrap_ci(member, nonmember, M.auc, confidence=0.99)
    assert low99 < low80 < high80 < high99


@pytest.mark.parametrize(("n_member", "n_nonmember"), [(256, 256), (3, 500), (1, 1), (40, 7)])
def test_vectorised_auc_bootstrap_equals_generic_loop(n_member: int, n_nonmember: int) -> None:
    rng = np.random.default_rng(n_member)
    member = rng.integers(0, 6, n_member).astype(float)  # ties exercise the ½ counting
    nonmember = rng.integers(0, 5, n_nonmember).astype(float)
    fast = M.bootstrap_ci(member, nonmember, M.auc, n_resamples=300, seed=2)
    slow = M.bootstrap_ci(member, nonmember, lambda a, b: M.auc(a, b), n_resamples=300, seed=2)
    assert fast == slow


def test_paired_bootstrap_identical_is_exactly_zero() -> None:
    member, nonmember = _normal_pair(seed=8, n=120)
    for statistic in STATISTICS:
        assert M.paired_bootstrap_ci(member, nonmember, member, nonmember, statistic,
                                     n_resamples=200) == (0.0, 0.0)


def test_paired_bootstrap_detects_improvement() -> None:
    base_member, nonmember = _normal_pair(seed=9, n=200, shift=0.3)
    probe_member = base_member + 0.5  # the probe lifts every member: AUC can only grow
    low, high = M.paired_bootstrap_ci(base_member, nonmember, probe_member, nonmember, M.auc)
    point = M.auc(probe_member, nonmember) - M.auc(base_member, nonmember)
    assert 0.0 < low < point < high


def test_paired_bootstrap_tighter_than_independent() -> None:
    # a probe that is the base plus small per-sample noise: pairing cancels the shared part
    rng = np.random.default_rng(10)
    base_member, base_nonmember = _normal_pair(seed=10, n=200, shift=0.5)
    probe_member = base_member + rng.normal(0, 0.1, 200)
    probe_nonmember = base_nonmember + rng.normal(0, 0.1, 200)
    low, high = M.paired_bootstrap_ci(base_member, base_nonmember, probe_member,
                                      probe_nonmember, M.auc)
    base_low, base_high = M.bootstrap_ci(base_member, base_nonmember, M.auc)
    assert high - low < (base_high - base_low) / 3


@pytest.mark.parametrize(("n_member", "n_nonmember"), [(64, 64), (5, 90)])
def test_paired_vectorised_equals_generic_loop(n_member: int, n_nonmember: int) -> None:
    rng = np.random.default_rng(n_nonmember)
    base = rng.normal(0, 1, n_member), rng.normal(0, 1, n_nonmember)
    probe = base[0] + rng.normal(0.3, 1, n_member), base[1] + rng.normal(0, 1, n_nonmember)
    fast = M.paired_bootstrap_ci(*base, *probe, M.auc, n_resamples=200, seed=3)
    slow = M.paired_bootstrap_ci(*base, *probe, lambda a, b: M.auc(a, b), n_resamples=200,
                                 seed=3)
    assert fast == slow


# ---------------------------------------------------------------------------------------------
# calibration split


@pytest.mark.parametrize("n", [2, 3, 10, 11, 257])
def test_calibration_split_partitions(n: int) -> None:
    calibration, test = M.calibration_split(n, seed=1)
    assert (calibration.size, test.size) == (n // 2, n - n // 2)
    assert np.intersect1d(calibration, test).size == 0
    np.testing.assert_array_equal(np.sort(np.r_[calibration, test]), np.arange(n))


def test_calibration_split_seeded() -> None:
    first = M.calibration_split(100, seed=5)
    again = M.calibration_split(100, seed=5)
    other = M.calibration_split(100, seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


def test_calibrated_threshold_transfers_to_test_half() -> None:
    # choose at 10% FPR on one half, measure on the other: FPR stays near the target
    member, nonmember = _normal_pair(seed=12, n=4000)
    cal_m, test_m = M.calibration_split(member.size, seed=0)
    cal_n, test_n = M.calibration_split(nonmember.size, seed=1)
    threshold = M.threshold_at_fpr(member[cal_m], nonmember[cal_n], 0.1)
    tpr, fpr = M.tpr_fpr_at_threshold(member[test_m], nonmember[test_n], threshold)
    # binomial SE of an FPR of 0.1 over 2000 nonmembers is ≈0.0067
    assert fpr == pytest.approx(0.1, abs=4 * 0.0067)
    assert tpr == pytest.approx(M.tpr_at_fpr(member[cal_m], nonmember[cal_n], 0.1), abs=0.05)


# ---------------------------------------------------------------------------------------------
# errors


def _calls(member: Any, nonmember: Any) -> list[Callable[[], object]]:
    """Every public metric applied to one pair of score arrays."""
    return [
        lambda: M.auc(member, nonmember),
        lambda: M.roc_curve(member, nonmember),
        lambda: M.tpr_at_fpr(member, nonmember, 0.1),
        lambda: M.threshold_at_fpr(member, nonmember, 0.1),
        lambda: M.tpr_fpr_at_threshold(member, nonmember, 0.0),
        lambda: M.best_balanced_accuracy(member, nonmember),
        lambda: M.bootstrap_ci(member, nonmember, M.auc, n_resamples=10),
        lambda: M.paired_bootstrap_ci(member, nonmember, member, nonmember, M.auc,
                                      n_resamples=10),
    ]


BAD_SCORES = {
    "empty-member": ([], [1.0, 2.0]),
    "empty-nonmember": ([1.0, 2.0], []),
    "nan-member": ([1.0, math.nan], [1.0]),
    "nan-nonmember": ([1.0], [math.nan]),
    "inf-member": ([math.inf], [1.0]),
    "two-dimensional": ([[1.0, 2.0]], [1.0]),
    "not-numbers": (["a"], [1.0]),
}


@pytest.mark.parametrize("case", list(BAD_SCORES))
@pytest.mark.parametrize("index", range(8))
def test_bad_scores_raise_usage_error(case: str, index: int) -> None:
    call = _calls(*BAD_SCORES[case])[index]
    with pytest.raises(ValueError, match="member"):
        call()


@pytest.mark.parametrize("target", [-0.1, 1.5, math.nan, "high", None])
@pytest.mark.parametrize("function", [M.tpr_at_fpr, M.threshold_at_fpr])
def test_bad_target_raises_usage_error(function: Callable[..., float], target: Any) -> None:
    with pytest.raises(ValueError, match="target_fpr"):
        function([1.0, 2.0], [0.0], target)


def test_nan_threshold_raises_usage_error() -> None:
    with pytest.raises(ValueError, match="threshold"):
        M.tpr_fpr_at_threshold([1.0], [0.0], math.nan)


@pytest.mark.parametrize(("options", "match"), [
    ({"n_resamples": 0}, "n_resamples"),
    ({"n_resamples": 2.5}, "n_resamples"),
    ({"confidence": 0.0}, "confidence"),
    ({"confidence": 1.0}, "confidence"),
    ({"confidence": math.nan}, "confidence"),
    ({"statistic": "auc"}, "statistic"),
    ({"statistic": lambda a, b: math.nan}, "NaN"),
])
def test_bad_bootstrap_options_raise_usage_error(options: dict[str, Any], match: str) -> None:
    kwargs = {"statistic": M.auc, "n_resamples": 10, **options}
    with pytest.raises(ValueError, match=match):
        M.bootstrap_ci([1.0, 2.0], [0.0, 1.0], **kwargs)
    with pytest.raises(ValueError, match=match):
        M.paired_bootstrap_ci([1.0, 2.0], [0.0, 1.0], [1.0, 2.0], [0.0, 1.0], **kwargs)


@pytest.mark.parametrize("probe", [([1.0], [0.0, 1.0]), ([1.0, 2.0], [0.0])])
def test_paired_length_mismatch_raises_usage_error(probe: tuple[list[float], list[float]],
                                                   ) -> None:
    with pytest.raises(ValueError, match="aligned"):
        M.paired_bootstrap_ci([1.0, 2.0], [0.0, 1.0], *probe, M.auc)


@pytest.mark.parametrize("n", [0, 1, -3, 2.5, "10"])
def test_bad_calibration_split_raises_usage_error(n: Any) -> None:
    with pytest.raises(ValueError, match="n"):
        M.calibration_split(n)
