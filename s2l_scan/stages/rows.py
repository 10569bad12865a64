"""Result rows from scores: the metrics of one (attack, probe, domain), measured, not judged.

Every figure an attacker could tune is cross-fitted (docs/verdict-maths.md):
the score's direction and the variant among the attack's candidates are chosen on one half of
the samples and measured on the other, halves swapped. TPRs are reported only at FPRs the
calibration half can estimate.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from s2l_scan.attack import Attack
from s2l_scan.checks import calibrated
from s2l_scan.config import ScanConfig
from s2l_scan.errors import ScanError
from s2l_scan.functional import family, metrics
from s2l_scan.report.model import ResultRow

Candidates = dict[str, np.ndarray]
"""Scores per candidate: key "" is the attack's own score, other keys its variants."""

TPR_TARGETS = (0.01, 0.001)
"""The FPRs of the report's two TPR columns."""


def result_row(attack: Attack, domain: str, members: Candidates, nonmembers: Candidates,
               blind: Any, config: ScanConfig, *,
               calibration: dict[str, str] | None = None) -> ResultRow:
    """The row of one attack's scores on one domain (or ``pooled``); ``blind`` is the domain's
    :class:`~s2l_scan.baselines.blind.BlindResult`. With ``calibration`` (the base model the
    scores were calibrated on) the row is the attack's calibrated variant, ``NAME+base``, and
    its settings say so."""
    from s2l_scan.baselines.blind import confounded

    name = attack.name if calibration is None else calibrated(attack.name)
    settings = attack.describe() if calibration is None else {**attack.describe(),
                                                              "calibration": calibration}
    for key in members:
        check_finite(f"{name}{f' ({key})' if key else ''}", domain, members[key],
                     nonmembers[key])
    fit = metrics.crossfit_auc(members, nonmembers, config.seed, default="")
    is_confounded = confounded(fit.auc, blind)
    if is_confounded:
        settings = {**settings, "beyond_blind": _beyond_blind(members[""], nonmembers[""],
                                                              blind, config.seed)}
    # the display interval: the bootstrap's, widened to a rank-based one at the smaller class
    # size, so a small audit never prints a zero-width [1.00, 1.00] (family.auc_interval)
    interval = family.auc_interval(members, nonmembers, config.seed,
                                   bootstrap_seed=config.resample_seed,
                                   n_resamples=config.bootstrap, min_per_class=2)
    assert interval is not None  # issued from 2 per class, the fewest a row has
    ci = interval
    estimates = [metrics.tpr_at_fpr_crossfit(members, nonmembers, alpha, config.seed)
                 for alpha in TPR_TARGETS]
    return ResultRow(
        attack=name, probe=None, domain=domain, auc=fit.auc, auc_ci=ci,
        auc_raw=fit.auc_raw,
        tpr_at_1pct_fpr=estimates[0].tpr, tpr_at_01pct_fpr=estimates[1].tpr,
        asr=_crossfit_asr(members, nonmembers, fit, config.seed),
        blind_auc=blind.auc, blind_auc_ci=blind.ci, confounded=is_confounded,
        n_members=len(members[""]), n_nonmembers=len(nonmembers[""]),
        member_scores=[float(s) for s in members[""]],
        nonmember_scores=[float(s) for s in nonmembers[""]],
        settings=settings,
        choices=[asdict(choice) for choice in fit.choices],
        tpr_estimates=[asdict(estimate) for estimate in estimates],
        variant_auc={key: metrics.auc(members[key], nonmembers[key])
                     for key in sorted(members) if key},
        variant_scores={key: {"members": [float(s) for s in members[key]],
                              "nonmembers": [float(s) for s in nonmembers[key]]}
                        for key in sorted(members) if key},
        unstable=fit.unstable,
        p_value=metrics.crossfit_pvalue(members, nonmembers, config.seed,
                                        permutation_seed=config.resample_seed,
                                        n_permutations=config.permutations),
    )


def _crossfit_asr(members: Candidates, nonmembers: Candidates, fit: metrics.CrossFit,
                  seed: int) -> float:
    """Balanced accuracy with the direction, variant and threshold of each calibration half
    applied to the other half; true and false positives pooled over the two test halves."""
    halves = metrics.crossfit_halves(len(members[""]), len(nonmembers[""]), seed)
    tp = fp = 0
    for (calibration, test), choice in zip(((halves[0], halves[1]), (halves[1], halves[0])),
                                           fit.choices, strict=True):
        m = choice.direction * np.asarray(members[choice.candidate], dtype=float)
        n = choice.direction * np.asarray(nonmembers[choice.candidate], dtype=float)
        _, threshold = metrics.best_balanced_accuracy(m[calibration[0]], n[calibration[1]])
        tp += int((m[test[0]] >= threshold).sum())
        fp += int((n[test[1]] >= threshold).sum())
    return (tp / len(m) + 1 - fp / len(n)) / 2


def probe_row(attack: Attack, base: ResultRow, label: str, members: Candidates,
              nonmembers: Candidates, blind: Any, config: ScanConfig,
              details: dict[str, Any], *, calibration: dict[str, str] | None = None
              ) -> ResultRow:
    """A probe's row on the same samples as ``base`` (the released model's row), with
    Δ = calibrated AUC(probe) − calibrated AUC(released), each direction learned on its own
    calibration half, and its paired bootstrap CI. With ``calibration`` the scores are the
    copy's minus the base model's, the row is ``NAME+base``, and ``base`` is the released
    model's ``NAME+base`` row."""
    row = result_row(attack, base.domain, members, nonmembers, blind, config,
                     calibration=calibration)
    row.probe = label
    released_members, released_nonmembers = base.candidates()
    delta = metrics.crossfit_delta(members, nonmembers, released_members, released_nonmembers,
                                   config.seed, bootstrap_seed=config.resample_seed,
                                   n_resamples=config.bootstrap)
    row.delta_auc, row.delta_auc_ci, row.delta_p_value = delta.delta, delta.ci, delta.p_value
    row.settings = {**row.settings, "probe": details}
    return row


def check_finite(attack: str, domain: str, *scores: np.ndarray) -> None:
    """A scan error when an attack's scores are not all finite: nothing can be judged."""
    if not all(np.isfinite(s).all() for s in scores):
        raise ScanError(f"attack {attack} on {domain}: the model produced non-finite scores "
                        "(overflow in the UNet?); nothing can be judged from them.")


def _beyond_blind(members: np.ndarray, nonmembers: np.ndarray, blind: Any, seed: int
                  ) -> dict[str, Any]:
    """A confounded row's caution: the attack's AUC within strata of the blind score and its
    permutation p-value (:func:`s2l_scan.functional.beyond_blind.beyond_blind`), worded."""
    from s2l_scan.baselines.blind import BEYOND_BLIND_CAUTION
    from s2l_scan.functional.beyond_blind import beyond_blind

    scores = np.asarray(blind.scores, dtype=float)
    if scores.size != len(members) + len(nonmembers):
        return {"caution": "the blind scores were not kept: no test beyond them"}
    test = beyond_blind(members, nonmembers, scores[:len(members)], scores[len(members):],
                        seed=seed)
    return {"auc_within_blind_strata": round(test.auc, 6), "p_value": round(test.p_value, 6),
            "strata": test.strata,
            "caution": BEYOND_BLIND_CAUTION.format(auc=test.auc, p=test.p_value,
                                                   strata=test.strata)}
