"""The blind baseline: a model-free member-vs-non-member classifier (distribution-shift control).

If images alone (no model) separate members from non-members, an attack's AUC measures the
audit set's distribution shift, not the model's memory (CopyMark: shift alone moved AUC from
0.66 to 0.75). s2l-scan reports this AUC beside every attack and flags results it explains.

The classifier (:func:`blind_baseline`) is kernel ridge on standardised feature groups — pixels
at two scales, high-frequency energy, colour and caption statistics — scored out-of-fold with
stratified k-fold cross-validation: simple, deterministic, and hard to overfit on the few
hundred images an audit set usually has.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from s2l_scan.functional.metrics import MetricInputError, auc, bootstrap_ci

# The sentence lives with the report texts (torch-free: renderers of a saved report read it);
# re-exported here, where the rule it explains lives.
from s2l_scan.report.remedies import CONFOUNDED_MEANING as CONFOUNDED_MEANING


def _stratified_folds(labels: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    fold_of = np.empty(len(labels), dtype=np.int64)
    for value in (0, 1):
        where = np.flatnonzero(labels == value)
        fold_of[rng.permutation(where)] = np.arange(len(where)) % folds
    return fold_of


# ---------------------------------------------------------------------------------------------
# The blind baseline (docs/verdict-maths.md): several kinds of shift, a CI, and the meaning of a
# confounded row (CONFOUNDED_MEANING: report/remedies.py).

BEYOND_BLIND_CAUTION = (
    "A caution, not a verdict: within strata of the blind score (members and non-members the "
    "blind classifier scores alike) the attack's AUC is {auc:.3f} (permutation p = {p:.3g}, "
    "{strata} strata); a small p says the attack sees more than the shift, a large one that "
    "nothing more is seen at this size.")
"""How a confounded row's test of the attack beyond the blind score reads."""

# Comparable effects: the blind effect is at least this fraction of the attack's (see confounded).
COMPARABLE_FRACTION = 0.5

_HASH_BUCKETS = 16


@dataclass(frozen=True)
class BlindResult:
    """Cross-validated AUC of the model-free classifier, with its bootstrap CI."""

    auc: float
    ci: tuple[float, float]
    features_used: tuple[str, ...]
    """Feature groups the classifier saw, e.g. ("pixels-8x8", ..., "captions")."""
    n_members: int
    n_nonmembers: int
    scores: tuple[float, ...] = ()
    """The out-of-fold blind scores, members first, in the order given (what the attack's
    scores are compared within: :func:`s2l_scan.functional.beyond_blind.beyond_blind`)."""


def _images(pixels: np.ndarray, name: str) -> np.ndarray:
    """(N, H, W, C) → contiguous float32 (N, C, H, W) in [0, 1] (integers read as 0–255).

    Channels first, so every per-image reduction runs over contiguous memory.
    """
    arr = np.asarray(pixels)
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3) or arr.shape[1] < 3 or arr.shape[2] < 3:
        raise MetricInputError(f"{name} must be images shaped (N, H, W, 3) or (N, H, W, 1) "
                               f"with H, W >= 3, got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise MetricInputError(f"{name} holds {arr.shape[0]} image(s); the blind baseline "
                               f"needs >= 2 per class to cross-validate")
    if arr.dtype.kind in "iub":
        scaled = arr.astype(np.float32) / np.float32(255.0)
    elif arr.dtype.kind == "f" and np.all(np.isfinite(arr)):
        scaled = arr.astype(np.float32)
    else:
        raise MetricInputError(f"{name} must hold finite numbers (uint8 0–255 or floats), got "
                               f"dtype {arr.dtype}")
    return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2))


def _block_means(images: np.ndarray, size: int) -> np.ndarray:
    """Area means over a size × size grid of (near-)equal blocks, as adaptive average pooling
    (torch's bins: rows ⌊i·H/size⌋ to ⌈(i+1)·H/size⌉)."""
    n, channels, height, width = images.shape
    if height % size == 0 and width % size == 0:
        blocks = images.reshape(n, channels, size, height // size, size, width // size)
        return blocks.mean((3, 5), dtype=np.float64).reshape(n, -1)
    integral = np.zeros((n, channels, height + 1, width + 1))
    integral[:, :, 1:, 1:] = images.cumsum(2, dtype=np.float64).cumsum(3)
    r0 = np.arange(size) * height // size
    r1 = -(-(np.arange(size) + 1) * height // size)
    c0 = np.arange(size) * width // size
    c1 = -(-(np.arange(size) + 1) * width // size)
    sums = (integral[:, :, r1][:, :, :, c1] - integral[:, :, r0][:, :, :, c1]
            - integral[:, :, r1][:, :, :, c0] + integral[:, :, r0][:, :, :, c0])
    area = (r1 - r0)[:, None] * (c1 - c0)[None, :]
    return (sums / area).reshape(n, -1)


def _per_image_mean(values: np.ndarray) -> np.ndarray:
    """(N, C, H, W) → (N, C) mean over each image plane, accumulated in float64."""
    return values.reshape(*values.shape[:2], -1).mean(-1, dtype=np.float64)


def _high_frequency(images: np.ndarray) -> np.ndarray:
    """Per channel: mean |4-neighbour Laplacian| and mean squared (image − 3×3 box blur)."""
    core = images[:, :, 1:-1, 1:-1]
    laplacian = (4 * core - images[:, :, :-2, 1:-1] - images[:, :, 2:, 1:-1]
                 - images[:, :, 1:-1, :-2] - images[:, :, 1:-1, 2:])
    rows = images[:, :, :-2] + images[:, :, 1:-1] + images[:, :, 2:]  # separable box sum
    blur = (rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]) / np.float32(9.0)
    return np.concatenate([_per_image_mean(np.abs(laplacian)),
                           _per_image_mean((core - blur) ** 2)], axis=1)


def _colour(images: np.ndarray) -> np.ndarray:
    """Per-channel mean and standard deviation; mean and std of HSV saturation."""
    brightest, darkest = images.max(1, keepdims=True), images.min(1, keepdims=True)
    saturation = (brightest - darkest) / np.maximum(brightest, np.float32(1e-6))
    mean = _per_image_mean(images)
    spread = np.sqrt(np.maximum(_per_image_mean(images ** 2) - mean ** 2, 0.0))
    saturation_mean = _per_image_mean(saturation)
    saturation_spread = np.sqrt(np.maximum(
        _per_image_mean(saturation ** 2) - saturation_mean ** 2, 0.0))
    return np.concatenate([mean, spread, saturation_mean, saturation_spread], axis=1)


def _caption_features(captions: Sequence[str]) -> np.ndarray:
    """Length in words and characters, and counts of words hashed into 16 buckets (crc32, so
    the same on every run and machine, unlike Python's salted hash)."""
    rows = []
    for caption in captions:
        words = caption.lower().split()
        buckets = np.zeros(_HASH_BUCKETS)
        for word in words:
            buckets[zlib.crc32(word.encode()) % _HASH_BUCKETS] += 1
        rows.append(np.r_[len(words), len(caption), buckets])
    return np.array(rows, dtype=np.float64).reshape(len(captions), 2 + _HASH_BUCKETS)


def _captions(captions: Sequence[str] | None, count: int, name: str) -> list[str] | None:
    if captions is None:
        return None
    if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
        raise MetricInputError(f"{name} must be a sequence of strings, one per image")
    if len(captions) != count:
        raise MetricInputError(f"{name} holds {len(captions)} captions for {count} images; give "
                               f"one caption per image, in the same order")
    return list(captions)


def _features(images: np.ndarray, captions: list[str] | None) -> dict[str, np.ndarray]:
    groups = {"pixels-8x8": _block_means(images, 8), "pixels-16x16": _block_means(images, 16),
              "high-frequency": _high_frequency(images), "colour": _colour(images)}
    if captions is not None:
        groups["captions"] = _caption_features(captions)
    return groups


def blind_features(pixels: np.ndarray, captions: Sequence[str] | None = None,
                   ) -> dict[str, np.ndarray]:
    """Feature groups of the blind baseline, name → (N, d) float64 array, for (N, H, W, C)
    images (uint8, or floats in [0, 1]) and, optionally, one caption per image."""
    images = _images(pixels, "pixels")
    return _features(images, _captions(captions, len(images), "captions"))


def _hat_matrix(groups: list[np.ndarray], fold_of: np.ndarray, ridge: float) -> np.ndarray:
    """The (N, N) matrix H with out-of-fold scores = H @ labels.

    Per fold: kernel ridge regression (with an unpenalised intercept: features and labels are
    centred on the training folds) on standardised features, each group scaled by 1/√(its
    width) so every group weighs the same in the kernel: a 6-number high-frequency group is not
    drowned by 768 pixel means, and a group with nothing to say adds only its own noise. The
    scores are linear in the labels, so label permutations cost one matrix product.
    """
    n = fold_of.size
    hat = np.zeros((n, n))
    for fold in np.unique(fold_of):
        train, test = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
        parts_train, parts_test = [], []
        for features in groups:
            mean, std = features[train].mean(0), features[train].std(0)
            std = np.where(std > 1e-12, std, np.inf)  # a constant feature carries nothing
            scale = 1.0 / np.sqrt(features.shape[1])
            parts_train.append((features[train] - mean) / std * scale)
            parts_test.append((features[test] - mean) / std * scale)
        x_train, x_test = np.hstack(parts_train), np.hstack(parts_test)
        centre = np.eye(train.size) - 1.0 / train.size
        weights = np.linalg.solve(x_train @ x_train.T + ridge * np.eye(train.size), centre)
        hat[np.ix_(test, train)] = (x_test @ x_train.T) @ weights
    return hat


def _row_aucs(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mann–Whitney AUC (ties ½, by average ranks) of every row of scores (P, N) under the
    0/1 labels (P, N)."""
    rows, n = scores.shape
    order = np.argsort(scores, axis=1)
    ordered = np.take_along_axis(scores, order, axis=1)
    starts = np.ones((rows, n), dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones((rows, n), dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    position = np.broadcast_to(np.arange(n), (rows, n))
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, position, n - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((rows, n))
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    positives = labels.sum(1)
    rank_sum = (ranks * labels).sum(1)
    result: np.ndarray = ((rank_sum - positives * (positives + 1) / 2)
                          / (positives * (n - positives)))
    return result


def _within_fold_permutations(labels: np.ndarray, fold_of: np.ndarray, count: int,
                              rng: np.random.Generator) -> np.ndarray:
    """(count, N) label vectors, each permuting the labels inside every fold. Under no shift
    the samples of a fold are exchangeable given the fold's class counts, so this is an exact
    permutation test of the stratified cross-validation as run."""
    permuted = np.empty((count, labels.size))
    for fold in np.unique(fold_of):
        where = np.flatnonzero(fold_of == fold)
        permuted[:, where] = rng.permuted(np.tile(labels[where], (count, 1)), axis=1)
    return permuted


def blind_baseline(member_pixels: np.ndarray, nonmember_pixels: np.ndarray, *,
                   member_captions: Sequence[str] | None = None,
                   nonmember_captions: Sequence[str] | None = None, seed: int = 0,
                   folds: int = 5, ridge: float = 1.0, n_resamples: int = 1000,
                   confidence: float = 0.95) -> BlindResult:
    """Cross-validated AUC, with a CI, of a model-free member-vs-non-member classifier on
    pixels at 8×8 and 16×16, high-frequency energy, colour statistics and, when both caption
    lists are given, caption statistics (kernel ridge, seeded stratified k-fold).

    The CI is the stratified bootstrap percentile interval of the out-of-fold scores, widened
    where needed to the spread of the within-fold label-permutation null. Why: out-of-fold
    scores are not fixed scores — each pair of samples in different folds enters twice, once
    through each one's model — so under no shift the CV AUC's SD is ≈ √2 times what the
    bootstrap of the scores sees (measured 0.047 vs 0.030 at 192/192), and that interval
    covered 0.5 in only 86% of null draws. With the widening, the interval excludes 0.5 only if
    the exact permutation test rejects at the same level: low = min(bootstrap low, AUC − (q_hi
    − ½)), high = max(bootstrap high, AUC + (½ − q_lo)), q the permutation quantiles.

    Captions must be given for both classes or neither. ``ridge`` is the kernel ridge penalty
    on features whose groups each have unit mean squared norm per sample.
    """
    if (member_captions is None) != (nonmember_captions is None):
        raise MetricInputError("give captions for both members and non-members, or neither: "
                               "a caption shift can only be measured between the two")
    member_images = _images(member_pixels, "member_pixels")
    nonmember_images = _images(nonmember_pixels, "nonmember_pixels")
    if member_images.shape[1] != nonmember_images.shape[1]:
        raise MetricInputError(f"member and non-member images must have the same channel "
                               f"count, got {member_images.shape[1]} and "
                               f"{nonmember_images.shape[1]}")
    members = _features(member_images, _captions(member_captions, len(member_images),
                                                 "member_captions"))
    nonmembers = _features(nonmember_images, _captions(nonmember_captions,
                                                       len(nonmember_images),
                                                       "nonmember_captions"))
    names = tuple(members)
    groups = [np.concatenate([members[name], nonmembers[name]]) for name in names]
    n_m, n_n = len(member_pixels), len(nonmember_pixels)
    labels = np.r_[np.ones(n_m), np.zeros(n_n)]
    rng = np.random.default_rng(seed)
    fold_of = _stratified_folds(labels, max(2, min(folds, n_m, n_n)), rng)
    hat = _hat_matrix(groups, fold_of, ridge)
    scores = hat @ labels
    point = auc(scores[:n_m], scores[n_m:])
    boot_low, boot_high = bootstrap_ci(scores[:n_m], scores[n_m:], auc,
                                       n_resamples=n_resamples, confidence=confidence,
                                       seed=seed)
    permuted = _within_fold_permutations(labels, fold_of, n_resamples, rng)
    null = _row_aucs(permuted @ hat.T, permuted)
    tail = (1.0 - confidence) / 2.0
    q_lo, q_hi = np.quantile(null, [tail, 1.0 - tail])
    ci = (max(0.0, min(boot_low, point - (q_hi - 0.5))),
          min(1.0, max(boot_high, point + (0.5 - q_lo))))
    return BlindResult(auc=point, ci=(float(ci[0]), float(ci[1])), features_used=names,
                       n_members=n_m, n_nonmembers=n_n,
                       scores=tuple(float(s) for s in scores))


def confounded(attack_auc: float, blind: BlindResult) -> bool:
    """Whether distribution shift could explain the attack's row (pure; see CONFOUNDED_MEANING).

    Fires only when both hold. *Significant, and above chance*: the blind CI lies wholly above
    0.5. One-sided, because a blind classifier is trained to score members high: one below
    chance has found no shift that tells members apart, only cross-validation's anti-correlated
    folds (under no shift an out-of-fold AUC sits below ½ about as often as above), so it can
    explain no attack. Two-sided, a null audit tripped it in 8.0% of draws at 48/48 (and flagged
    a real leak, loss AUC 0.977, through a blind AUC of 0.199); one-sided, in about half that
    (benchmarks/confounded_null.py). *Comparable*: the attack's effect is its distance from
    chance, |AUC − 0.5|, so a sign-flipped attack (AUC 0.25) is as strong as one at 0.75; the
    blind effect, blind AUC − 0.5, must be at least half of it. Half, because the two
    classifiers see the data differently and their AUCs do not add: a shift that alone
    separates half as far as the attack can plausibly account for much of it (CopyMark: shift
    alone moved an AUC from 0.66 to 0.75), while a far weaker shift cannot.
    """
    try:
        value = float(attack_auc)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(f"attack_auc must be a number in [0, 1], got {attack_auc!r}") \
            from exc
    if not 0.0 <= value <= 1.0:
        raise MetricInputError(f"attack_auc must be in [0, 1], got {attack_auc!r}")
    above_chance = blind.ci[0] > 0.5
    return above_chance and blind.auc - 0.5 >= COMPARABLE_FRACTION * abs(value - 0.5)
