"""Does an attack tell members apart beyond what the blind classifier already does? (pure)

A confounded row (:func:`s2l_scan.baselines.blind.confounded`) says a model-free classifier
separates these members from these non-members about as well as the attack: the attack may
measure the shift. It may also measure memory on top of it. The test here compares members
with non-members only where the blind classifier scores them alike: the samples are cut into
``strata`` equal-count bins of the blind score, the attack's AUC is taken within each bin and
averaged, weighted by the bin's member × non-member pairs (the stratified Mann–Whitney
statistic), and its p-value comes from permuting the labels *within* bins, which keeps
whatever the blind score explains and breaks only what the attack adds. A small p-value says
the attack separates members beyond the blind score's strata; a large one says that, at this
size, nothing is seen beyond them (not that nothing is there: a shift the blind score measures
coarsely leaves residue inside each bin, so this is a caution, not a verdict).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["BeyondBlind", "beyond_blind"]


@dataclass(frozen=True)
class BeyondBlind:
    """The attack's AUC within strata of the blind score, and its permutation p-value."""

    auc: float
    p_value: float
    strata: int
    """Bins that held both classes (only those count)."""


def _pair_counts(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.float64]
                 ) -> tuple[npt.NDArray[np.float64], float]:
    """Per label row (P, N): Mann–Whitney U of the positives (ties ½), and the pair count."""
    ranks = np.empty(scores.size)
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    _, first, counts = np.unique(ordered, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(average, counts)
    positives = labels.sum(1)
    u = labels @ ranks - positives * (positives + 1) / 2.0
    return u, float(positives[0] * (scores.size - positives[0]))


def beyond_blind(member_scores: npt.ArrayLike, nonmember_scores: npt.ArrayLike,
                 member_blind: npt.ArrayLike, nonmember_blind: npt.ArrayLike, *,
                 strata: int = 4, n_resamples: int = 2000, seed: int = 0) -> BeyondBlind:
    """The attack's stratified AUC over ``strata`` equal-count bins of the blind score, and
    the two-sided p-value (an AUC this far from ½ or further, either way) of the within-bin label
    permutation test, with the +1 correction. ValueError on mismatched or non-finite input."""
    attack = np.r_[np.asarray(member_scores, float), np.asarray(nonmember_scores, float)]
    blind = np.r_[np.asarray(member_blind, float), np.asarray(nonmember_blind, float)]
    n_m = np.asarray(member_scores).size
    if attack.shape != blind.shape or attack.ndim != 1:
        raise ValueError("give one blind score per attack score, members and non-members alike")
    if not (np.isfinite(attack).all() and np.isfinite(blind).all()):
        raise ValueError("attack and blind scores must be finite")
    if not 1 <= strata <= attack.size or n_resamples < 1:
        raise ValueError(f"strata must be in [1, {attack.size}] and n_resamples >= 1")
    labels = np.r_[np.ones(n_m), np.zeros(attack.size - n_m)]
    bins = np.zeros(attack.size, dtype=np.int64)
    bins[np.argsort(blind, kind="stable")] = np.arange(attack.size) * strata // attack.size
    rng = np.random.default_rng(seed)
    total_u, total_pairs, used = np.zeros(n_resamples + 1), 0.0, 0
    for b in range(strata):
        where = np.flatnonzero(bins == b)
        held = labels[where]
        if held.min() == held.max():
            continue  # one class only: no pair to compare
        rows = np.vstack([held, rng.permuted(np.tile(held, (n_resamples, 1)), axis=1)])
        u, pairs = _pair_counts(attack[where], rows)
        total_u += u
        total_pairs += pairs
        used += 1
    if not used:
        raise ValueError("no stratum of the blind score holds both members and non-members")
    aucs = total_u / total_pairs
    extreme = np.abs(aucs[1:] - 0.5) >= abs(aucs[0] - 0.5) - 1e-12
    return BeyondBlind(auc=float(aucs[0]), p_value=float((1 + extreme.sum()) / (n_resamples + 1)),
                       strata=used)
