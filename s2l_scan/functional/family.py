"""One membership hypothesis per privacy domain, tested with shared label permutations
(Westfall–Young minP), one-sided upper bounds for PASS, the amplification margin test and the
"memorized few" statistic (docs/verdict-maths.md, "The verdict as evidence").

Interface for the gate, per privacy domain d (every row of d scores the SAME images in the
SAME order: the released attacks, their candidates, the ``+base`` rows, each probe copy's
re-attack):

1. ``perms = LabelPermutations.build(n_members, n_nonmembers, seed=split_seed,
   permutation_seed=..., n_permutations=config.permutations)`` — once per domain.
2. ``aucs = crossfit_auc_statistics([(row.members, row.nonmembers) for row in rows], perms)``
   — (B + 1, R); column r, row 0 is row r's calibrated AUC (== ``crossfit_auc(...).auc``).
3. ``top = top_members_statistic(members, nonmembers, perms)`` for the released attack(s)
   whose low-FPR tail matters; ``top.statistic`` is one more column.
4. ``fam = family_test(np.column_stack([aucs, top.statistic]))`` — ``fam.domain_p`` is H0_d's
   p-value; ``fam.step_down[r]`` row r's adjusted p within the domain.
5. Holm across domains (and "pooled" when there are ≥ 2 domains) on the ``domain_p`` values
   (:func:`s2l_scan.functional.metrics.holm`); a row's final p is
   ``max(fam.step_down[r], holm_d)`` (closed testing: a row is rejected only inside a rejected
   domain).
6. ``attainable_pvalue(n_members, n_nonmembers, ...)`` × the Holm factor > alpha: the domain
   cannot FAIL — say so (inconclusive, never "passed"). With many rows use
   ``family_attainable_pvalue(table, perfect)`` (perfect = ``crossfit_auc_statistic`` of
   perfectly separated scores on ``perms``): the minP floor is about R / (B + 1), so 27 rows
   at B = 999 cannot reach 0.01 at all; keep B + 1 ≥ 20 · R · Holm factor / alpha.
7. ``auc_upper_bound(members, nonmembers, ...)`` per row: PASS needs every row's bound
   ≤ max_auc (intersection–union; None = no bound = cannot PASS). ``auc_interval`` for display.
8. ``amplification_test(pairs, margin=config.max_amplification)`` per domain: the secondary
   family; a probe row FAILS when ``adjusted[r] ≤ alpha`` (Holm over domains on ``domain_p``),
   PASSES when ``upper[r] ≤ margin``.
9. :func:`decide_domain` turns point estimates, upper bounds and adjusted p-values into
   failed / passed / inconclusive; a FAIL needs the point estimate past the threshold and a
   PASS every upper bound within it, so adding checks can never turn FAIL into PASS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from s2l_scan.functional.metrics import (
    Candidates,
    Half,
    MetricInputError,
    _average_ranks,
    _bootstrap_options,
    _candidates,
    _choose,
    _count,
    _crossfit_rows,
    _half_draws,
    _oriented,
    auc,
    crossfit_auc,
    crossfit_halves,
)

__all__ = [
    "AmplificationResult",
    "FamilyResult",
    "LabelPermutations",
    "TopMembers",
    "amplification_test",
    "attainable_pvalue",
    "auc_interval",
    "auc_upper_bound",
    "crossfit_auc_statistic",
    "crossfit_auc_statistics",
    "decide_domain",
    "delta_upper_bound",
    "family_attainable_pvalue",
    "family_test",
    "permutation_counts",
    "rank_auc_bounds",
    "top_members_statistic",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Outcome = Literal["failed", "passed", "inconclusive"]

# Ties between a permuted and the observed statistic count as "as extreme" (crossfit_pvalue's
# slack: AUCs are ratios of integers, equal ones can differ in the last bit).
_TIE = 1e-12


# ---------------------------------------------------------------------------------------------
# shared label permutations


@dataclass(frozen=True, eq=False)
class LabelPermutations:
    """The label permutations of one domain, shared by every statistic of it.

    ``labels[h]`` is (B + 1, n_h) over half h's samples in pooled order (its members, then its
    non-members, as :func:`crossfit_halves` lists them); 1.0 marks a member. Row 0 is the
    observed labelling; rows 1..B are drawn exactly as :func:`crossfit_pvalue` draws them
    (one generator seeded ``permutation_seed``, half A's B permutations, then half B's), so a
    single row's p-value equals crossfit_pvalue's.
    """

    n_members: int
    n_nonmembers: int
    seed: int
    permutation_seed: int
    n_permutations: int
    halves: tuple[Half, Half]
    labels: tuple[FloatArray, FloatArray]

    @classmethod
    def build(cls, n_members: int, n_nonmembers: int, *, seed: int = 0,
              permutation_seed: int = 0, n_permutations: int = 9999) -> LabelPermutations:
        count = _count(n_permutations, "n_permutations", 1)
        halves = crossfit_halves(n_members, n_nonmembers, seed)
        rng = np.random.default_rng(permutation_seed)
        labels = []
        for members, nonmembers in halves:
            n1, n0 = members.size, nonmembers.size
            drawn = np.zeros((count + 1, n1 + n0))
            drawn[:, :n1] = 1.0
            rng.permuted(drawn[1:], axis=1, out=drawn[1:])
            drawn.setflags(write=False)
            labels.append(drawn)
        return cls(int(n_members), int(n_nonmembers), seed, permutation_seed, count, halves,
                   (labels[0], labels[1]))

    @property
    def size(self) -> int:
        """B + 1: the observed labelling plus the permutations."""
        return self.n_permutations + 1

    def pooled(self, member: FloatArray, nonmember: FloatArray, half: int) -> FloatArray:
        """(K, n_h) scores of half ``half`` in the labels' pooled order."""
        members, nonmembers = self.halves[half]
        return np.concatenate([member[:, members], nonmember[:, nonmembers]], axis=1)


def _matrices(members: Candidates, nonmembers: Candidates, perms: LabelPermutations,
              ) -> tuple[FloatArray, FloatArray]:
    _, member, nonmember, _ = _candidates(members, nonmembers, None)
    if (member.shape[1], nonmember.shape[1]) != (perms.n_members, perms.n_nonmembers):
        raise MetricInputError(
            f"the scores hold {member.shape[1]} members / {nonmember.shape[1]} non-members but "
            f"the label permutations were built for {perms.n_members} / {perms.n_nonmembers}; "
            f"every statistic of a domain must score the domain's samples")
    return member, nonmember


def _half_auc_matrix(pooled: FloatArray, labels: FloatArray) -> FloatArray:
    """(B + 1, K) AUCs of every candidate under every labelling of one half (ranks once)."""
    n1 = int(labels[0].sum())
    n0 = labels.shape[1] - n1
    rank_sums: FloatArray = labels @ _average_ranks(pooled).T
    result: FloatArray = (rank_sums - n1 * (n1 + 1) / 2.0) / (n1 * n0)
    return result


def crossfit_auc_statistics(rows: Sequence[tuple[Candidates, Candidates]],
                            perms: LabelPermutations) -> FloatArray:
    """(B + 1, R): every row's calibrated AUC under every labelling, the attacker's choice of
    (candidate, direction) re-learned on each permuted calibration half (as crossfit_pvalue).

    All rows' candidates go through one matrix product per half.
    """
    if not rows:
        raise MetricInputError("rows is empty; give at least one (members, nonmembers) pair")
    matrices = [_matrices(m, n, perms) for m, n in rows]
    widths = np.cumsum([0] + [member.shape[0] for member, _ in matrices])
    on = [_half_auc_matrix(np.concatenate([perms.pooled(m, n, h) for m, n in matrices]),
                           perms.labels[h]) for h in (0, 1)]
    out = np.empty((perms.size, len(rows)))
    for r in range(len(rows)):
        on_a, on_b = (side[:, widths[r]:widths[r + 1]] for side in on)
        choice_a, direction_a = _choose(on_a)
        choice_b, direction_b = _choose(on_b)
        out[:, r] = (_oriented(on_b, choice_a, direction_a)
                     + _oriented(on_a, choice_b, direction_b)) / 2.0
    return out


def crossfit_auc_statistic(members: Candidates, nonmembers: Candidates,
                           perms: LabelPermutations) -> FloatArray:
    """(B + 1,) calibrated AUC under each labelling (index 0: observed)."""
    return crossfit_auc_statistics([(members, nonmembers)], perms)[:, 0]


# ---------------------------------------------------------------------------------------------
# Westfall–Young minP


@dataclass(frozen=True)
class FamilyResult:
    """A domain's family test. Arrays are per statistic (column)."""

    raw: FloatArray
    """Permutation p of each statistic alone: #{labellings ≥ observed} / (B + 1)."""
    single_step: FloatArray
    """minP single-step adjusted p: P(min_r p*_r ≤ p_r)."""
    step_down: FloatArray
    """minP step-down (Westfall–Young, monotone) adjusted p; ≤ single_step."""
    domain_p: float
    """H0_d's p-value: the family minimum (== min(step_down) == min(single_step))."""
    n_permutations: int


def permutation_counts(statistics: npt.ArrayLike) -> IntArray:
    """(B + 1, R) integer counts c[b, r] = #{b' : T[b', r] ≥ T[b, r]} (ties count): the
    permutation p of labelling b is c / (B + 1). Larger statistics are more extreme."""
    table = np.asarray(statistics, dtype=np.float64)
    if table.ndim == 1:
        table = table[:, None]
    if table.ndim != 2 or table.shape[0] < 2 or table.shape[1] < 1:
        raise MetricInputError(f"statistics must be (B + 1, R) with B ≥ 1 and R ≥ 1 (row 0 the "
                               f"observed labelling), got shape {table.shape}")
    if not np.all(np.isfinite(table)):
        raise MetricInputError("statistics holds non-finite values; every labelling needs a "
                               "number for every statistic")
    size = table.shape[0]
    ordered = np.sort(table, axis=0)
    counts = np.empty(table.shape, dtype=np.int64)
    for r in range(table.shape[1]):
        counts[:, r] = size - np.searchsorted(ordered[:, r], table[:, r] - _TIE, side="left")
    return counts


def family_test(statistics: npt.ArrayLike) -> FamilyResult:
    """Westfall–Young minP over the columns of ``statistics`` (B + 1, R), row 0 observed.

    Each column is first turned into permutation p-values, so statistics on any scale combine
    (AUC rows, counts, scores). The observed labelling is one of the B + 1, so every p is
    ≥ 1/(B + 1) and the test is exact at any n. Integer counts throughout: no rounding.
    """
    counts = permutation_counts(statistics)
    size, width = counts.shape
    observed = counts[0]
    smallest = counts.min(axis=1)
    single = np.array([np.count_nonzero(smallest <= c) for c in observed]) / size
    order = np.argsort(observed, kind="stable")
    suffix = counts[:, order[-1]].copy()
    step = np.empty(width)
    for j in range(width - 1, -1, -1):
        np.minimum(suffix, counts[:, order[j]], out=suffix)
        step[j] = np.count_nonzero(suffix <= observed[order[j]]) / size
    step = np.maximum.accumulate(step)
    step_down = np.empty(width)
    step_down[order] = step
    return FamilyResult(raw=observed / size, single_step=single, step_down=step_down,
                        domain_p=float(step_down.min()), n_permutations=size - 1)


def attainable_pvalue(n_members: int, n_nonmembers: int, *, seed: int = 0,
                      permutation_seed: int = 0, n_permutations: int = 9999) -> float:
    """The smallest domain p-value the real machinery gives at these sizes: the test run on
    perfectly separated scores (members above every non-member), so the labellings that tie
    with the observed one (mirrored halves whose learned direction flips, repeated draws) are
    counted as the test counts them. A domain's p can never be below it (see docs)."""
    perms = LabelPermutations.build(n_members, n_nonmembers, seed=seed,
                                    permutation_seed=permutation_seed,
                                    n_permutations=n_permutations)
    members = np.arange(n_members, dtype=np.float64) + n_nonmembers
    nonmembers = np.arange(n_nonmembers, dtype=np.float64)
    return family_test(crossfit_auc_statistic(members, nonmembers, perms)).domain_p


# ---------------------------------------------------------------------------------------------
# the memorized few


@dataclass(frozen=True)
class TopMembers:
    """Members scored above every calibration non-member, counted on held-out halves."""

    statistic: FloatArray
    """(B + 1,) per labelling: Σ over the two test halves of (#members − #non-members) above
    the threshold learned on the other half."""
    flagged: IntArray
    """Member indices (into the members array) above their threshold, observed labelling."""


def _oriented_options(pooled: FloatArray) -> FloatArray:
    """(2K, n): every candidate in both directions (row 2k: +, 2k + 1: −)."""
    return np.stack([pooled, -pooled], axis=1).reshape(-1, pooled.shape[1])


def _counts_above(scores: FloatArray, labels: FloatArray, threshold: FloatArray,
                  ) -> tuple[FloatArray, FloatArray]:
    """Per labelling: (#members, #non-members) of ``scores`` (B + 1, n) strictly above
    ``threshold`` (B + 1,)."""
    above = scores > threshold[:, None]
    return (above * labels).sum(axis=1), (above * (1.0 - labels)).sum(axis=1)


def _top_choice(options: FloatArray, labels: FloatArray, auc_option: IntArray) -> IntArray:
    """Per labelling, the option (candidate × direction) that puts the most calibration
    members above the calibration half's most member-like non-member; ties (most often
    0 = 0) go to the AUC's choice, then to the first option."""
    best = np.full(labels.shape[0], -1.0)
    chosen = auc_option.copy()
    for j in range(options.shape[0]):
        threshold = np.where(labels == 0.0, options[j], -np.inf).max(axis=1)
        count = ((options[j] > threshold[:, None]) * labels).sum(axis=1)
        count = count + 0.5 * (auc_option == j)
        better = count > best
        chosen[better], best[better] = j, count[better]
    return chosen


def top_members_statistic(members: Candidates, nonmembers: Candidates,
                          perms: LabelPermutations) -> TopMembers:
    """The low-FPR count: per half, orient with the (candidate, direction) chosen on the
    OTHER (calibration) half — the one putting most calibration members above every
    calibration non-member (the AUC's choice on ties) — take the calibration half's most
    member-like non-member as the threshold (FPR 0 there), and count the test half's members
    strictly above it minus its non-members above it; sum the two halves. Under every
    labelling of ``perms``; subtracting the non-members keeps a lucky low threshold from
    counting as evidence."""
    member, nonmember = _matrices(members, nonmembers, perms)
    pooled = [_oriented_options(perms.pooled(member, nonmember, h)) for h in (0, 1)]
    total = np.zeros(perms.size)
    flagged: list[int] = []
    for cal, test in ((0, 1), (1, 0)):
        choice, direction = _choose(_half_auc_matrix(pooled[cal][::2], perms.labels[cal]))
        option = _top_choice(pooled[cal], perms.labels[cal], 2 * choice + (direction < 0))
        cal_scores = pooled[cal][option]  # (B + 1, n_cal)
        threshold = np.where(perms.labels[cal] == 0.0, cal_scores, -np.inf).max(axis=1)
        test_scores = pooled[test][option]
        hits, false_hits = _counts_above(test_scores, perms.labels[test], threshold)
        total += hits - false_hits
        n_test = perms.halves[test][0].size
        above = test_scores[0, :n_test] > threshold[0]
        flagged.extend(int(i) for i in perms.halves[test][0][above])
    return TopMembers(statistic=total, flagged=np.array(sorted(flagged), dtype=np.int64))


# ---------------------------------------------------------------------------------------------
# one-sided bounds (PASS needs safety shown)


def _normal_quantile(p: float) -> float:
    """Φ⁻¹(p) by bisection on math.erf (no scipy at run time; ~1e-15)."""
    low, high = -40.0, 40.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if 0.5 * (1.0 + math.erf(middle / math.sqrt(2.0))) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def _wilson_upper(estimate: float, n: int, z: float) -> float:
    """Upper root θ of (θ − Â)² = z² θ(1 − θ)/n: Â's variance is at most θ(1 − θ)/min(m, n)
    for ANY two distributions with AUC θ (Birnbaum–McCarty), so this bound needs no
    variance estimate (which is 0 at perfect separation and made [1.00, 1.00])."""
    a, z2 = estimate, z * z
    centre = a + z2 / (2 * n)
    half = z * math.sqrt(a * (1 - a) / n + z2 / (4 * n * n))
    return min(1.0, (centre + half) / (1 + z2 / n))


def rank_auc_bounds(members: Candidates, nonmembers: Candidates, confidence: float = 0.95,
                    ) -> tuple[float, float]:
    """(lower, upper) one-sided ``confidence`` bounds on the attacker's best true AUC,
    max over candidates k and both directions of AUC_k: upper = max_k max(U_k, 1 − L_k)
    with U_k, L_k the one-sided max-variance (Birnbaum–McCarty) score bounds of the full-
    sample fixed-sign AUC_k; lower = the largest of the candidates' lower bounds on
    max(AUC_k, 1 − AUC_k)... in the learned-free sense: max_k max(L_k, 1 − U_k)."""
    _bootstrap_options(auc, 1, confidence)
    _, member, nonmember, _ = _candidates(members, nonmembers, None)
    z = _normal_quantile(float(confidence))
    size = min(member.shape[1], nonmember.shape[1])
    upper, lower = 0.5, 0.5
    for m, n in zip(member, nonmember, strict=True):
        value = auc(m, n)
        up, low = _wilson_upper(value, size, z), 1.0 - _wilson_upper(1.0 - value, size, z)
        upper = max(upper, up, 1.0 - low)
        lower = max(lower, low, 1.0 - up)
    return lower, upper


def decide_domain(points: Sequence[float], upper_bounds: Sequence[float | None],
                  adjusted: Sequence[float], threshold: float, alpha: float) -> Outcome:
    """failed: some row is significant (adjusted p ≤ alpha) with its point estimate past
    ``threshold``; passed: every row has an upper bound ≤ ``threshold`` (intersection–union);
    otherwise inconclusive. With bounds ≥ points (as :func:`auc_upper_bound` guarantees), a
    failing row's bound is past the threshold, so no added row can turn failed into passed."""
    if not len(points) == len(upper_bounds) == len(adjusted) or not points:
        raise MetricInputError(f"points, upper_bounds and adjusted must be non-empty and of one "
                               f"length, got {len(points)}, {len(upper_bounds)}, {len(adjusted)}")
    if any(p > threshold and a <= alpha for p, a in zip(points, adjusted, strict=True)):
        return "failed"
    if all(u is not None and u <= threshold for u in upper_bounds):
        return "passed"
    return "inconclusive"


# The smallest class size at which the one-sided bootstrap bound is issued: below it the
# bound is None and the check cannot PASS (docs/verdict-maths.md: coverage table).
BOUND_MIN_PER_CLASS = 8


def _upper_quantile(values: FloatArray, confidence: float) -> float:
    return float(np.quantile(values, float(confidence)))


def auc_upper_bound(members: Candidates, nonmembers: Candidates, seed: int = 0,
                    confidence: float = 0.95, *, bootstrap_seed: int = 0,
                    n_resamples: int = 999,
                    min_per_class: int = BOUND_MIN_PER_CLASS) -> float | None:
    """One-sided ``confidence`` upper bound on the calibrated AUC: the ``confidence``
    quantile of the stratified bootstrap of the whole cross-fit (crossfit_auc_ci's resampling,
    choice re-learned per resample), never below the point estimate. None when a class has
    fewer than ``min_per_class`` samples (no bound: the check cannot PASS)."""
    from s2l_scan.functional.metrics import _crossfit_bootstrap

    _, member, nonmember, _ = _candidates(members, nonmembers, None)
    count = _bootstrap_options(auc, n_resamples, confidence)
    if min(member.shape[1], nonmember.shape[1]) < min_per_class:
        return None
    halves = crossfit_halves(member.shape[1], nonmember.shape[1], seed)
    values = _crossfit_bootstrap(member, nonmember, halves, np.random.default_rng(bootstrap_seed),
                                 count)
    point = crossfit_auc(members, nonmembers, seed).auc
    return max(point, _upper_quantile(values, confidence))


def auc_interval(members: Candidates, nonmembers: Candidates, seed: int = 0,
                 confidence: float = 0.95, *, bootstrap_seed: int = 0, n_resamples: int = 999,
                 min_per_class: int = BOUND_MIN_PER_CLASS) -> tuple[float, float] | None:
    """Display interval of the calibrated AUC, or None below ``min_per_class`` per class.

    The hull of crossfit_auc_ci's percentile interval, the point estimate and the
    max-variance (Birnbaum–McCarty) score interval around the point at the smaller class
    size: never zero-width, where the bootstrap alone printed [1.00, 1.00] at perfect
    separation (every resample of separated scores is separated)."""
    from s2l_scan.functional.metrics import crossfit_auc_ci

    _, member, nonmember, _ = _candidates(members, nonmembers, None)
    size = min(member.shape[1], nonmember.shape[1])
    if size < min_per_class:
        return None
    low, high = crossfit_auc_ci(members, nonmembers, seed, bootstrap_seed=bootstrap_seed,
                                n_resamples=n_resamples, confidence=confidence)
    point = crossfit_auc(members, nonmembers, seed).auc
    z = _normal_quantile(1.0 - (1.0 - float(confidence)) / 2.0)
    rank_high = _wilson_upper(point, size, z)
    rank_low = 1.0 - _wilson_upper(1.0 - point, size, z)
    return min(low, point, rank_low), max(high, point, rank_high)


# ---------------------------------------------------------------------------------------------
# amplification: H0_r: Δ_r ≤ margin, Romano–Wolf max-T on the paired bootstrap

# 1,999 resamples: the p floor 1/2000 times a Holm factor of 5 domains is 0.0025 = α/20.
AMPLIFICATION_RESAMPLES = 1999

Pair = tuple[Candidates, Candidates, Candidates, Candidates]
"""(probe members, probe non-members, released members, released non-members), aligned."""


@dataclass(frozen=True)
class AmplificationResult:
    """One domain's amplification family; arrays per probe row."""

    delta: FloatArray
    """Δ̂_r = calibrated AUC(probe copy) − calibrated AUC(released)."""
    raw: FloatArray
    """Bootstrap p of H0_r: Δ_r ≤ margin alone."""
    adjusted: FloatArray
    """Romano–Wolf step-down adjusted p (max-T over the domain's rows)."""
    upper: FloatArray
    """One-sided upper bound of Δ_r (bootstrap percentile, never below Δ̂_r): PASS needs
    ≤ margin. NaN (no bound: cannot PASS) below BOUND_MIN_PER_CLASS per class."""
    domain_p: float
    margin: float
    n_resamples: int


def _pair_matrices(pairs: Sequence[Pair]) -> list[tuple[FloatArray, ...]]:
    out: list[tuple[FloatArray, ...]] = []
    for pair in pairs:
        _, p_m, p_n, _ = _candidates(pair[0], pair[1], None)
        _, r_m, r_n, _ = _candidates(pair[2], pair[3], None)
        out.append((p_m, p_n, r_m, r_n))
    sizes = {(m.shape[1], n.shape[1]) for group in out for m, n in (group[:2], group[2:])}
    if len(sizes) != 1:
        raise MetricInputError(f"every probe and released row of a domain must score the same "
                               f"samples; got (members, non-members) sizes {sorted(sizes)}")
    return out


def _bootstrap_deltas(matrices: list[tuple[FloatArray, ...]], seed: int, bootstrap_seed: int,
                      count: int) -> tuple[FloatArray, FloatArray]:
    """(observed Δ (R,), resampled Δ (count, R)): one set of stratified resample indices
    shared by every row and both scorers (crossfit_delta's draws)."""
    from s2l_scan.functional.metrics import _identity_draws

    n_m, n_n = matrices[0][0].shape[1], matrices[0][1].shape[1]
    halves = crossfit_halves(n_m, n_n, seed)

    def deltas(draws: tuple[IntArray, IntArray, IntArray, IntArray]) -> FloatArray:
        return np.stack([_crossfit_rows(p_m, p_n, halves, draws)[0]
                         - _crossfit_rows(r_m, r_n, halves, draws)[0]
                         for p_m, p_n, r_m, r_n in matrices], axis=1)

    observed = deltas(_identity_draws(halves))[0]
    rng = np.random.default_rng(bootstrap_seed)
    return observed, np.concatenate([deltas(d) for d in _half_draws(rng, halves, count)])


def amplification_test(pairs: Sequence[Pair], margin: float = 0.05, seed: int = 0, *,
                       bootstrap_seed: int = 0, n_resamples: int = AMPLIFICATION_RESAMPLES,
                       confidence: float = 0.95) -> AmplificationResult:
    """Test H0_r: Δ_r ≤ margin for every probe row r of one domain, family-wise.

    Romano–Wolf: the centred resampled differences D*_r = Δ̂_r − Δ*_r stand in for Δ̂_r − Δ_r
    (the percentile flavour; see the comment below); row r's statistic is
    T_r = Δ̂_r − margin; the step-down compares the rows, largest T first, with the max over
    the not-yet-rejected rows of D*. p = (1 + #{max D* ≥ T}) / (B + 1).
    """
    if not pairs:
        raise MetricInputError("pairs is empty; give at least one (probe, released) row")
    count = _bootstrap_options(auc, n_resamples, confidence)
    bound = float(margin)
    if not math.isfinite(bound):
        raise MetricInputError(f"margin must be a finite number, got {margin!r}")
    matrices = _pair_matrices(pairs)
    observed, resampled = _bootstrap_deltas(matrices, seed, bootstrap_seed, count)
    # Percentile flavour (reflected): D*_r = Δ̂_r − Δ*_r, so a single row is rejected exactly
    # when the bootstrap's α-quantile of Δ* exceeds the margin. The basic flavour
    # (Δ*_r − Δ̂_r) was measured anti-conservative: size 0.145 at 16/16, 0.085 at 48/48
    # (true AUCs 0.60 → 0.65), the percentile one 0.005 and 0.015 (docs/verdict-maths.md).
    centred = observed - resampled
    statistic = observed - bound
    raw = (1 + np.sum(centred >= statistic - _TIE, axis=0)) / (count + 1)
    order = np.argsort(-statistic, kind="stable")
    adjusted_sorted = np.empty(len(order))
    running = np.full(count, -np.inf)
    for j in range(len(order) - 1, -1, -1):
        np.maximum(running, centred[:, order[j]], out=running)
        adjusted_sorted[j] = (1 + np.sum(running >= statistic[order[j]] - _TIE)) / (count + 1)
    adjusted_sorted = np.maximum.accumulate(adjusted_sorted)
    adjusted = np.empty(len(order))
    adjusted[order] = adjusted_sorted
    upper = np.maximum(observed, np.quantile(resampled, confidence, axis=0))
    if min(matrices[0][0].shape[1], matrices[0][1].shape[1]) < BOUND_MIN_PER_CLASS:
        upper = np.full(upper.shape, np.nan)  # no bound below the cutoff: cannot PASS
    return AmplificationResult(delta=observed, raw=raw, adjusted=adjusted, upper=upper,
                               domain_p=float(adjusted.min()), margin=bound, n_resamples=count)


def delta_upper_bound(probe_members: Candidates, probe_nonmembers: Candidates,
                      released_members: Candidates, released_nonmembers: Candidates,
                      seed: int = 0, confidence: float = 0.95, *, bootstrap_seed: int = 0,
                      n_resamples: int = 999,
                      min_per_class: int = BOUND_MIN_PER_CLASS) -> float | None:
    """One-sided ``confidence`` upper bound of one row's Δ (amplification_test's bound), or
    None below ``min_per_class`` per class."""
    _, member, nonmember, _ = _candidates(released_members, released_nonmembers, None)
    if min(member.shape[1], nonmember.shape[1]) < min_per_class:
        return None
    result = amplification_test([(probe_members, probe_nonmembers, released_members,
                                  released_nonmembers)], 0.0, seed,
                                bootstrap_seed=bootstrap_seed, n_resamples=n_resamples,
                                confidence=confidence)
    return float(result.upper[0])


def family_attainable_pvalue(statistics: npt.ArrayLike, perfect: npt.ArrayLike) -> float:
    """The smallest domain p this family could give: the domain p with one column at a time
    replaced by ``perfect`` (crossfit_auc_statistic of perfectly separated scores on the same
    permutations), the best over columns. With R columns of distinct null maxima it is about
    R/(B + 1), so the permutations must grow with the rows (docs)."""
    table = np.array(statistics, dtype=np.float64)
    best = np.asarray(perfect, dtype=np.float64)
    if table.ndim != 2 or best.shape != (table.shape[0],):
        raise MetricInputError(f"statistics must be (B + 1, R) and perfect (B + 1,), got "
                               f"{table.shape} and {best.shape}")
    smallest = 1.0
    for r in range(table.shape[1]):
        replaced = table.copy()
        replaced[:, r] = best
        smallest = min(smallest, family_test(replaced).domain_p)
    return smallest
