"""The test of an attack beyond the blind score (functional/beyond_blind.py): its statistic
against sklearn within strata, its null rate, its power, and the blind scores it reads."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from s2l_scan.baselines import blind as B
from s2l_scan.functional.beyond_blind import beyond_blind


def _shifted(rng: np.random.Generator, n: int, memory: float) -> tuple[np.ndarray, ...]:
    """Members shifted on a blind feature; the attack reads the feature (so it is confounded)
    plus ``memory`` times the label (what the model adds)."""
    labels = np.r_[np.ones(n), np.zeros(n)]
    blind = rng.normal(size=2 * n) + 1.0 * labels
    attack = blind + rng.normal(scale=0.3, size=2 * n) + memory * labels
    return attack[:n], attack[n:], blind[:n], blind[n:]


def test_the_statistic_is_the_pair_weighted_auc_within_strata() -> None:
    rng = np.random.default_rng(0)
    am, an, bm, bn = _shifted(rng, 40, 0.5)
    result = beyond_blind(am, an, bm, bn, strata=4, n_resamples=10)
    attack, blind = np.r_[am, an], np.r_[bm, bn]
    labels = np.r_[np.ones(40), np.zeros(40)]
    edges = np.sort(blind)[[20, 40, 60]]  # 4 equal-count bins of 20 (no ties)
    bins = np.searchsorted(edges, blind, side="right")
    weights, aucs = [], []
    for b in range(4):
        held = labels[bins == b]
        if 0 < held.sum() < held.size:
            weights.append(held.sum() * (held.size - held.sum()))
            aucs.append(roc_auc_score(held, attack[bins == b]))
    assert result.auc == pytest.approx(np.average(aucs, weights=weights), abs=1e-12)
    assert result.strata == len(aucs)


def test_an_attack_that_only_reads_the_shift_is_rarely_called_more() -> None:
    # 200 independent draws, each attack a function of the blind score plus noise: the
    # within-stratum test rejects at 5% in ≈ 5% of them (coarse strata leave a little residue)
    rejected = [beyond_blind(*_shifted(np.random.default_rng(seed), 48, 0.0), n_resamples=400,
                             seed=seed, strata=8).p_value <= 0.05 for seed in range(200)]
    assert np.mean(rejected) <= 0.10


def test_memory_beyond_the_shift_is_seen() -> None:
    result = beyond_blind(*_shifted(np.random.default_rng(1), 48, 1.0), n_resamples=999)
    assert result.p_value <= 0.01 and result.auc > 0.7


def test_blind_baseline_keeps_its_out_of_fold_scores() -> None:
    rng = np.random.default_rng(3)
    members = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    nonmembers = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    result = B.blind_baseline(members, nonmembers, n_resamples=50)
    scores = np.asarray(result.scores)
    assert scores.size == 24
    assert roc_auc_score(np.r_[np.ones(12), np.zeros(12)], scores) == pytest.approx(result.auc)


@pytest.mark.parametrize("args", [([1, 2], [3], [1, 2], [3, 4]),
                                  ([1, np.nan], [3], [1, 2], [3]),
                                  ([1, 2], [3, 4], [1, 1], [5, 5])])
def test_bad_input_raises(args: tuple[list[float], ...]) -> None:
    with pytest.raises(ValueError):
        beyond_blind(*args, strata=2)
