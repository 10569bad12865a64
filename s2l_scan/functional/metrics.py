"""Membership-inference metrics on attack scores: AUC, the exact ROC, TPR at low FPR,
balanced accuracy and bootstrap confidence intervals.

Convention: a higher score means "more likely a training member"; a sample is predicted a
member when its score is ``>= threshold``. Pure numpy, so the report and the tests can use it
without torch. Bad arguments raise ValueError; callers passing the user's input validate it
first (:func:`s2l_scan.errors.checked`) so the user gets a UsageError.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt

__all__ = [
    "auc",
    "best_balanced_accuracy",
    "bootstrap_ci",
    "calibration_split",
    "paired_bootstrap_ci",
    "roc_curve",
    "threshold_at_fpr",
    "tpr_at_fpr",
    "tpr_fpr_at_threshold",
]

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
        raise ValueError(f"{name} must be an array of numbers, got {type(values).__name__} "
                         f"({exc})") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array with one score per sample, got shape "
                         f"{arr.shape}; flatten or select the score column first")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; every metric needs at least one member and one "
                         f"nonmember score")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name} holds {bad.size} non-finite score(s) (first at index "
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
        raise ValueError(f"target_fpr must be a number in [0, 1], got {target_fpr!r}") from exc
    if not 0.0 <= target <= 1.0:  # also rejects NaN
        raise ValueError(f"target_fpr must be in [0, 1] (e.g. 0.01 for TPR at 1% FPR), "
                         f"got {target_fpr!r}")
    return target


def _bootstrap_options(statistic: object, n_resamples: int, confidence: float) -> int:
    """Validate the shared bootstrap options; returns n_resamples as an int."""
    if not callable(statistic):
        raise ValueError(f"statistic must be a callable(member, nonmember) -> float, got "
                         f"{type(statistic).__name__}")
    try:
        count = operator.index(n_resamples)
    except TypeError as exc:
        raise ValueError(f"n_resamples must be an integer, got {n_resamples!r}") from exc
    if count < 1:
        raise ValueError(f"n_resamples must be >= 1 (1000 is usual), got {count}")
    try:
        level = float(confidence)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}") from exc
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence must be in (0, 1) (e.g. 0.95), got {confidence!r}")
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
        raise ValueError(f"threshold must be a number, got {threshold!r}") from exc
    if math.isnan(cut):
        raise ValueError("threshold is NaN; use +inf to predict no members, -inf to predict all")
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
        raise ValueError(f"statistic returned NaN on {nan} of {values.size} bootstrap resamples; "
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
        raise ValueError(f"paired bootstrap needs the base and probe scores aligned per sample: "
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
        raise ValueError(f"n must be an integer sample count, got {n!r}") from exc
    if size < 2:
        raise ValueError(f"calibration_split needs n >= 2 so both halves are non-empty, got {size}")
    permutation = np.random.default_rng(seed).permutation(size).astype(np.int64)
    half = size // 2
    return np.sort(permutation[:half]), np.sort(permutation[half:])
