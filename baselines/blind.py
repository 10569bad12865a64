"""The blind baseline: a model-free member-vs-non-member classifier (distribution-shift control).

If images alone (no model) separate members from non-members, an attack's AUC measures the
audit set's distribution shift, not the model's memory (CopyMark: shift alone moved AUC from
0.66 to 0.75). s2l-scan reports this AUC beside every attack and flags results it explains.

The classifier is ridge-regularised least squares on standardised, downsampled pixels, scored
out-of-fold with stratified k-fold cross-validation: simple, deterministic, and hard to overfit
on the few hundred images an audit set usually has.
"""

from __future__ import annotations

import numpy as np
import torch

from s2l_scan.functional.metrics import auc


def downsample(pixels: np.ndarray, size: int = 8) -> np.ndarray:
    """(N, H, W, 3) uint8 → (N, size·size·3) float features by area averaging."""
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255.0
    small = torch.nn.functional.adaptive_avg_pool2d(tensor, size)
    return small.flatten(1).numpy().astype(np.float64)


def _stratified_folds(labels: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    fold_of = np.empty(len(labels), dtype=np.int64)
    for value in (0, 1):
        where = np.flatnonzero(labels == value)
        fold_of[rng.permutation(where)] = np.arange(len(where)) % folds
    return fold_of


def blind_scores(member_pixels: np.ndarray, nonmember_pixels: np.ndarray, *, folds: int = 5,
                 ridge: float = 10.0, size: int = 8, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold classifier scores (members, non-members); higher = predicted member."""
    features = np.concatenate([downsample(member_pixels, size), downsample(nonmember_pixels, size)])
    labels = np.r_[np.ones(len(member_pixels)), np.zeros(len(nonmember_pixels))]
    folds = max(2, min(folds, len(member_pixels), len(nonmember_pixels)))
    fold_of = _stratified_folds(labels, folds, np.random.default_rng(seed))
    scores = np.empty(len(labels))
    for fold in range(folds):
        train, test = fold_of != fold, fold_of == fold
        mean, std = features[train].mean(0), features[train].std(0) + 1e-6
        x = np.c_[(features[train] - mean) / std, np.ones(train.sum())]
        gram = x.T @ x + ridge * np.eye(x.shape[1])
        weights = np.linalg.solve(gram, x.T @ (labels[train] - 0.5))
        scores[test] = np.c_[(features[test] - mean) / std, np.ones(test.sum())] @ weights
    return scores[labels == 1], scores[labels == 0]


def blind_auc(member_pixels: np.ndarray, nonmember_pixels: np.ndarray, *, folds: int = 5,
              ridge: float = 10.0, size: int = 8, seed: int = 0) -> float:
    """Cross-validated AUC of the blind classifier (0.5 = no distribution shift found).

    The options are :func:`blind_scores`'s.
    """
    members, nonmembers = blind_scores(member_pixels, nonmember_pixels, folds=folds,
                                       ridge=ridge, size=size, seed=seed)
    return auc(members, nonmembers)
