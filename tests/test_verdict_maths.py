"""Tests of the verdict maths (docs/verdict-maths.md): cross-fitted AUC, its bootstrap CI and
paired Δ, estimable TPRs with Clopper–Pearson CIs. Oracles: plain loops over the public point
metrics, scipy's exact binomial CI, null-distribution theory."""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from s2l_scan.errors import UsageError
from s2l_scan.functional import metrics as M

PROPERTY = settings(max_examples=60, deadline=None)
grid_scores = st.lists(st.integers(-20, 20).map(lambda k: k / 4), min_size=2, max_size=30)


def _null(seed: int, n: int = 48, candidates: int = 1) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    if candidates == 1:
        return rng.normal(size=n), rng.normal(size=n)
    return ({f"t{k}": rng.normal(size=n) for k in range(candidates)},
            {f"t{k}": rng.normal(size=n) for k in range(candidates)})


# ---------------------------------------------------------------------------------------------
# halves


@pytest.mark.parametrize(("n_m", "n_n"), [(2, 2), (48, 48), (7, 30), (31, 5)])
def test_crossfit_halves_partition_each_class(n_m: int, n_n: int) -> None:
    (am, an), (bm, bn) = M.crossfit_halves(n_m, n_n, seed=3)
    assert (am.size, bm.size, an.size, bn.size) == (n_m // 2, n_m - n_m // 2,
                                                    n_n // 2, n_n - n_n // 2)
    np.testing.assert_array_equal(np.sort(np.r_[am, bm]), np.arange(n_m))
    np.testing.assert_array_equal(np.sort(np.r_[an, bn]), np.arange(n_n))
    assert all(np.all(np.diff(part) > 0) for part in (am, an, bm, bn))


def test_crossfit_halves_seeded() -> None:
    first, again, other = (M.crossfit_halves(40, 40, seed=s) for s in (1, 1, 2))
    assert all(np.array_equal(a, b) for ha, hb in zip(first, again, strict=True)
               for a, b in zip(ha, hb, strict=True))
    assert not np.array_equal(first[0][0], other[0][0])


# ---------------------------------------------------------------------------------------------
# calibrated AUC: null, signal, candidates


@pytest.mark.parametrize("candidates", [1, 3])
def test_calibrated_auc_centres_on_half_under_null(candidates: int) -> None:
    # Each test-half AUC is measured on samples the choice never saw, so its mean is ½ exactly;
    # max(AUC, 1 − AUC) is not: with SD σ = sqrt((m + n + 1)/(12 m n)) it centres on
    # ½ + σ·sqrt(2/π) ≈ 0.547 at 48/48. 4 standard errors of the mean bound both.
    draws = 1500
    calibrated, folded = [], []
    for seed in range(draws):
        fit = M.crossfit_auc(*_null(seed, candidates=candidates), seed=seed)
        calibrated.append(fit.auc)
        folded.append(max(fit.auc_raw, 1 - fit.auc_raw))
    sigma = math.sqrt(97 / (12 * 48 * 48))
    assert abs(np.mean(calibrated) - 0.5) < 4 * np.std(calibrated) / math.sqrt(draws)
    expected_folded = 0.5 + sigma * math.sqrt(2 / math.pi)
    assert expected_folded == pytest.approx(0.547, abs=0.001)
    folded_se = sigma * math.sqrt(1 - 2 / math.pi) / math.sqrt(draws)
    assert np.mean(folded) == pytest.approx(expected_folded, abs=4 * folded_se)


def test_strong_signal_calibrated_matches_raw_and_learns_a_flipped_sign() -> None:
    rng = np.random.default_rng(0)
    member, nonmember = rng.normal(2.0, 1, 48), rng.normal(0, 1, 48)
    fit = M.crossfit_auc(member, nonmember)
    assert fit.auc_raw > 0.9 and fit.auc == pytest.approx(fit.auc_raw, abs=0.03)
    assert not fit.unstable and all(c.direction == 1 for c in fit.choices)
    flipped = M.crossfit_auc(-member, -nonmember)
    assert flipped.auc_raw < 0.1 and flipped.auc == pytest.approx(fit.auc, abs=1e-12)
    assert all(c.direction == -1 for c in flipped.choices)


def test_candidate_is_chosen_on_calibration_half() -> None:
    rng = np.random.default_rng(1)
    members = {"t100": rng.normal(size=60), "t90": rng.normal(-2.0, 1, 60)}
    nonmembers = {"t100": rng.normal(size=60), "t90": rng.normal(size=60)}
    fit = M.crossfit_auc(members, nonmembers)
    assert fit.default == "t100" and abs(fit.auc_raw - 0.5) < 0.15
    assert [(c.candidate, c.direction) for c in fit.choices] == [("t90", -1), ("t90", -1)]
    assert fit.auc > 0.85
    assert M.crossfit_auc(members, nonmembers, default="t90").auc_raw < 0.15


def test_halves_disagree_under_null_sometimes() -> None:
    unstable = [M.crossfit_auc(*_null(seed), seed=seed).unstable for seed in range(200)]
    # independent halves pick the same sign half of the time
    assert 0.35 < np.mean(unstable) < 0.65


def test_doctest_example() -> None:
    fit = M.crossfit_auc(np.r_[0.0, 1, 2, 3], np.r_[4.0, 5, 6, 7])
    assert (fit.auc_raw, fit.auc) == (0.0, 1.0)


@PROPERTY
@given(grid_scores, grid_scores, st.integers(0, 5))
def test_property_monotone_invariant_and_bounded(member: list[float], nonmember: list[float],
                                                 seed: int) -> None:
    m, n = np.asarray(member), np.asarray(nonmember)
    fit = M.crossfit_auc(m, n, seed=seed)
    assert 0.0 <= fit.auc <= 1.0 and 0.0 <= fit.auc_raw <= 1.0
    for transform in (np.exp, lambda x: 3.0 * x - 7.0):
        assert M.crossfit_auc(transform(m), transform(n), seed=seed) == fit


@PROPERTY
@given(grid_scores, grid_scores, st.integers(0, 5))
def test_property_reflection_keeps_calibrated_auc(member: list[float], nonmember: list[float],
                                                  seed: int) -> None:
    # Negating every score turns each half's AUC a into 1 − a on the same split: the learned
    # direction flips with it and the calibrated AUC stays (unless a calibration half is exactly
    # ½, where the default sign is kept by convention).
    m, n = np.asarray(member), np.asarray(nonmember)
    fit = M.crossfit_auc(m, n, seed=seed)
    assume(all(c.calibration_auc != 0.5 for c in fit.choices))
    reflected = M.crossfit_auc(-m, -n, seed=seed)
    assert reflected.auc == pytest.approx(fit.auc, abs=1e-12)
    assert [c.direction for c in reflected.choices] == [-c.direction for c in fit.choices]


@PROPERTY
@given(st.integers(0, 1000), st.floats(2.5, 4.0))
def test_property_strong_signal_is_found_in_either_labelling(seed: int, shift: float) -> None:
    # swapping the member / non-member labels: the direction is learned, so still found
    # (shift ≥ 2.5: true AUC ≥ 0.96, and a 20/20 half has AUC SD ≈ 0.03)
    rng = np.random.default_rng(seed)
    member, nonmember = rng.normal(shift, 1, 40), rng.normal(0, 1, 40)
    fit, swapped = (M.crossfit_auc(member, nonmember, seed=seed),
                    M.crossfit_auc(nonmember, member, seed=seed))
    assert fit.auc > 0.8 and swapped.auc > 0.8 and swapped.auc_raw < 0.2
    assert [c.direction for c in fit.choices] == [1, 1]
    assert [c.direction for c in swapped.choices] == [-1, -1]


# ---------------------------------------------------------------------------------------------
# bootstrap of the whole procedure


def _loop_crossfit(members: dict[str, np.ndarray], nonmembers: dict[str, np.ndarray],
                   halves: Any) -> float:
    """The cross-fit written out with the public point AUC (the oracle)."""
    tested = []
    for cal, test in ((halves[0], halves[1]), (halves[1], halves[0])):
        best_key, best_effect, best_dir = "", -1.0, 1
        for key in members:
            a = M.auc(members[key][cal[0]], nonmembers[key][cal[1]])
            if max(a, 1 - a) > best_effect:
                best_key, best_effect, best_dir = key, max(a, 1 - a), 1 if a >= 0.5 else -1
        tested.append(M.auc(best_dir * members[best_key][test[0]],
                            best_dir * nonmembers[best_key][test[1]]))
    return (tested[0] + tested[1]) / 2


def test_vectorised_bootstrap_equals_loop() -> None:
    members, nonmembers = _null(4, n=30, candidates=3)
    members["t1"] = members["t1"] + 0.8
    halves = M.crossfit_halves(30, 30, seed=2)
    fast = M._crossfit_bootstrap(np.stack(list(members.values())),
                                 np.stack(list(nonmembers.values())), halves,
                                 np.random.default_rng(9), 50)
    rng = np.random.default_rng(9)
    draws = [rng.integers(0, p.size, size=(50, p.size)) for half in halves for p in half]
    for r in range(50):
        resampled = tuple((half[0][draws[2 * h][r]], half[1][draws[2 * h + 1][r]])
                          for h, half in enumerate(halves))
        assert fast[r] == pytest.approx(_loop_crossfit(members, nonmembers, resampled),
                                        abs=1e-12)


def test_crossfit_ci_contains_point_and_is_seeded() -> None:
    rng = np.random.default_rng(5)
    member, nonmember = rng.normal(1.0, 1, 96), rng.normal(0, 1, 96)
    low, high = M.crossfit_auc_ci(member, nonmember, seed=1)
    assert low < M.crossfit_auc(member, nonmember, seed=1).auc < high
    assert M.crossfit_auc_ci(member, nonmember, seed=1) == (low, high)
    assert M.crossfit_auc_ci(member, nonmember, seed=1, bootstrap_seed=1) != (low, high)


@pytest.mark.parametrize(("shift", "band"), [(1.0, (0.88, 0.99)), (0.0, (0.93, 1.0))])
def test_crossfit_ci_coverage(shift: float, band: tuple[float, float]) -> None:
    # shift 1 → true AUC Φ(1/√2) = 0.760 in the (always learned) + direction; binomial SE of a
    # 95% rate over 200 draws is 1.5%, and percentile bootstraps under-cover a little at small
    # n. Under the null the direction is re-learned in every resample, whose AUC then swings
    # between a and 1 − a: the interval is conservative there (measured 99.8%), never narrow.
    true_auc = 0.5 * (1 + math.erf(shift / 2))
    draws, covered = 200, 0
    for seed in range(draws):
        rng = np.random.default_rng(1000 + seed)
        low, high = M.crossfit_auc_ci(rng.normal(shift, 1, 48), rng.normal(0, 1, 48),
                                      seed=seed, bootstrap_seed=seed, n_resamples=500)
        covered += low <= true_auc <= high
    assert band[0] <= covered / draws <= band[1]


def test_crossfit_ci_speed() -> None:
    members, nonmembers = _null(6, n=96, candidates=3)
    M.crossfit_auc_ci(members, nonmembers, n_resamples=10)  # warm-up
    start = time.perf_counter()
    M.crossfit_auc_ci(members, nonmembers, n_resamples=1000)
    assert time.perf_counter() - start < 1.0


def test_delta_identical_is_zero_and_flipped_probe_is_no_amplification() -> None:
    rng = np.random.default_rng(7)
    member, nonmember = rng.normal(1.0, 1, 64), rng.normal(0, 1, 64)
    same = M.crossfit_delta(member, nonmember, member, nonmember, n_resamples=200)
    assert same.delta == 0.0 and same.ci == (0.0, 0.0)
    # a probe that separates as well with the sign flipped has Δ = 0: its direction is learned
    flipped = M.crossfit_delta(-member, -nonmember, member, nonmember, n_resamples=200)
    assert flipped.delta == pytest.approx(0.0, abs=1e-12)
    assert flipped.ci == pytest.approx((0.0, 0.0), abs=1e-12)


def test_delta_detects_amplification() -> None:
    rng = np.random.default_rng(8)
    released_m, nonmember = rng.normal(0.3, 1, 96), rng.normal(0, 1, 96)
    probe_m = released_m + 1.0
    result = M.crossfit_delta(probe_m, nonmember, released_m, nonmember)
    assert 0.0 < result.ci[0] < result.delta < result.ci[1]
    assert result.delta == pytest.approx(result.probe.auc - result.released.auc)


# ---------------------------------------------------------------------------------------------
# estimable TPRs


@pytest.mark.parametrize(("alpha", "n_cal", "n_test", "expected"), [
    (0.01, 100, 100, True), (0.01, 99, 100, False), (0.01, 100, 99, False),
    (0.001, 1000, 1000, True), (0.001, 999, 5000, False), (0.1, 10, 10, True),
    (0.3, 4, 4, True), (0.3, 3, 4, False), (1 / 24, 24, 24, True), (0.04, 24, 24, False),
])
def test_estimable_fpr_table(alpha: float, n_cal: int, n_test: int, expected: bool) -> None:
    assert M.estimable_fpr(alpha, n_cal, n_test) is expected


@pytest.mark.parametrize(("n_cal", "n_test"), [(24, 24), (24, 25), (100, 7), (1, 1)])
def test_lowest_estimable_fpr_is_the_boundary(n_cal: int, n_test: int) -> None:
    lowest = M.lowest_estimable_fpr(n_cal, n_test)
    assert lowest == 1 / min(n_cal, n_test)
    assert M.estimable_fpr(lowest, n_cal, n_test)
    assert not M.estimable_fpr(lowest * 0.99, n_cal, n_test)


def test_small_sets_say_why_and_fall_back() -> None:
    rng = np.random.default_rng(11)
    member, nonmember = rng.normal(1.0, 1, 48), rng.normal(0, 1, 48)
    at_1, at_01 = (M.tpr_at_fpr_crossfit(member, nonmember, a) for a in (0.01, 0.001))
    for estimate in (at_1, at_01):
        assert not estimate.estimable and estimate.tpr is None and estimate.tpr_ci is None
        assert estimate.reason is not None and "24" in estimate.reason
        assert estimate.fallback is not None and estimate.fallback.estimable
        assert estimate.fallback.alpha == pytest.approx(1 / 24)
    assert at_1.fallback == at_01.fallback


def _loop_tpr(member: np.ndarray, nonmember: np.ndarray, alpha: float, seed: int,
              ) -> tuple[int, int]:
    """TP/FP counts written out with the public point metrics (the oracle)."""
    halves = M.crossfit_halves(member.size, nonmember.size, seed)
    tp = fp = 0
    for cal, test in ((halves[0], halves[1]), (halves[1], halves[0])):
        d = 1 if M.auc(member[cal[0]], nonmember[cal[1]]) >= 0.5 else -1
        threshold = M.threshold_at_fpr(d * member[cal[0]], d * nonmember[cal[1]], alpha)
        tpr, fpr = M.tpr_fpr_at_threshold(d * member[test[0]], d * nonmember[test[1]],
                                          threshold)
        tp, fp = tp + round(tpr * test[0].size), fp + round(fpr * test[1].size)
    return tp, fp


@pytest.mark.parametrize(("shift", "alpha", "n"), [(2.0, 0.01, 600), (-2.0, 0.01, 600),
                                                   (0.0, 0.05, 300), (1.0, 0.1, 41)])
def test_tpr_counts_match_loop(shift: float, alpha: float, n: int) -> None:
    rng = np.random.default_rng(12)
    member, nonmember = rng.normal(shift, 1, n), rng.normal(0, 1, n + 3)
    estimate = M.tpr_at_fpr_crossfit(member, nonmember, alpha, seed=4)
    assert estimate.estimable
    assert (estimate.true_positives, estimate.false_positives) == _loop_tpr(
        member, nonmember, alpha, 4)
    assert estimate.tpr == estimate.true_positives / n  # type: ignore[operator]
    assert estimate.tpr_ci == M.clopper_pearson(estimate.true_positives, n)  # type: ignore[arg-type]


def test_tpr_achieved_fpr_near_target_and_sign_learned() -> None:
    rng = np.random.default_rng(13)
    member, nonmember = rng.normal(-2.5, 1, 4000), rng.normal(0, 1, 4000)
    estimate = M.tpr_at_fpr_crossfit(member, nonmember, 0.01)
    assert estimate.tpr is not None and estimate.tpr > 0.3  # lower scores are members here
    # the threshold overshoots α by at most 1/(n_cal + 1) in expectation; binomial SE ≈ 0.0016
    assert estimate.achieved_fpr == pytest.approx(0.01, abs=4 * 0.0016 + 1 / 2001)
    assert estimate.fpr_ci is not None and estimate.fpr_ci[0] <= 0.0105


# ---------------------------------------------------------------------------------------------
# Clopper–Pearson


def _oracle_interval(k: int, n: int) -> tuple[tuple[float, float], float]:
    """(interval, tolerance) from scipy, else from brute-force Beta quantiles (CP bounds are
    the Beta(k, n−k+1) and Beta(k+1, n−k) quantiles), which integrate to ~1e-6."""
    try:
        from scipy.stats import binomtest
    except ImportError:
        return _beta_bisection(k, n), 1e-5
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return (float(ci.low), float(ci.high)), 1e-9


def _beta_cdf(x: float, a: float, b: float) -> float:
    grid = np.linspace(0.0, x, 200_001)[1:-1]
    log_density = ((a - 1) * np.log(grid) + (b - 1) * np.log1p(-grid)
                   + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b))
    return float(np.trapezoid(np.exp(log_density), grid))


def _beta_bisection(k: int, n: int) -> tuple[float, float]:
    def quantile(q: float, a: float, b: float) -> float:
        low, high = 0.0, 1.0
        for _ in range(40):
            mid = (low + high) / 2
            low, high = (mid, high) if _beta_cdf(mid, a, b) < q else (low, mid)
        return (low + high) / 2
    return (0.0 if k == 0 else quantile(0.025, k, n - k + 1),
            1.0 if k == n else quantile(0.975, k + 1, n - k))


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (5, 96),
                                      (13, 48), (500, 1000), (2, 2000), (1999, 2000)])
def test_clopper_pearson_matches_oracle(k: int, n: int) -> None:
    expected, tolerance = _oracle_interval(k, n)
    assert M.clopper_pearson(k, n) == pytest.approx(expected, abs=tolerance)


@PROPERTY
@given(st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_property_clopper_pearson_matches_oracle(case: tuple[int, int]) -> None:
    expected, tolerance = _oracle_interval(*case)
    assert M.clopper_pearson(*case) == pytest.approx(expected, abs=tolerance)


@pytest.mark.parametrize("n", [24, 48, 96])
def test_clopper_pearson_exact_coverage_at_least_nominal(n: int) -> None:
    # Exact coverage Σ_k P(k) 1[p ∈ CI(k)], from math.comb: never below 95% (CP is conservative)
    intervals = [M.clopper_pearson(k, n) for k in range(n + 1)]
    for p in np.linspace(0.01, 0.99, 41):
        coverage = sum(math.comb(n, k) * p**k * (1 - p)**(n - k)
                       for k, (low, high) in enumerate(intervals) if low <= p <= high)
        assert coverage >= 0.95 - 1e-9


# ---------------------------------------------------------------------------------------------
# errors: each a ValueError (pure functions; the boundary raises the usage error)


BAD_CALLS = {
    "empty-dict": lambda: M.crossfit_auc({}, {}),
    "keys-differ": lambda: M.crossfit_auc({"a": [1.0, 2.0]}, {"b": [1.0, 2.0]}),
    "sizes-differ": lambda: M.crossfit_auc({"a": [1.0, 2.0], "b": [1.0, 2.0, 3.0]},
                                           {"a": [1.0, 2.0], "b": [1.0, 2.0]}),
    "one-member": lambda: M.crossfit_auc([1.0], [1.0, 2.0]),
    "nan": lambda: M.crossfit_auc([1.0, math.nan], [1.0, 2.0]),
    "unknown-default": lambda: M.crossfit_auc([1.0, 2.0], [1.0, 2.0], default="t90"),
    "halves-too-small": lambda: M.crossfit_halves(1, 10),
    "halves-not-int": lambda: M.crossfit_halves(4.5, 10),  # type: ignore[arg-type]
    "ci-resamples": lambda: M.crossfit_auc_ci([1.0, 2.0], [1.0, 2.0], n_resamples=0),
    "delta-unaligned": lambda: M.crossfit_delta([1.0, 2.0], [1.0, 2.0], [1.0, 2.0, 3.0],
                                                [1.0, 2.0]),
    "alpha-zero": lambda: M.tpr_at_fpr_crossfit([1.0, 2.0], [1.0, 2.0], 0.0),
    "alpha-nan": lambda: M.estimable_fpr(math.nan, 10, 10),
    "alpha-big": lambda: M.estimable_fpr(1.5, 10, 10),
    "negative-count": lambda: M.estimable_fpr(0.1, -1, 10),
    "no-nonmembers": lambda: M.lowest_estimable_fpr(0, 10),
    "k-above-n": lambda: M.clopper_pearson(5, 4),
    "zero-trials": lambda: M.clopper_pearson(0, 0),
    "bad-confidence": lambda: M.clopper_pearson(1, 4, confidence=1.0),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_input_raises_a_value_error_with_a_message(case: str) -> None:
    with pytest.raises(ValueError) as info:
        BAD_CALLS[case]()
    assert not isinstance(info.value, UsageError) and str(info.value)


# ---------------------------------------------------------------------------------------------
# the smallest attainable p-value, and rows that can never fail


@pytest.mark.parametrize(("n", "labelings"), [(4, 6 * 6), (6, 20 * 20), (8, 70 * 70)])
def test_smallest_pvalue_counts_the_halves_labelings(n: int, labelings: int) -> None:
    # halves of n/2 + n/2 samples each: C(n, n/2) labelings per half (a brute-force count)
    half = n // 2
    brute = sum(1 for _ in itertools.combinations(range(2 * half), half)) ** 2
    assert brute == labelings
    assert M.smallest_pvalue(n, n, 10**9) == pytest.approx(1 / labelings)
    assert M.smallest_pvalue(48, 48, 999) == pytest.approx(1 / 1000)


def test_perfect_separation_reaches_the_smallest_pvalue_at_tiny_n() -> None:
    members, nonmembers = np.arange(6.0) + 10, np.arange(6.0)
    p = M.crossfit_pvalue(members, nonmembers, n_permutations=20_000)
    assert M.smallest_pvalue(6, 6, 20_000) <= p < 3 * M.smallest_pvalue(6, 6, 20_000)


def test_a_row_too_small_to_ever_fail_is_marked_underpowered() -> None:
    from report_factory import make_row

    from s2l_scan.config import make_config
    from s2l_scan.functional.family import attainable_pvalue
    from s2l_scan.gate import adjust_family

    # one hypothesis per domain: what counts is the domains' number, and the floor the real
    # machinery reaches at 6/6 (mirrored labellings and learned directions included)
    floor = attainable_pvalue(6, 6)
    assert 30 * floor > 0.04 > 3 * floor  # the membership family's level is 0.8 × 0.05
    tiny = [make_row(domain=f"d{i}", n=6) for i in range(30)]
    adjust_family(tiny, make_config())  # 30 domains: even a perfect row could not fail
    assert all(row.underpowered for row in tiny)
    adjust_family(tiny[:3], make_config())  # 3 domains: one can still fail
    assert not any(row.underpowered for row in tiny[:3])
    large = [make_row(domain=f"d{i}", n=48) for i in range(30)]
    adjust_family(large, make_config())  # 30 domains × the 48/48 floor ≤ 0.04
    assert not any(row.underpowered for row in large)
    adjust_family(tiny, make_config(family_alpha=1.0))  # no significance asked: nothing to miss
    assert not any(row.underpowered for row in tiny)


def _permuted_half_aucs_oracle(member: Any, nonmember: Any, half: Any,
                               rng: np.random.Generator, count: int) -> Any:
    """The permutation test's half AUCs before issue 18: a fresh label matrix shuffled out of
    place, then each permutation's and candidate's Mann–Whitney statistic by a loop."""
    n1, n0 = half[0].size, half[1].size
    pooled = np.concatenate([member[:, half[0]], nonmember[:, half[1]]], axis=1)
    labels = np.zeros((count, n1 + n0))
    labels[:, :n1] = 1.0
    labels = rng.permuted(labels, axis=1)
    out = np.empty((count, pooled.shape[0]))
    for i in range(count):
        for k in range(pooled.shape[0]):
            out[i, k] = M.auc(pooled[k][labels[i] == 1], pooled[k][labels[i] == 0])
    return out


@PROPERTY
@given(st.integers(0, 10_000), st.integers(2, 40), st.integers(2, 40), st.integers(1, 3),
       st.booleans())
def test_permuted_half_aucs_equal_the_loop_and_leave_the_generator_alike(
        seed: int, n_m: int, n_n: int, candidates: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    def draw(size: tuple[int, int]) -> Any:
        return rng.integers(0, 4, size).astype(float) if ties else rng.normal(size=size)

    member, nonmember = draw((candidates, n_m)), draw((candidates, n_n))
    half = M.crossfit_halves(n_m, n_n, seed)[seed % 2]
    ours, theirs, old = (np.random.default_rng(seed) for _ in range(3))
    got = M._permuted_half_aucs(member, nonmember, half, ours, 50)
    want = _permuted_half_aucs_oracle(member, nonmember, half, theirs, 50)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # the same bits as the code before issue 18 (out-of-place shuffle, same product)
    n1, n0 = half[0].size, half[1].size
    labels = np.zeros((50, n1 + n0))
    labels[:, :n1] = 1.0
    ranks = M._average_ranks(np.concatenate([member[:, half[0]], nonmember[:, half[1]]], 1))
    before = (old.permuted(labels, axis=1) @ ranks.T - n1 * (n1 + 1) / 2.0) / (n1 * n0)
    assert np.array_equal(got, before)
    assert ours.integers(1 << 62) == theirs.integers(1 << 62)  # the next check draws alike


def test_permutation_pvalues_are_the_same_bits_with_any_blas_thread_count() -> None:
    from threadpoolctl import threadpool_limits

    members, nonmembers = _null(7, n=96, candidates=3)
    with threadpool_limits(limits=1, user_api="blas"):
        one = M.crossfit_pvalue(members, nonmembers, 3, n_permutations=999)
    with threadpool_limits(limits=2, user_api="blas"):
        two = M.crossfit_pvalue(members, nonmembers, 3, n_permutations=999)
    assert one == two
