"""Result rows from scores: the metrics of one (attack, probe, domain), measured, not judged."""

from __future__ import annotations

from typing import Any

import numpy as np

from s2l_scan.attack import Attack
from s2l_scan.config import ScanConfig
from s2l_scan.errors import ScanError
from s2l_scan.functional import metrics
from s2l_scan.report.model import ResultRow


def result_row(attack: Attack, domain: str, members: np.ndarray, nonmembers: np.ndarray,
               blind: float, config: ScanConfig) -> ResultRow:
    """The row of one attack's scores on one domain (or ``pooled``) of the released model."""
    auc = metrics.auc(members, nonmembers)
    ci = metrics.bootstrap_ci(members, nonmembers, metrics.auc, n_resamples=config.bootstrap,
                              seed=config.resample_seed)
    calibrated = _calibrated(members, nonmembers, config.seed)
    return ResultRow(
        attack=attack.name, probe=None, domain=domain, auc=auc, auc_ci=ci,
        tpr_at_1pct_fpr=calibrated["tpr@0.01"], tpr_at_01pct_fpr=calibrated["tpr@0.001"],
        asr=calibrated["asr"], blind_auc=blind,
        confounded=bool(blind >= auc - config.confound_margin),
        n_members=len(members), n_nonmembers=len(nonmembers),
        member_scores=[float(s) for s in members],
        nonmember_scores=[float(s) for s in nonmembers],
        settings=attack.describe(),
    )


def _calibrated(members: np.ndarray, nonmembers: np.ndarray, seed: int) -> dict[str, float]:
    """Thresholds chosen on a calibration half, numbers measured on the disjoint test half."""
    m_cal, m_test = metrics.calibration_split(len(members), seed=seed)
    n_cal, n_test = metrics.calibration_split(len(nonmembers), seed=seed + 1)
    out = {}
    for target in (0.01, 0.001):
        threshold = metrics.threshold_at_fpr(members[m_cal], nonmembers[n_cal], target)
        tpr, _ = metrics.tpr_fpr_at_threshold(members[m_test], nonmembers[n_test], threshold)
        out[f"tpr@{target}"] = tpr
    _, threshold = metrics.best_balanced_accuracy(members[m_cal], nonmembers[n_cal])
    tpr, fpr = metrics.tpr_fpr_at_threshold(members[m_test], nonmembers[n_test], threshold)
    out["asr"] = (tpr + 1 - fpr) / 2
    return out


def scored_row(attack: Attack, domain: str, members: dict[str, np.ndarray],
               nonmembers: dict[str, np.ndarray], blind: float,
               config: ScanConfig) -> ResultRow:
    """The row of the attack's scores (key ``""``), with the AUC of each diagnostic variant;
    flagged unstable when a variant disagrees by more than the margin."""
    check_finite(attack.name, domain, members[""], nonmembers[""])
    row = result_row(attack, domain, members[""], nonmembers[""], blind, config)
    for key in sorted(k for k in members if k):
        check_finite(f"{attack.name} ({key})", domain, members[key], nonmembers[key])
        row.variant_auc[key] = metrics.auc(members[key], nonmembers[key])
    row.unstable = any(abs(value - row.auc) > config.unstable_margin
                       for value in row.variant_auc.values())
    return row


def probe_row(attack: Attack, base: ResultRow, label: str, members: np.ndarray,
              nonmembers: np.ndarray, blind: float, config: ScanConfig,
              details: dict[str, Any]) -> ResultRow:
    """A probe's row on the same samples as ``base`` (the released model's row), with
    Δ AUC = AUC(probe) − AUC(released) and its paired bootstrap CI."""
    row = result_row(attack, base.domain, members, nonmembers, blind, config)
    row.probe = label
    base_m, base_n = np.asarray(base.member_scores), np.asarray(base.nonmember_scores)
    row.delta_auc = row.auc - base.auc
    row.delta_auc_ci = metrics.paired_bootstrap_ci(
        base_m, base_n, members, nonmembers, metrics.auc, n_resamples=config.bootstrap,
        seed=config.resample_seed)
    row.settings = {**row.settings, "probe": details}
    return row


def check_finite(attack: str, domain: str, *scores: np.ndarray) -> None:
    """A scan error when an attack's scores are not all finite: nothing can be judged."""
    if not all(np.isfinite(s).all() for s in scores):
        raise ScanError(f"attack {attack} on {domain}: the model produced non-finite scores "
                        "(overflow in the UNet?); nothing can be judged from them.")
