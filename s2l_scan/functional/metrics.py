"""Membership-inference metrics on attack scores: AUC, the exact ROC, TPR at low FPR,
balanced accuracy and bootstrap confidence intervals; and the verdict maths: cross-fitted
(calibrated) AUC with its bootstrap CI and paired Δ, TPRs only where estimable, with exact
Clopper–Pearson CIs (docs/verdict-maths.md).

Convention: a higher score means "more likely a training member"; a sample is predicted a
member when its score is ``>= threshold``. Pure numpy, so the report and the tests can use it
without torch. Bad arguments raise ValueError; callers passing the user's input validate it
first (:func:`s2l_scan.errors.checked`) so the user gets a UsageError.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "CrossFit",
    "CrossFitDelta",
    "HalfChoice",
    "MetricInputError",
    "TprEstimate",
    "auc",
    "best_balanced_accuracy",
    "bootstrap_ci",
    "calibration_split",
    "clopper_pearson",
    "crossfit_auc",
    "crossfit_auc_ci",
    "crossfit_delta",
    "crossfit_halves",
    "crossfit_pvalue",
    "estimable_fpr",
    "holm",
    "lowest_estimable_fpr",
    "paired_bootstrap_ci",
    "roc_curve",
    "smallest_pvalue",
    "threshold_at_fpr",
    "tpr_at_fpr",
    "tpr_at_fpr_crossfit",
    "tpr_fpr_at_threshold",
]



class MetricInputError(ValueError):
    """Bad input to a metric: a :class:`ValueError`, as every pure function here raises
    (docs/architecture.md); the configuration and data boundary checks user input first and raises
    the usage error."""


FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Statistic = Callable[[FloatArray, FloatArray], float]
# Maps one chunk of resampled indices (members, nonmembers), each (resamples, class size),
# to the statistic of every resample in the chunk.
_Resampler = Callable[[IntArray, IntArray], FloatArray]

# Resamples are drawn in chunks so memory stays bounded (about this many cells per index
# array) whatever the sample size; both bootstrap paths use the same chunks, hence the same
# random draws.
_CHUNK_CELLS = 2_000_000


# ---------------------------------------------------------------------------------------------
# validation


def _scores(values: npt.ArrayLike, name: str) -> FloatArray:
    """Validate one class's scores: a non-empty 1-D array of finite floats."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(f"{name} must be an array of numbers, got {type(values).__name__} "
                               f"({exc})") from exc
    if arr.ndim != 1:
        raise MetricInputError(f"{name} must be a 1-D array with one score per sample, got shape "
                               f"{arr.shape}; flatten or select the score column first")
    if arr.size == 0:
        raise MetricInputError(f"{name} is empty; every metric needs at least one member and one "
                               f"nonmember score")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise MetricInputError(
            f"{name} holds {bad.size} non-finite score(s) (first at index "
            f"{bad[0]}: {arr[bad[0]]}); fix or drop those samples before scoring")
    return arr


def _pair(member_scores: npt.ArrayLike, nonmember_scores: npt.ArrayLike,
          ) -> tuple[FloatArray, FloatArray]:
    return _scores(member_scores, "member_scores"), _scores(nonmember_scores, "nonmember_scores")


def _fpr_target(target_fpr: float) -> float:
    """Validate a target false-positive rate in [0, 1]."""
    try:
        target = float(target_fpr)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(
            f"target_fpr must be a number in [0, 1], got {target_fpr!r}") from exc
    if not 0.0 <= target <= 1.0:  # also rejects NaN
        raise MetricInputError(f"target_fpr must be in [0, 1] (e.g. 0.01 for TPR at 1% FPR), "
                               f"got {target_fpr!r}")
    return target


def _bootstrap_options(statistic: object, n_resamples: int, confidence: float) -> int:
    """Validate the shared bootstrap options; returns n_resamples as an int."""
    if not callable(statistic):
        raise MetricInputError(f"statistic must be a callable(member, nonmember) -> float, got "
                               f"{type(statistic).__name__}")
    try:
        count = operator.index(n_resamples)
    except TypeError as exc:
        raise MetricInputError(f"n_resamples must be an integer, got {n_resamples!r}") from exc
    if count < 1:
        raise MetricInputError(f"n_resamples must be >= 1 (1000 is usual), got {count}")
    try:
        level = float(confidence)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(
            f"confidence must be a number in (0, 1), got {confidence!r}") from exc
    if not 0.0 < level < 1.0:
        raise MetricInputError(f"confidence must be in (0, 1) (e.g. 0.95), got {confidence!r}")
    return count


# ---------------------------------------------------------------------------------------------
# point metrics


def _doubled_u(member: FloatArray, nonmember_sorted: FloatArray) -> int:
    """Twice the Mann–Whitney U: each member scores 2 per nonmember below it, 1 per tie."""
    # Counting with searchsorted is the average-rank formula without forming the pooled ranks,
    # and the doubled count stays an exact integer (no half-integer rounding).
    below = np.searchsorted(nonmember_sorted, member, side="left")
    at_or_below = np.searchsorted(nonmember_sorted, member, side="right")
    return int(below.sum(dtype=np.int64) + at_or_below.sum(dtype=np.int64))


def auc(member_scores: npt.ArrayLike, nonmember_scores: npt.ArrayLike) -> float:
    """Mann–Whitney AUC: P(member score > nonmember score) + ½·P(tie). O(n log n)."""
    member, nonmember = _pair(member_scores, nonmember_scores)
    return _doubled_u(member, np.sort(nonmember)) / (2 * member.size * nonmember.size)


def _roc(member: FloatArray, nonmember: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    distinct = np.unique(np.concatenate([member, nonmember]))[::-1]
    # Predicted members at threshold t are the scores >= t: size minus the count below t.
    tp = member.size - np.searchsorted(np.sort(member), distinct, side="left")
    fp = nonmember.size - np.searchsorted(np.sort(nonmember), distinct, side="left")
    thresholds = np.concatenate([[np.inf], distinct])
    tpr = np.concatenate([[0], tp]) / member.size
    fpr = np.concatenate([[0], fp]) / nonmember.size
    return fpr, tpr, thresholds


def roc_curve(member_scores: npt.ArrayLike, nonmember_scores: npt.ArrayLike,
              ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Exact ROC (fpr, tpr, thresholds): origin at threshold +inf, then one point per distinct
    score in decreasing order, predicting member when score >= threshold."""
    return _roc(*_pair(member_scores, nonmember_scores))


def _operating_point(member: FloatArray, nonmember: FloatArray, target: float,
                     ) -> tuple[float, float]:
    """(TPR, threshold) of the best ROC point with FPR <= target."""
    fpr, tpr, thresholds = _roc(member, nonmember)
    # FPR is non-decreasing along the curve and the origin has FPR 0, so the admissible points
    # are a non-empty prefix and its last point has the largest admissible TPR.
    last = int(np.searchsorted(fpr, target, side="right")) - 1
    # Among points sharing that TPR take the first (highest threshold, lowest FPR): the same
    # power with the least false-positive budget spent, which transfers best to held-out data.
    first = int(np.searchsorted(tpr, tpr[last], side="left"))
    return float(tpr[first]), float(thresholds[first])


def tpr_at_fpr(member_scores: npt.ArrayLike, nonmember_scores: npt.ArrayLike,
               target_fpr: float) -> float:
    """Largest TPR on the exact ROC with FPR <= target_fpr (0.0 if only the origin qualifies)."""
    member, nonmember = _pair(member_scores, nonmember_scores)
    return _operating_point(member, nonmember, _fpr_target(target_fpr))[0]


def threshold_at_fpr(member_scores: npt.ArrayLike, nonmember_scores: npt.ArrayLike,
                     target_fpr: float) -> float:
    """Threshold realising :func:`tpr_at_fpr` (+inf if only the origin qualifies).

    Choose it on a calibration half, then measure it on the test half with
    :func:`tpr_fpr_at_threshold`, so the reported FPR is not selected on the data it scores.
    """
    member, nonmember = _pair(member_scores, nonmember_scores)
    return _operating_point(member, nonmember, _fpr_target(target_fpr))[1]


def tpr_fpr_at_threshold(member_scores: npt.ArrayLike, nonmember_scores: npt.ArrayLike,
                         threshold: float) -> tuple[float, float]:
    """(TPR, FPR) when predicting member for score >= threshold."""
    member, nonmember = _pair(member_scores, nonmember_scores)
    try:
        cut = float(threshold)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(f"threshold must be a number, got {threshold!r}") from exc
    if math.isnan(cut):
        raise MetricInputError(
            "threshold is NaN; use +inf to predict no members, -inf to predict all")
    return float(np.mean(member >= cut)), float(np.mean(nonmember >= cut))


def best_balanced_accuracy(member_scores: npt.ArrayLike, nonmember_scores: npt.ArrayLike,
                           ) -> tuple[float, float]:
    """(ASR, threshold): the best balanced accuracy (TPR + 1 − FPR)/2 over all thresholds."""
    fpr, tpr, thresholds = _roc(*_pair(member_scores, nonmember_scores))
    balanced = (tpr + (1.0 - fpr)) / 2.0
    best = int(np.argmax(balanced))  # first maximum: the highest threshold achieving it
    return float(balanced[best]), float(thresholds[best])


# ---------------------------------------------------------------------------------------------
# bootstrap


def _draws(rng: np.random.Generator, n_member: int, n_nonmember: int, n_resamples: int,
           ) -> Iterator[tuple[IntArray, IntArray]]:
    """Stratified resample indices, in chunks of shape (chunk, class size)."""
    chunk = max(1, _CHUNK_CELLS // (n_member + n_nonmember))
    done = 0
    while done < n_resamples:
        size = min(chunk, n_resamples - done)
        yield (rng.integers(0, n_member, size=(size, n_member)),
               rng.integers(0, n_nonmember, size=(size, n_nonmember)))
        done += size


def _auc_resampler(member: FloatArray, nonmember: FloatArray) -> _Resampler:
    """AUC of many resamples at once, O(resamples × n) with no per-resample sort."""
    # The resampled scores are always drawn from the original ones, so where each member sits
    # among the sorted original nonmembers is computed once; a resample only changes how many
    # copies of each nonmember it holds, and a cumulative sum of those counts gives, per member,
    # the (doubled) number of resampled nonmembers below it — the same integer auc() computes.
    order = np.argsort(nonmember, kind="stable")
    sorted_nonmember = nonmember[order]
    position = np.empty(nonmember.size, dtype=np.int64)
    position[order] = np.arange(nonmember.size)
    below = np.searchsorted(sorted_nonmember, member, side="left")
    at_or_below = np.searchsorted(sorted_nonmember, member, side="right")
    n_m, n_n = member.size, nonmember.size

    def resample(member_idx: IntArray, nonmember_idx: IntArray) -> FloatArray:
        rows = member_idx.shape[0]
        offsets = np.arange(rows, dtype=np.int64)[:, None] * n_n
        counts = np.bincount((position[nonmember_idx] + offsets).ravel(),
                             minlength=rows * n_n).reshape(rows, n_n)
        cumulative = np.zeros((rows, n_n + 1), dtype=np.int64)
        np.cumsum(counts, axis=1, out=cumulative[:, 1:])
        doubled_u = (np.take_along_axis(cumulative, below[member_idx], axis=1)
                     + np.take_along_axis(cumulative, at_or_below[member_idx], axis=1)
                     ).sum(axis=1)
        result: FloatArray = doubled_u / (2 * n_m * n_n)
        return result

    return resample


def _generic_resampler(member: FloatArray, nonmember: FloatArray,
                       statistic: Statistic) -> _Resampler:
    def resample(member_idx: IntArray, nonmember_idx: IntArray) -> FloatArray:
        return np.array([float(statistic(member[m], nonmember[n]))
                         for m, n in zip(member_idx, nonmember_idx, strict=True)],
                        dtype=np.float64)

    return resample


def _resampler(member: FloatArray, nonmember: FloatArray, statistic: Statistic) -> _Resampler:
    # AUC is the statistic called most (every probe, every CI), so it gets the vectorised path;
    # it returns exactly what the generic loop would.
    if statistic is auc:
        return _auc_resampler(member, nonmember)
    return _generic_resampler(member, nonmember, statistic)


def _percentile_interval(values: FloatArray, confidence: float) -> tuple[float, float]:
    nan = int(np.isnan(values).sum())
    if nan:
        raise MetricInputError(
            f"statistic returned NaN on {nan} of {values.size} bootstrap resamples; "
            f"it must return a number for every resample")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_ci(member_scores: npt.ArrayLike, nonmember_scores: npt.ArrayLike,
                 statistic: Statistic, *, n_resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile CI of statistic(member, nonmember) by stratified bootstrap.

    Members and nonmembers are resampled separately with replacement, so every resample keeps
    the class sizes (an unstratified resample could lose a class entirely).
    """
    member, nonmember = _pair(member_scores, nonmember_scores)
    count = _bootstrap_options(statistic, n_resamples, confidence)
    rng = np.random.default_rng(seed)
    compute = _resampler(member, nonmember, statistic)
    values = np.concatenate([compute(m, n) for m, n in
                             _draws(rng, member.size, nonmember.size, count)])
    return _percentile_interval(values, confidence)


def paired_bootstrap_ci(base_member: npt.ArrayLike, base_nonmember: npt.ArrayLike,
                        probe_member: npt.ArrayLike, probe_nonmember: npt.ArrayLike,
                        statistic: Statistic, *, n_resamples: int = 1000,
                        confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of statistic(probe) − statistic(base), resampling the same samples for both.

    The arrays are aligned per sample (index i is the same image under both scorers), so the
    pairing cancels per-sample difficulty shared by both and the interval is tighter than two
    independent CIs.
    """
    b_mem, b_non = _scores(base_member, "base_member"), _scores(base_nonmember, "base_nonmember")
    p_mem = _scores(probe_member, "probe_member")
    p_non = _scores(probe_nonmember, "probe_nonmember")
    if b_mem.size != p_mem.size or b_non.size != p_non.size:
        raise MetricInputError(
            f"paired bootstrap needs the base and probe scores aligned per sample: "
            f"got {b_mem.size} vs {p_mem.size} members and {b_non.size} vs "
            f"{p_non.size} nonmembers; score the same samples with both")
    count = _bootstrap_options(statistic, n_resamples, confidence)
    rng = np.random.default_rng(seed)
    base = _resampler(b_mem, b_non, statistic)
    probe = _resampler(p_mem, p_non, statistic)
    values = np.concatenate([probe(m, n) - base(m, n) for m, n in
                             _draws(rng, b_mem.size, b_non.size, count)])
    return _percentile_interval(values, confidence)


def calibration_split(n: int, *, seed: int = 0) -> tuple[IntArray, IntArray]:
    """Seeded disjoint split of range(n) into sorted (calibration, test) index halves; the test
    half gets the extra index when n is odd."""
    try:
        size = operator.index(n)
    except TypeError as exc:
        raise MetricInputError(f"n must be an integer sample count, got {n!r}") from exc
    if size < 2:
        raise MetricInputError(
            f"calibration_split needs n >= 2 so both halves are non-empty, got {size}")
    permutation = np.random.default_rng(seed).permutation(size).astype(np.int64)
    half = size // 2
    return np.sort(permutation[:half]), np.sort(permutation[half:])


# ---------------------------------------------------------------------------------------------
# cross-fitting (docs/verdict-maths.md): everything an attacker may choose is chosen on one half and
# measured on the other, then the halves swap.

Candidates = Mapping[str, npt.ArrayLike] | npt.ArrayLike
Half = tuple[IntArray, IntArray]
"""One half of a cross-fit split: (member indices, non-member indices), both sorted."""

# The key a plain score array gets when it is the only candidate.
SINGLE_CANDIDATE = "score"


def _count(value: object, name: str, minimum: int) -> int:
    try:
        count = operator.index(value)  # type: ignore[arg-type]
    except TypeError as exc:
        raise MetricInputError(f"{name} must be an integer, got {value!r}") from exc
    if count < minimum:
        raise MetricInputError(f"{name} must be >= {minimum}, got {count}")
    return count


def crossfit_halves(n_members: int, n_nonmembers: int, seed: int = 0) -> tuple[Half, Half]:
    """Seeded, stratified split into two halves ``((members_A, nonmembers_A), (members_B,
    nonmembers_B))``.

    Members and non-members are permuted separately, so each half holds ``n // 2`` (half A) or
    ``n - n // 2`` (half B) of each class: both classes are present on both sides whatever the
    seed. Indices are sorted within each half.
    """
    n_m = _count(n_members, "n_members", 2)
    n_n = _count(n_nonmembers, "n_nonmembers", 2)
    rng = np.random.default_rng(seed)
    perm_m = rng.permutation(n_m).astype(np.int64)
    perm_n = rng.permutation(n_n).astype(np.int64)
    half_m, half_n = n_m // 2, n_n // 2
    return ((np.sort(perm_m[:half_m]), np.sort(perm_n[:half_n])),
            (np.sort(perm_m[half_m:]), np.sort(perm_n[half_n:])))


@dataclass(frozen=True)
class HalfChoice:
    """What the attacker chose on one calibration half and what it scored on the other half."""

    candidate: str
    """Key of the chosen score variant (e.g. SecMI's compared timestep)."""
    direction: int
    """+1: a higher score means member; −1: a lower score means member."""
    calibration_auc: float
    """Fixed-sign (+1) AUC of the chosen candidate on the calibration half."""
    test_auc: float
    """AUC of the chosen candidate, in the chosen direction, on the other (test) half."""


@dataclass(frozen=True)
class CrossFit:
    """A cross-fitted AUC: what the report, the gate, Δ and the regression compare read."""

    auc: float
    """Calibrated AUC: the mean of the two test-half AUCs (see :func:`crossfit_auc`)."""
    auc_raw: float
    """Fixed-sign (+1) AUC of the default candidate on all samples (kept for the report)."""
    default: str
    """The default candidate's key."""
    choices: tuple[HalfChoice, HalfChoice]
    """choices[0] was made on half A and tested on B; choices[1] made on B, tested on A."""
    unstable: bool
    """The two halves chose a different (candidate, direction): the choice is not reliable."""
    n_members: int
    n_nonmembers: int


def _candidate_matrix(values: Candidates, name: str) -> tuple[tuple[str, ...], FloatArray]:
    """(keys, K × n matrix) of one class's candidate scores, validated."""
    if isinstance(values, Mapping):
        if not values:
            raise MetricInputError(f"{name} is an empty dict; give at least one candidate score "
                                   f"array (or a plain array for a single candidate)")
        bad = [key for key in values if not isinstance(key, str)]
        if bad:
            raise MetricInputError(f"{name} keys must be strings naming the candidates, got "
                                   f"{bad[0]!r}")
        keys = tuple(values)
        rows = [_scores(values[key], f"{name}[{key!r}]") for key in keys]
    else:
        keys, rows = (SINGLE_CANDIDATE,), [_scores(values, name)]
    sizes = {row.size for row in rows}
    if len(sizes) > 1:
        raise MetricInputError(f"{name}: every candidate must score the same samples, got sizes "
                               f"{dict(zip(keys, (r.size for r in rows), strict=True))}")
    return keys, np.stack(rows)


def _candidates(members: Candidates, nonmembers: Candidates, default: str | None,
                ) -> tuple[tuple[str, ...], FloatArray, FloatArray, int]:
    """Validated (keys, member matrix, non-member matrix, index of the default candidate)."""
    keys, member = _candidate_matrix(members, "members")
    other_keys, nonmember = _candidate_matrix(nonmembers, "nonmembers")
    if keys != other_keys:
        raise MetricInputError(f"members and nonmembers must hold the same candidates in the "
                               f"same order, got {list(keys)} and {list(other_keys)}")
    if member.shape[1] < 2 or nonmember.shape[1] < 2:
        raise MetricInputError(f"cross-fitting needs >= 2 members and >= 2 nonmembers (one of "
                               f"each per half), got {member.shape[1]} and {nonmember.shape[1]}")
    if default is None:
        return keys, member, nonmember, 0
    if default not in keys:
        raise MetricInputError(f"default candidate {default!r} is not among the candidates "
                               f"{list(keys)}")
    return keys, member, nonmember, keys.index(default)


def _half_aucs(member: FloatArray, nonmember: FloatArray, half: Half,
               member_idx: IntArray, nonmember_idx: IntArray) -> FloatArray:
    """(R, K) fixed-sign AUCs of every candidate on R resamples of one half.

    member_idx / nonmember_idx (R, half size) index positions *within* the half.
    """
    columns = [_auc_resampler(m[half[0]], n[half[1]])(member_idx, nonmember_idx)
               for m, n in zip(member, nonmember, strict=True)]
    return np.stack(columns, axis=1)


def _choose(calibration: FloatArray) -> tuple[IntArray, IntArray]:
    """The attacker's choice from (R, K) calibration AUCs: per row the candidate with the largest
    effect max(AUC, 1 − AUC) (the first on ties, so the default wins a tie when listed first)
    and its direction (+1 when its AUC is >= ½, so an uninformative half keeps the sign)."""
    effect = np.maximum(calibration, 1.0 - calibration)
    choice = np.argmax(effect, axis=1).astype(np.int64)
    chosen = np.take_along_axis(calibration, choice[:, None], axis=1)[:, 0]
    direction = np.where(chosen >= 0.5, 1, -1).astype(np.int64)
    return choice, direction


def _oriented(test: FloatArray, choice: IntArray, direction: IntArray) -> FloatArray:
    chosen = np.take_along_axis(test, choice[:, None], axis=1)[:, 0]
    result: FloatArray = np.where(direction > 0, chosen, 1.0 - chosen)
    return result


def _crossfit_rows(member: FloatArray, nonmember: FloatArray, halves: tuple[Half, Half],
                   draws: tuple[IntArray, IntArray, IntArray, IntArray],
                   ) -> tuple[FloatArray, tuple[IntArray, IntArray, IntArray, IntArray],
                              FloatArray, FloatArray]:
    """The whole cross-fit on R resamples at once.

    draws = (A members, A nonmembers, B members, B nonmembers), each (R, half size), indexing
    within the half. Returns (calibrated AUC per row, (choice_A, dir_A, choice_B, dir_B), AUCs
    on A (R, K), AUCs on B (R, K)).
    """
    half_a, half_b = halves
    on_a = _half_aucs(member, nonmember, half_a, draws[0], draws[1])
    on_b = _half_aucs(member, nonmember, half_b, draws[2], draws[3])
    choice_a, direction_a = _choose(on_a)
    choice_b, direction_b = _choose(on_b)
    calibrated = (_oriented(on_b, choice_a, direction_a)
                  + _oriented(on_a, choice_b, direction_b)) / 2.0
    return calibrated, (choice_a, direction_a, choice_b, direction_b), on_a, on_b


def _identity_draws(halves: tuple[Half, Half]) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    return tuple(np.arange(part.size, dtype=np.int64)[None, :]  # type: ignore[return-value]
                 for half in halves for part in half)


def crossfit_auc(members: Candidates, nonmembers: Candidates, seed: int = 0, *,
                 default: str | None = None) -> CrossFit:
    """Cross-fitted (calibrated) AUC: the attacker's choices are learned, never assumed.

    ``members`` / ``nonmembers`` are one score array each, or dicts of aligned candidate score
    arrays the attacker may choose among (the same keys in the same order; ``default`` names
    the candidate whose fixed-sign AUC is reported as ``auc_raw``, else the first key).

    On half A (:func:`crossfit_halves`) the (candidate, direction) with the largest
    max(AUC, 1 − AUC) is chosen and its AUC in that direction is measured on half B; then the
    roles swap. The calibrated AUC is the **mean of the two test-half AUCs**. Each test-half
    AUC is computed on samples the choice never saw, so with no signal its expectation is
    exactly ½ given whatever was chosen, and the mean keeps that. The AUC of the pooled
    oriented test scores is also centred on ½ for one candidate (measured: 0.4987 ± 0.0014 at
    48/48, same SD 0.076), but only by a symmetry: its cross-half pairs compare scores oriented
    by two different halves' choices and lean above ½ when the halves agree, below when they
    disagree; with several candidates they compare scores on different scales. The mean needs
    no such argument and is one rule for every case. Half statistics are Mann–Whitney, ties ½.

    >>> fit = crossfit_auc(np.r_[0.0, 1, 2, 3], np.r_[4.0, 5, 6, 7])
    >>> fit.auc_raw, fit.auc, [c.direction for c in fit.choices]
    (0.0, 1.0, [-1, -1])
    """
    keys, member, nonmember, default_index = _candidates(members, nonmembers, default)
    halves = crossfit_halves(member.shape[1], nonmember.shape[1], seed)
    calibrated, (c_a, d_a, c_b, d_b), on_a, on_b = _crossfit_rows(
        member, nonmember, halves, _identity_draws(halves))
    first = HalfChoice(keys[c_a[0]], int(d_a[0]), float(on_a[0, c_a[0]]),
                       float(_oriented(on_b, c_a, d_a)[0]))
    second = HalfChoice(keys[c_b[0]], int(d_b[0]), float(on_b[0, c_b[0]]),
                        float(_oriented(on_a, c_b, d_b)[0]))
    return CrossFit(
        auc=float(calibrated[0]),
        auc_raw=auc(member[default_index], nonmember[default_index]),
        default=keys[default_index], choices=(first, second),
        unstable=(first.candidate, first.direction) != (second.candidate, second.direction),
        n_members=member.shape[1], n_nonmembers=nonmember.shape[1])


def _half_draws(rng: np.random.Generator, halves: tuple[Half, Half], n_resamples: int,
                ) -> Iterator[tuple[IntArray, IntArray, IntArray, IntArray]]:
    """Bootstrap indices stratified by (half, class), in chunks of bounded memory."""
    sizes = [part.size for half in halves for part in half]
    chunk = max(1, _CHUNK_CELLS // sum(sizes))
    done = 0
    while done < n_resamples:
        rows = min(chunk, n_resamples - done)
        yield tuple(rng.integers(0, size, size=(rows, size))  # type: ignore[misc]
                    for size in sizes)
        done += rows


def _crossfit_bootstrap(member: FloatArray, nonmember: FloatArray, halves: tuple[Half, Half],
                        rng: np.random.Generator, n_resamples: int) -> FloatArray:
    return np.concatenate([_crossfit_rows(member, nonmember, halves, draws)[0]
                           for draws in _half_draws(rng, halves, n_resamples)])


def crossfit_auc_ci(members: Candidates, nonmembers: Candidates, seed: int = 0, *,
                    bootstrap_seed: int = 0, n_resamples: int = 1000, confidence: float = 0.95,
                    ) -> tuple[float, float]:
    """Percentile CI of :func:`crossfit_auc` by a stratified bootstrap of the whole procedure.

    The split is the point estimate's (``seed``); each resample draws, with replacement, the
    members and the non-members of each half separately (four strata) and re-runs the choice of
    candidate and direction on the resampled calibration half before testing on the resampled
    other half, so the selection's own variability is in the interval. Resampling inside the
    halves keeps them disjoint: resampling all samples and re-splitting would put copies of one
    sample in both halves and leak the calibration choice into the test half.
    """
    _, member, nonmember, _ = _candidates(members, nonmembers, None)
    count = _bootstrap_options(auc, n_resamples, confidence)
    halves = crossfit_halves(member.shape[1], nonmember.shape[1], seed)
    values = _crossfit_bootstrap(member, nonmember, halves, np.random.default_rng(bootstrap_seed),
                                 count)
    return _percentile_interval(values, confidence)


@dataclass(frozen=True)
class CrossFitDelta:
    """Amplification Δ = calibrated AUC(probe) − calibrated AUC(released), paired."""

    delta: float
    ci: tuple[float, float]
    probe: CrossFit
    released: CrossFit
    p_value: float = 1.0  # one-sided bootstrap p of "Δ ≤ 0": (1 + #{resampled Δ ≤ 0}) / (R + 1)


def crossfit_delta(probe_members: Candidates, probe_nonmembers: Candidates,
                   released_members: Candidates, released_nonmembers: Candidates,
                   seed: int = 0, *, bootstrap_seed: int = 0, n_resamples: int = 1000,
                   confidence: float = 0.95) -> CrossFitDelta:
    """Δ of two cross-fitted AUCs on the same samples, with a paired bootstrap CI.

    Index i must be the same image under both scorers. Both use the same split and, per
    resample, the same resampled indices; each learns its own (candidate, direction) on its own
    calibration half, so a shaken copy whose sign flipped is measured in its own best direction.
    The candidate sets may differ between probe and released.
    """
    _, p_mem, p_non, _ = _candidates(probe_members, probe_nonmembers, None)
    _, r_mem, r_non, _ = _candidates(released_members, released_nonmembers, None)
    if p_mem.shape[1] != r_mem.shape[1] or p_non.shape[1] != r_non.shape[1]:
        raise MetricInputError(
            f"Δ needs the probe and released scores aligned per sample: got {p_mem.shape[1]} vs "
            f"{r_mem.shape[1]} members and {p_non.shape[1]} vs {r_non.shape[1]} nonmembers; "
            f"score the same samples with both")
    count = _bootstrap_options(auc, n_resamples, confidence)
    probe = crossfit_auc(probe_members, probe_nonmembers, seed)
    released = crossfit_auc(released_members, released_nonmembers, seed)
    halves = crossfit_halves(p_mem.shape[1], p_non.shape[1], seed)
    rng = np.random.default_rng(bootstrap_seed)
    values = np.concatenate([
        _crossfit_rows(p_mem, p_non, halves, draws)[0]
        - _crossfit_rows(r_mem, r_non, halves, draws)[0]
        for draws in _half_draws(rng, halves, count)])
    return CrossFitDelta(delta=probe.auc - released.auc,
                         ci=_percentile_interval(values, confidence),
                         probe=probe, released=released,
                         p_value=float((1 + np.sum(values <= 0.0)) / (values.size + 1)))


def _average_ranks(values: FloatArray) -> FloatArray:
    """Ranks 1..n along the last axis, ties given their average rank (Mann–Whitney's ½)."""
    ordered = np.sort(values, axis=-1)
    ranks = np.empty_like(values)
    for row in range(values.shape[0]):
        low = np.searchsorted(ordered[row], values[row], side="left")
        high = np.searchsorted(ordered[row], values[row], side="right")
        ranks[row] = (low + high + 1) / 2.0
    return ranks


def _permuted_half_aucs(member: FloatArray, nonmember: FloatArray, half: Half,
                        rng: np.random.Generator, count: int) -> FloatArray:
    """(count, K) AUCs of every candidate on one half with its member / non-member labels
    permuted within the half (the same permutation for every candidate)."""
    n1, n0 = half[0].size, half[1].size
    pooled = np.concatenate([member[:, half[0]], nonmember[:, half[1]]], axis=1)  # (K, n)
    ranks = _average_ranks(pooled)  # once; every permutation only moves the labels
    # float64 labels: numpy shuffles 8-byte items fastest (1-byte ones were measured 1.7×
    # slower; the draws, so the permutations, are the same for any dtype); shuffled in place
    labels = np.zeros((count, n1 + n0))
    labels[:, :n1] = 1.0
    rng.permuted(labels, axis=1, out=labels)
    # one matrix product for every permutation and candidate; its sums of half-integer ranks
    # are exact, so any BLAS (or thread count) gives the same bits
    rank_sums: FloatArray = labels @ ranks.T  # (count, K)
    return (rank_sums - n1 * (n1 + 1) / 2.0) / (n1 * n0)


def crossfit_pvalue(members: Candidates, nonmembers: Candidates, seed: int = 0, *,
                    permutation_seed: int = 0, n_permutations: int = 9999) -> float:
    """Permutation p-value of the calibrated AUC against "no signal" (docs/verdict-maths.md).

    Under the null the labels are exchangeable within each cross-fitting half; each
    permutation relabels both halves (the halves are :func:`crossfit_halves`'s, so the
    observed value is one of the permutations' own kind) and re-runs the whole cross-fit, the
    attacker's choice of candidate and direction included. p = (1 + #{permuted ≥ observed}) /
    (n_permutations + 1), exact and valid at any n; its smallest value is
    1 / (n_permutations + 1).
    """
    count = _count(n_permutations, "n_permutations", 1)
    observed = crossfit_auc(members, nonmembers, seed).auc
    _, member, nonmember, _ = _candidates(members, nonmembers, None)
    halves = crossfit_halves(member.shape[1], nonmember.shape[1], seed)
    rng = np.random.default_rng(permutation_seed)
    on_a = _permuted_half_aucs(member, nonmember, halves[0], rng, count)
    on_b = _permuted_half_aucs(member, nonmember, halves[1], rng, count)
    choice_a, direction_a = _choose(on_a)
    choice_b, direction_b = _choose(on_b)
    permuted = (_oriented(on_b, choice_a, direction_a)
                + _oriented(on_a, choice_b, direction_b)) / 2.0
    return float((1 + np.sum(permuted >= observed - 1e-12)) / (count + 1))


def smallest_pvalue(n_members: int, n_nonmembers: int, n_permutations: int) -> float:
    """The smallest value :func:`crossfit_pvalue` can take at these sample sizes: the larger
    of 1/(n_permutations + 1) and one over the number of distinct labelings of the two halves
    (with few samples, many permutations repeat the observed labeling and tie with it).

    >>> smallest_pvalue(6, 6, 9999)  # halves of 3 + 3: 20 × 20 labelings
    0.0025
    """
    halves = crossfit_halves(n_members, n_nonmembers)
    labelings = 1
    for members, nonmembers in halves:
        labelings *= math.comb(members.size + nonmembers.size, members.size)
    return max(1.0 / (_count(n_permutations, "n_permutations", 1) + 1), 1.0 / labelings)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control under any dependence).

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    values = [float(p) for p in p_values]
    if any(not 0.0 <= p <= 1.0 for p in values):
        raise MetricInputError(f"p-values must lie in [0, 1], got {values}")
    order = sorted(range(len(values)), key=lambda i: values[i])
    adjusted = [0.0] * len(values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(values) - rank) * values[index]))
        adjusted[index] = running
    return adjusted


# ---------------------------------------------------------------------------------------------
# only estimable TPRs (docs/verdict-maths.md)


def _alpha(alpha: float) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(f"alpha must be a false-positive rate in (0, 1], got "
                               f"{alpha!r}") from exc
    if not 0.0 < value <= 1.0:  # also rejects NaN
        raise MetricInputError(f"alpha must be a false-positive rate in (0, 1] (e.g. 0.01 for "
                               f"TPR at 1% FPR), got {alpha!r}")
    return value


def _needed_nonmembers(alpha: float) -> int:
    # ⌈1/α⌉, forgiving the last-bit error of decimal rates (1/0.001 is 1000.0000000000001)
    return math.ceil(1.0 / alpha * (1.0 - 1e-12))


def estimable_fpr(alpha: float, n_cal_nonmembers: int, n_test_nonmembers: int) -> bool:
    """Whether TPR at FPR ``alpha`` can be estimated: both halves hold >= ⌈1/α⌉ non-members.

    Why both. *Calibration half*: a threshold set on n non-members at FPR ≤ α lets
    ⌊αn⌋ of them through, and its expected FPR on new non-members is up to (⌊αn⌋ + 1)/(n + 1)
    (exchangeability): it overshoots α by up to 1/(n + 1). With n ≥ 1/α the overshoot is at
    most α, so the threshold targets α to within a factor of two; with fewer (24 non-members at
    α = 1%: ⌊αn⌋ = 0) the only threshold is "above every non-member", the same at every
    α < 1/n, which is why TPR@1% equalled TPR@0.1% in every row. *Test half*: one false
    positive among m non-members is an FPR of 1/m; with m ≥ 1/α the achieved FPR is measured
    at a resolution of α or finer, so "FPR ≤ α" can be checked at all.
    """
    level = _alpha(alpha)
    need = _needed_nonmembers(level)
    return (_count(n_cal_nonmembers, "n_cal_nonmembers", 0) >= need
            and _count(n_test_nonmembers, "n_test_nonmembers", 0) >= need)


def lowest_estimable_fpr(n_cal_nonmembers: int, n_test_nonmembers: int) -> float:
    """The smallest α that :func:`estimable_fpr` accepts: 1 / min(n_cal, n_test)."""
    smallest = min(_count(n_cal_nonmembers, "n_cal_nonmembers", 1),
                   _count(n_test_nonmembers, "n_test_nonmembers", 1))
    return 1.0 / smallest


def _log_comb(n: int) -> FloatArray:
    """log C(n, k) for k = 0..n, from cumulative sums of log i (exact to rounding)."""
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])
    result: FloatArray = log_factorial[n] - log_factorial - log_factorial[::-1]
    return result


def _pmf(log_comb: FloatArray, p: float) -> FloatArray:
    n = log_comb.size - 1
    k = np.arange(n + 1, dtype=np.float64)
    result: FloatArray = np.exp(log_comb + k * math.log(p) + (n - k) * math.log1p(-p))
    return result


def _bisect(function: Callable[[float], float], target: float) -> float:
    """Root in (0, 1) of an increasing ``function(p) = target`` by bisection to ~1e-15."""
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2.0
        if function(middle) < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95,
                    ) -> tuple[float, float]:
    """Exact (Clopper–Pearson) binomial CI: the bounds where one binomial tail is (1 − c)/2.

    Computed by bisection on exact binomial tails, so no scipy is needed at run time.
    """
    n = _count(trials, "trials", 1)
    k = _count(successes, "successes", 0)
    if k > n:
        raise MetricInputError(f"successes ({k}) cannot exceed trials ({n})")
    _bootstrap_options(auc, 1, confidence)  # validates confidence
    tail = (1.0 - float(confidence)) / 2.0

    log_comb = _log_comb(n)

    # Bisection never evaluates p = 0 or 1 (midpoints of [0, 1]), so the logs are finite.
    def upper_tail(p: float) -> float:  # P(X >= k), increasing in p
        return float(_pmf(log_comb, p)[k:].sum())

    def lower_tail(p: float) -> float:  # P(X <= k), decreasing in p
        return float(_pmf(log_comb, p)[:k + 1].sum())

    low = 0.0 if k == 0 else _bisect(upper_tail, tail)
    high = 1.0 if k == n else _bisect(lambda p: -lower_tail(p), -tail)
    return low, high


@dataclass(frozen=True)
class TprEstimate:
    """TPR at a target FPR, thresholds from calibration halves, counts from test halves."""

    alpha: float
    """The target false-positive rate."""
    estimable: bool
    reason: str | None
    """Why no TPR is given (None when estimable)."""
    tpr: float | None
    """Pooled test-half TPR (true positives of both test halves / all members)."""
    achieved_fpr: float | None
    """Pooled test-half FPR actually reached by the calibrated thresholds."""
    tpr_ci: tuple[float, float] | None
    """Clopper–Pearson CI over the pooled test counts."""
    fpr_ci: tuple[float, float] | None
    true_positives: int | None
    false_positives: int | None
    n_members: int
    n_nonmembers: int
    fallback: TprEstimate | None = None
    """When ``alpha`` is not estimable: the estimate at :func:`lowest_estimable_fpr`."""


def tpr_at_fpr_crossfit(members: Candidates, nonmembers: Candidates, alpha: float,
                        seed: int = 0, *, confidence: float = 0.95) -> TprEstimate:
    """TPR at FPR ``alpha`` with the threshold chosen where it is not measured.

    Split as :func:`crossfit_auc` (same ``seed``: the same halves and the same learned
    (candidate, direction) per calibration half). On each calibration half the threshold of
    :func:`threshold_at_fpr` at ``alpha`` is taken on the oriented chosen scores and applied to
    the other half; true / false positives of the two test halves are pooled, so each sample is
    counted once, and the Clopper–Pearson CIs are over those pooled counts (conditionally on
    the two thresholds the counts are sums of two binomials, whose spread is at most the
    single binomial's, so the exact interval stays conservative).

    ``alpha`` is estimated only when :func:`estimable_fpr` holds for both swaps; otherwise the
    result carries ``tpr=None``, the reason, and a ``fallback`` estimate at the lowest estimable
    FPR.
    """
    level = _alpha(alpha)
    _, member, nonmember, _ = _candidates(members, nonmembers, None)
    halves = crossfit_halves(member.shape[1], nonmember.shape[1], seed)
    n_m, n_n = member.shape[1], nonmember.shape[1]
    sizes = (halves[0][1].size, halves[1][1].size)
    if not estimable_fpr(level, min(sizes), min(sizes)):
        lowest = lowest_estimable_fpr(*sizes)
        reason = (f"FPR {level:g} needs >= {_needed_nonmembers(level)} non-members in each "
                  f"half; the halves hold {sizes[0]} and {sizes[1]} (lowest estimable FPR "
                  f"{lowest:.3g})")
        fallback = tpr_at_fpr_crossfit(members, nonmembers, lowest, seed, confidence=confidence)
        return TprEstimate(level, False, reason, None, None, None, None, None, None, n_m, n_n,
                           fallback)
    _, (c_a, d_a, c_b, d_b), _, _ = _crossfit_rows(member, nonmember, halves,
                                                   _identity_draws(halves))
    tp = fp = 0
    for (cal, test), choice, direction in (((halves[0], halves[1]), c_a[0], d_a[0]),
                                           ((halves[1], halves[0]), c_b[0], d_b[0])):
        m, n = direction * member[choice], direction * nonmember[choice]
        _, threshold = _operating_point(m[cal[0]], n[cal[1]], level)
        tp += int(np.count_nonzero(m[test[0]] >= threshold))
        fp += int(np.count_nonzero(n[test[1]] >= threshold))
    return TprEstimate(level, True, None, tp / n_m, fp / n_n,
                       clopper_pearson(tp, n_m, confidence), clopper_pearson(fp, n_n, confidence),
                       tp, fp, n_m, n_n)
