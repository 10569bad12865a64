"""Tests of s2l_scan.functional.family: the per-domain family permutation test, its oracles
(crossfit_pvalue, brute-force relabelling, a loop minP), bounds and the low-FPR count."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2l_scan.functional import family as F
from s2l_scan.functional import metrics as M

PROPERTY = settings(max_examples=40, deadline=None)


def _rows(rng: np.random.Generator, n_m: int, n_n: int, k: int, shift: float = 0.0):
    return ({str(c): rng.normal(shift, 1, n_m) for c in range(k)},
            {str(c): rng.normal(0, 1, n_n) for c in range(k)})


@pytest.mark.parametrize("n_m,n_n,k", [(4, 5, 1), (7, 7, 3), (16, 17, 2), (48, 48, 3)])
def test_single_row_p_equals_crossfit_pvalue(n_m: int, n_n: int, k: int) -> None:
    rng = np.random.default_rng(n_m + k)
    members, nonmembers = _rows(rng, n_m, n_n, k, 0.4)
    perms = F.LabelPermutations.build(n_m, n_n, seed=3, permutation_seed=11, n_permutations=499)
    statistic = F.crossfit_auc_statistic(members, nonmembers, perms)
    assert statistic[0] == M.crossfit_auc(members, nonmembers, 3).auc
    assert F.family_test(statistic[:, None]).domain_p == M.crossfit_pvalue(
        members, nonmembers, 3, permutation_seed=11, n_permutations=499)


def test_every_labelling_equals_crossfit_auc_of_the_relabelled_data() -> None:
    # brute force: rebuild the member / non-member arrays each labelling implies and run the
    # public crossfit_auc on them (same split seed, so the same halves)
    rng = np.random.default_rng(5)
    members, nonmembers = _rows(rng, 5, 4, 2)
    perms = F.LabelPermutations.build(5, 4, seed=2, permutation_seed=1, n_permutations=60)
    statistic = F.crossfit_auc_statistic(members, nonmembers, perms)
    keys = list(members)
    for b in range(perms.size):
        new_m = {key: np.empty(5) for key in keys}
        new_n = {key: np.empty(4) for key in keys}
        for h, (m_idx, n_idx) in enumerate(perms.halves):
            label = perms.labels[h][b].astype(bool)
            for key in keys:
                pooled = np.concatenate([members[key][m_idx], nonmembers[key][n_idx]])
                new_m[key][m_idx] = pooled[label]
                new_n[key][n_idx] = pooled[~label]
        assert statistic[b] == pytest.approx(M.crossfit_auc(new_m, new_n, 2).auc, abs=1e-12)


def test_permutations_cover_every_labelling_at_tiny_n() -> None:
    # 4 + 4: halves of 2 + 2, C(4, 2)² = 36 labellings; 2,000 draws reach all of them and the
    # exact enumeration p and the Monte Carlo p agree to sampling error
    perms = F.LabelPermutations.build(4, 4, n_permutations=1999)
    seen = {(tuple(perms.labels[0][b]), tuple(perms.labels[1][b])) for b in range(perms.size)}
    assert len(seen) == 36
    members, nonmembers = np.r_[3.0, 2.5, 0.2, 4.0], np.r_[0.0, 1.0, -1.0, 0.5]
    statistic = F.crossfit_auc_statistic(members, nonmembers, perms)
    distinct = {}
    for b in range(perms.size):
        distinct[(tuple(perms.labels[0][b]), tuple(perms.labels[1][b]))] = statistic[b]
    exact = np.mean([v >= statistic[0] - 1e-12 for v in distinct.values()])
    assert F.family_test(statistic[:, None]).domain_p == pytest.approx(exact, abs=0.03)


def _loop_minp(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    size, width = stats.shape
    p = np.array([[np.mean(stats[:, r] >= stats[b, r] - 1e-12) for r in range(width)]
                  for b in range(size)])
    raw = p[0]
    single = np.array([np.mean(p.min(axis=1) <= raw[r]) for r in range(width)])
    order = sorted(range(width), key=lambda r: raw[r])
    step = np.zeros(width)
    running = 0.0
    for j, r in enumerate(order):
        rest = order[j:]
        running = max(running, float(np.mean(p[:, rest].min(axis=1) <= raw[r])))
        step[r] = running
    return raw, single, step


@PROPERTY
@given(st.integers(0, 10_000), st.integers(1, 5), st.booleans())
def test_family_test_matches_a_loop_minp(seed: int, width: int, discrete: bool) -> None:
    rng = np.random.default_rng(seed)
    stats = rng.normal(size=(40, width))
    if discrete:
        stats = np.round(stats)  # many ties
    result = F.family_test(stats)
    raw, single, step = _loop_minp(stats)
    np.testing.assert_allclose(result.raw, raw)
    np.testing.assert_allclose(result.single_step, single)
    np.testing.assert_allclose(result.step_down, step)
    assert np.all(result.raw <= result.step_down + 1e-15)
    assert np.all(result.step_down <= result.single_step + 1e-15)
    assert result.domain_p == pytest.approx(min(single))
    assert result.domain_p >= 1 / 40


@PROPERTY
@given(st.integers(0, 10_000))
def test_statistic_invariant_under_monotone_transforms(seed: int) -> None:
    rng = np.random.default_rng(seed)
    members, nonmembers = _rows(rng, 6, 7, 2, 0.5)
    perms = F.LabelPermutations.build(6, 7, seed=seed, n_permutations=50)
    before = F.crossfit_auc_statistic(members, nonmembers, perms)
    after = F.crossfit_auc_statistic({k: np.exp(v) * 3 + 1 for k, v in members.items()},
                                     {k: np.exp(v) * 3 + 1 for k, v in nonmembers.items()},
                                     perms)
    np.testing.assert_allclose(before, after, atol=1e-12)


def test_null_pvalues_are_valid_over_seeds() -> None:
    # 300 null domains at 8/8 with 3 rows: the family's rejection rate at 0.05 / 0.2 stays
    # within binomial error of the nominal (exactness: the observed labelling is one of B + 1)
    rng = np.random.default_rng(0)
    domain = []
    for seed in range(300):
        perms = F.LabelPermutations.build(8, 8, seed=seed, permutation_seed=seed,
                                          n_permutations=199)
        rows = [_rows(rng, 8, 8, 1) for _ in range(3)]
        domain.append(F.family_test(F.crossfit_auc_statistics(rows, perms)).domain_p)
    values = np.array(domain)
    assert np.mean(values <= 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 300)
    assert np.mean(values <= 0.2) <= 0.2 + 3 * np.sqrt(0.2 * 0.8 / 300)
    assert np.mean(values <= 0.5) >= 0.5 - 3 * np.sqrt(0.25 / 300)  # not conservative to 0


def test_attainable_pvalue_is_reached_and_bounds_any_data() -> None:
    # 7/7: smallest_pvalue's formula says 0.00071; the machinery reaches about 0.002
    floor = F.attainable_pvalue(7, 7, n_permutations=9999)
    assert floor > 2 * M.smallest_pvalue(7, 7, 9999)
    rng = np.random.default_rng(1)
    perms = F.LabelPermutations.build(7, 7, n_permutations=9999)
    for _ in range(5):
        rows = [_rows(rng, 7, 7, 2, 3.0) for _ in range(3)]
        assert F.family_test(F.crossfit_auc_statistics(rows, perms)).domain_p >= floor


def test_attainable_pvalue_at_3_per_class_cannot_fail_under_holm_of_five() -> None:
    assert F.attainable_pvalue(3, 3) * 5 > 0.05
    assert F.attainable_pvalue(16, 16) * 5 < 0.05


def test_wrong_sizes_are_refused() -> None:
    perms = F.LabelPermutations.build(5, 5, n_permutations=9)
    with pytest.raises(M.MetricInputError, match="built for 5 / 5"):
        F.crossfit_auc_statistic(np.zeros(6), np.zeros(5), perms)
    with pytest.raises(M.MetricInputError, match="shape"):
        F.family_test(np.zeros((1, 3)))
    with pytest.raises(M.MetricInputError, match="non-finite"):
        F.family_test(np.array([[1.0], [np.nan]]))


def test_top_members_counts_memorized_few_and_names_them() -> None:
    rng = np.random.default_rng(4)
    members, nonmembers = rng.normal(size=48), rng.normal(size=48)
    memorized = {2, 9, 30, 31, 40, 47, 5, 17}
    members[sorted(memorized)] = 10.0 + np.arange(8)
    perms = F.LabelPermutations.build(48, 48, n_permutations=999)
    top = F.top_members_statistic(members, nonmembers, perms)
    # a null member beats the calibration half's top non-member with chance ~1/25
    assert len(set(top.flagged) & memorized) >= 6 and len(set(top.flagged) - memorized) <= 2
    assert top.statistic[0] >= 4
    top_p = F.family_test(top.statistic[:, None]).domain_p
    assert top_p <= 0.01
    # the AUC alone barely moves with 8 of 48 memorized
    auc_p = F.family_test(F.crossfit_auc_statistic(members, nonmembers, perms)[:, None]).domain_p
    assert auc_p > top_p


def test_top_members_brute_force_on_one_labelling() -> None:
    rng = np.random.default_rng(8)
    members, nonmembers = rng.normal(0.5, 1, 9), rng.normal(size=8)
    perms = F.LabelPermutations.build(9, 8, seed=4, n_permutations=30)
    top = F.top_members_statistic(members, nonmembers, perms)
    for b in range(perms.size):
        total = 0
        for cal, test in ((0, 1), (1, 0)):
            pooled = [np.concatenate([members[h[0]], nonmembers[h[1]]]) for h in perms.halves]
            lab = [perms.labels[h][b].astype(bool) for h in (0, 1)]
            cal_auc = M.auc(pooled[cal][lab[cal]], pooled[cal][~lab[cal]])
            auc_sign = 1 if cal_auc >= 0.5 else -1

            def cal_count(s: int) -> float:
                cut = (s * pooled[cal][~lab[cal]]).max()  # noqa: B023
                return float(np.sum(s * pooled[cal][lab[cal]] > cut)) + 0.5 * (s == auc_sign)  # noqa: B023

            sign = max((1, -1), key=cal_count)
            threshold = (sign * pooled[cal][~lab[cal]]).max()
            above = sign * pooled[test] > threshold
            total += int(np.sum(above & lab[test])) - int(np.sum(above & ~lab[test]))
        assert top.statistic[b] == total


@PROPERTY
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_adding_checks_never_turns_fail_into_pass(seed: int, extra: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 20))
    perms = F.LabelPermutations.build(n, n, seed=seed, n_permutations=199)
    rows = [_rows(rng, n, n, 1, float(rng.uniform(0, 3))) for _ in range(1 + extra)]

    def outcome(chosen: list) -> str:
        stats = F.crossfit_auc_statistics(chosen, perms)
        fam = F.family_test(stats)
        bounds = [F.auc_upper_bound(m, nn, seed=seed) for m, nn in chosen]
        return F.decide_domain(list(stats[0]), bounds, list(fam.step_down), 0.6, 0.05)

    if outcome(rows[:1]) == "failed":
        assert outcome(rows) != "passed"


# ---------------------------------------------------------------------------------------------
# bounds


def test_no_bound_below_eight_per_class_and_bound_never_below_point() -> None:
    rng = np.random.default_rng(2)
    assert F.auc_upper_bound(rng.normal(size=5), rng.normal(size=5)) is None
    assert F.auc_interval(np.r_[3.0, 4, 5], np.r_[0.0, 1, 2]) is None  # was [1.00, 1.00]
    for seed in range(5):
        members, nonmembers = rng.normal(0.3, 1, 12), rng.normal(size=12)
        bound = F.auc_upper_bound(members, nonmembers, seed=seed, n_resamples=199)
        assert bound is not None and bound >= M.crossfit_auc(members, nonmembers, seed).auc


def test_display_interval_is_never_zero_width_at_perfect_separation() -> None:
    low, high = F.auc_interval(np.arange(8.0) + 10, np.arange(8.0))  # type: ignore[misc]
    assert high == 1.0 and low < 0.8
    boot = M.crossfit_auc_ci(np.arange(8.0) + 10, np.arange(8.0))
    assert boot == (1.0, 1.0)  # what the report printed before


def test_upper_bound_false_pass_rate_at_the_threshold() -> None:
    # 150 draws at true AUC 0.6, 16/16: P(bound ≤ 0.6) is the false-PASS rate (docs: 0.5 %
    # over 1,000 draws); allow 5 % + 2 binomial SE
    from statistics import NormalDist
    shift = np.sqrt(2) * NormalDist().inv_cdf(0.6)
    rng = np.random.default_rng(11)
    passes = 0
    for seed in range(150):
        bound = F.auc_upper_bound(rng.normal(shift, 1, 16), rng.normal(size=16), seed=seed,
                                  bootstrap_seed=seed, n_resamples=199)
        passes += bound is not None and bound <= 0.6
    assert passes / 150 <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 150)


def test_decide_domain_outcomes() -> None:
    assert F.decide_domain([0.7, 0.5], [0.9, 0.58], [0.01, 0.5], 0.6, 0.05) == "failed"
    assert F.decide_domain([0.55, 0.5], [0.59, 0.58], [0.2, 0.5], 0.6, 0.05) == "passed"
    assert F.decide_domain([0.55], [None], [0.2], 0.6, 0.05) == "inconclusive"
    assert F.decide_domain([0.7], [0.9], [0.2], 0.6, 0.05) == "inconclusive"
    with pytest.raises(M.MetricInputError):
        F.decide_domain([], [], [], 0.6, 0.05)


# ---------------------------------------------------------------------------------------------
# amplification


def _amplified(rng: np.random.Generator, n: int, lift: float) -> tuple:
    zm, zn = rng.normal(size=n), rng.normal(size=n)
    probe_m = 0.6 * zm + 0.8 * rng.normal(size=n) + 0.35 + lift
    probe_n = 0.6 * zn + 0.8 * rng.normal(size=n)
    return probe_m, probe_n, zm + 0.35, zn


def test_amplification_delta_matches_crossfit_delta_and_bounds() -> None:
    rng = np.random.default_rng(0)
    pair = _amplified(rng, 24, 0.5)
    result = F.amplification_test([pair], 0.05, seed=3, n_resamples=199)
    assert result.delta[0] == pytest.approx(M.crossfit_delta(*pair, seed=3).delta, abs=1e-12)
    assert result.upper[0] >= result.delta[0]
    assert 1 / 200 <= result.raw[0] <= 1 and result.adjusted[0] == result.raw[0]
    lower_margin = F.amplification_test([pair], -0.2, seed=3, n_resamples=199)
    assert lower_margin.raw[0] <= result.raw[0]


def test_amplification_identical_probe_cannot_fail() -> None:
    rng = np.random.default_rng(1)
    m, n = rng.normal(size=20), rng.normal(size=20)
    result = F.amplification_test([(m, n, m, n)], 0.05, n_resamples=199)
    assert result.delta[0] == 0.0 and result.domain_p == 1.0


def test_amplification_romano_wolf_matches_a_loop() -> None:
    rng = np.random.default_rng(2)
    pairs = [_amplified(rng, 16, lift) for lift in (0.0, 0.8, 2.0)]
    # rows must score the same samples: reuse the first row's released scores
    pairs = [(p[0], p[1], pairs[0][2], pairs[0][3]) for p in pairs]
    result = F.amplification_test(pairs, 0.05, seed=1, bootstrap_seed=4, n_resamples=299)
    observed, resampled = F._bootstrap_deltas(F._pair_matrices(pairs), 1, 4, 299)
    centred, t = observed - resampled, observed - 0.05
    order = list(np.argsort(-t, kind="stable"))
    running, expected = 0.0, np.zeros(3)
    for j, r in enumerate(order):
        rest = order[j:]
        p = (1 + np.sum(centred[:, rest].max(axis=1) >= t[r] - 1e-12)) / 300
        running = max(running, p)
        expected[r] = running
    np.testing.assert_allclose(result.adjusted, expected)
    assert np.all(result.adjusted >= result.raw)


def test_amplification_refuses_misaligned_rows() -> None:
    rng = np.random.default_rng(3)
    with pytest.raises(M.MetricInputError, match="same samples"):
        F.amplification_test([(rng.normal(size=8), rng.normal(size=8), rng.normal(size=9),
                               rng.normal(size=8))])


def test_family_floor_grows_with_the_rows() -> None:
    # one perfectly separated row among 27 null rows: the domain p cannot go below ~27/(B + 1)
    rng = np.random.default_rng(6)
    perms = F.LabelPermutations.build(16, 16, n_permutations=999)
    rows = [_rows(rng, 16, 16, 1) for _ in range(27)]
    table = F.crossfit_auc_statistics(rows, perms)
    perfect = F.crossfit_auc_statistic(np.arange(16.0) + 16, np.arange(16.0), perms)
    single = F.family_test(perfect[:, None]).domain_p
    floor = F.family_attainable_pvalue(table, perfect)
    assert single == 1 / 1000 and floor > 10 * single
    assert F.family_attainable_pvalue(table[:, :1], perfect) == single


def test_amplification_gives_no_bound_below_eight_per_class() -> None:
    rng = np.random.default_rng(4)
    pair = tuple(rng.normal(size=6) for _ in range(4))
    assert np.isnan(F.amplification_test([pair], n_resamples=99).upper[0])
    assert F.delta_upper_bound(*pair) is None
    big = tuple(rng.normal(size=12) for _ in range(4))
    bound = F.delta_upper_bound(*big, n_resamples=199)
    assert bound is not None and bound >= M.crossfit_delta(*big).delta
