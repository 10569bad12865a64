"""The gate: every pass/fail decision of a scan, made here and nowhere else.

Stages measure; this module judges. A result row fails past ``max_auc``, ``max_tpr`` or
``max_amplification`` — an AUC or Δ check only when it is also significant after Holm's
correction over every such check of the scan at ``family_alpha``, so the false-fail rate of a
whole scan on data with no signal stays at or below ``family_alpha``; an extraction record
fails past ``max_extracted``; a regression check when its metric rose more than its allowance
since the previous report, which also fails the row it names, and a check of the previous report
this one dropped unless ``allow_dropped_checks``. :func:`decide` applies all of
it to a finished :class:`ScanReport`, and the report's verdict (``ScanReport.passed``) is
then the conjunction of every check.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from s2l_scan.config import ScanConfig
from s2l_scan.detectors import DETECTORS
from s2l_scan.errors import UsageError
from s2l_scan.functional.metrics import holm, smallest_pvalue
from s2l_scan.report.compare import Allowance, canonical, compare, config_changes
from s2l_scan.report.model import (
    ComparisonCheck,
    ExtractionRecord,
    MemorizationRecord,
    ResultRow,
    ScanReport,
)

# A float rounding slack, so that 0.62 - 0.60 (= 0.0200000000000000018) is not "+0.02 exceeded".
_SLACK = 1e-9


def judge_row(row: ResultRow, config: ScanConfig) -> None:
    """Set ``row.passed`` / ``row.reasons`` from the gate thresholds.

    Every number compared is cross-fitted: the calibrated AUC (direction and variant learned
    on a calibration half), Δ between two calibrated AUCs, and the TPR at 1 % FPR only where
    the calibration half can estimate that FPR (otherwise no TPR is gated, and the row says
    so in ``tpr_estimates``)."""
    end = config.ci_end
    alpha = config.family_alpha
    compared = {"point": row.auc, "lower": row.auc_ci[0], "upper": row.auc_ci[1]}[end]
    ci = f"95% CI [{row.auc_ci[0]:.3f}, {row.auc_ci[1]:.3f}]"
    n = f"n = {row.n_members} members / {row.n_nonmembers} non-members"
    row.reasons = []
    if compared > config.max_auc and _significant(row.p_adjusted, alpha):
        which = "calibrated AUC" if end == "point" else f"calibrated AUC CI {end} end"
        row.reasons.append(
            f"{which} {compared:.3f} > max_auc {config.max_auc} (AUC {row.auc:.3f}, {ci}, "
            f"{_p_text(row.p_value, row.p_adjusted, alpha)}, raw fixed-sign AUC "
            f"{row.auc_raw:.3f}, {n}, blind AUC {row.blind_auc:.3f}"
            f"{', confounded' if row.confounded else ''})")
    if row.delta_auc is not None and row.delta_auc_ci is not None:
        delta = {"point": row.delta_auc, "lower": row.delta_auc_ci[0],
                 "upper": row.delta_auc_ci[1]}[end]
        if delta > config.max_amplification and _significant(row.delta_p_adjusted, alpha):
            row.reasons.append(
                f"amplification ΔAUC {row.delta_auc:+.3f} (calibrated; paired 95% CI "
                f"[{row.delta_auc_ci[0]:+.3f}, {row.delta_auc_ci[1]:+.3f}], "
                f"{_p_text(row.delta_p_value or 1.0, row.delta_p_adjusted, alpha)}) > "
                f"max_amplification {config.max_amplification} after probe {row.probe}")
    estimate = _tpr_estimate(row, 0.01)
    if estimate is not None and estimate.get("estimable"):
        low, high = estimate["tpr_ci"]
        tpr = {"point": estimate["tpr"], "lower": low, "upper": high}[end]
        if tpr > config.max_tpr:
            row.reasons.append(
                f"TPR {estimate['tpr']:.3f} (exact 95% CI [{low:.3f}, {high:.3f}]) at 1% FPR "
                f"(achieved {estimate['achieved_fpr']:.3f} on the test halves) > max_tpr "
                f"{config.max_tpr} (thresholds calibrated on half the data, measured on the "
                f"other; {n})")
    row.passed = not row.reasons


def _significant(adjusted: float | None, alpha: float) -> bool:
    """Whether a check's family-wise adjusted p-value clears ``family_alpha`` (1: always;
    unadjusted rows, e.g. judged alone outside a scan, count as significant)."""
    return alpha >= 1.0 or adjusted is None or adjusted <= alpha


def _p_text(p: float, adjusted: float | None, alpha: float) -> str:
    if adjusted is None:
        return f"p {p:.2g}"
    return f"p {p:.2g}, Holm-adjusted {adjusted:.2g} ≤ family_alpha {alpha}"


def adjust_family(rows: list[ResultRow], config: ScanConfig) -> None:
    """Holm-adjust every statistical check of a scan together: each row's AUC p-value and each
    probe row's Δ p-value (one family, so the false-fail rate of the whole scan is bounded).

    A row whose smallest attainable p-value, times the family's size, exceeds ``family_alpha``
    is marked ``underpowered``: its AUC check could not fail however strong the signal, so its
    pass is no evidence of safety (the renderers say so)."""
    p_values = [row.p_value for row in rows] + [row.delta_p_value for row in rows
                                                if row.delta_p_value is not None]
    adjusted = iter(holm(p_values))
    for row in rows:
        row.p_adjusted = next(adjusted)
        smallest = smallest_pvalue(row.n_members, row.n_nonmembers, config.permutations)
        row.underpowered = config.family_alpha < 1.0 and \
            smallest * len(p_values) > config.family_alpha
    for row in rows:
        if row.delta_p_value is not None:
            row.delta_p_adjusted = next(adjusted)


def _tpr_estimate(row: ResultRow, alpha: float) -> dict[str, Any] | None:
    return next((e for e in row.tpr_estimates if e.get("alpha") == alpha), None)


def judge_extraction(record: ExtractionRecord, config: ScanConfig) -> None:
    """Set ``record.passed`` / ``record.reasons`` from ``max_extracted``."""
    record.passed = record.extracted <= config.max_extracted
    record.reasons = [] if record.passed else [
        f"{record.extracted} distinct training image(s) extracted ((k, ℓ2, δ)-eidetic, "
        f"k={config.extraction_k}, δ={config.extraction_delta}; matched by "
        f"{record.matched_generations} of {record.n_generated} generations) > max_extracted "
        f"{config.max_extracted}"]


def judge_comparison(check: ComparisonCheck, allowances: Iterable[Allowance],
                     allow_dropped: bool = False) -> None:
    """A compared check regresses when its metric rose more than its allowance; a check of the
    previous report that this one lacks (``missing``) fails unless ``allow_dropped``."""
    if check.status == "missing":
        check.passed = allow_dropped
        return
    allowance = {a.metric: a for a in allowances}.get(check.metric)
    if (allowance is None or check.status != "ok" or check.change is None
            or check.previous is None):
        return
    if check.change > allowance.limit(check.previous) + _SLACK:
        check.status, check.passed = "regressed", False


def regression_reason(check: ComparisonCheck, source: str) -> str:
    """One line: what rose, from what to what, by how much, and what was allowed (or which
    check was dropped)."""
    if check.status == "missing":
        return (f"dropped: checked in the previous report {source} but not in this scan (a "
                "scan that runs fewer checks cannot show there was no regression). Restore "
                "the check, or accept it with --allow-dropped-checks "
                "(pytest: --s2l-allow-dropped-checks; config: allow_dropped_checks = true)")
    return (f"{check.metric} rose from {check.previous:.4g} to {check.current:.4g} "
            f"(+{check.change:.4g}) since the previous report {source}; allowed "
            f"{check.allowance}")


def judge_memorization(record: MemorizationRecord) -> None:
    """Set ``record.passed`` / ``reasons``: a domain fails when one of its prompts' text-guidance
    magnitude exceeds ``max_text_guidance`` (Wen), its anisotropy score exceeds
    ``max_anisotropy`` (Asthana & Belagiannis), or its generations hold a clique of at least
    ``clique_size`` near-copies (Carlini); a record without a threshold is reported only."""
    record.reasons = []
    if record.threshold is None:
        record.passed = True
        for prompt in record.prompts:
            prompt.pop("flagged", None)  # reported, not gated
        return
    for prompt in record.prompts:
        value = float(prompt["value"])
        # the per-prompt verdict, stamped for the renderers (which never judge)
        detector = DETECTORS[record.detector]
        prompt["flagged"] = detector.flags(value, record.threshold)
        if prompt["flagged"] and detector.strict:
            record.reasons.append(
                f"prompt {prompt['prompt']!r}: {detector.measures} {value:.4g} > "
                f"{detector.threshold} {record.threshold:g} ({detector.authors}: a likely "
                f"memorized prompt, found with no known image)")
        elif prompt["flagged"]:
            record.reasons.append(
                f"prompt {prompt['prompt']!r}: a clique of {int(value)} generations, each a "
                f"near-copy of every other, ≥ clique_size {int(record.threshold)} (Carlini et "
                f"al.: likely memorized generations{_evidence(prompt)})")
    record.passed = not record.reasons


def _evidence(prompt: dict[str, Any]) -> str:
    return f", pictured in {prompt['evidence']}" if prompt.get("evidence") else ""


def compare_reports(previous: dict[str, Any], current: dict[str, Any],
                    allowances: Iterable[Allowance] = (),
                    allow_dropped: bool = False) -> list[ComparisonCheck]:
    """The regression checks of ``current`` against ``previous`` (both ``to_dict()`` bodies),
    judged. Without allowances the point AUC is compared for information only; a dropped check
    fails unless ``allow_dropped``."""
    allowances = tuple(allowances)
    checks = compare(previous, current, allowances)
    for check in checks:
        judge_comparison(check, allowances, allow_dropped)
    return checks


def apply_comparison(report: ScanReport, checks: list[ComparisonCheck], source: str,
                     changes: list[dict[str, Any]] | None = None) -> None:
    """Store ``checks`` in ``report.comparison`` (and the configuration ``changes`` in
    ``report.config_changes``) and fail the rows and memorization records that regressed, with
    a reason that states both numbers, the rise, the allowance and the previous report. A
    dropped check fails the verdict through ``report.comparison``: it has no row of its own."""
    rows: dict[str, ResultRow | MemorizationRecord] = {row.item_id: row for row in report.results}
    rows.update((record.item_id, record) for record in report.memorization)
    for check in checks:
        if check.passed or check.item not in rows:
            continue
        row = rows[check.item]
        row.passed = False
        row.reasons.append(regression_reason(check, source))
    report.comparison = checks
    report.config_changes = list(changes or [])


def decide(report: ScanReport, config: ScanConfig, previous: dict[str, Any] | None = None,
           allowances: Iterable[Allowance] = (), source: str = "") -> ScanReport:
    """Judge every check of ``report`` in place (rows, extraction, then the regression compare
    against ``previous``, named ``source`` in reasons) and return it."""
    adjust_family(report.results, config)
    for row in report.results:
        judge_row(row, config)
    for record in report.extraction:
        judge_extraction(record, config)
    for memorized in report.memorization:
        judge_memorization(memorized)
    if previous is not None:
        body = report.to_dict()
        apply_comparison(report, compare_reports(previous, body, allowances,
                                                 config.allow_dropped_checks), source,
                         config_changes(previous.get("config") or {}, body["config"]))
    return report


def compare_saved(report: ScanReport, previous: dict[str, Any], source: str,
                  allowances: Iterable[Allowance] = (), allow_dropped: bool = False) -> bool:
    """``s2l-scan report A.json --compare B.json``: compare a saved report with an earlier one,
    store the comparison in it (its config echoing how), and say whether the comparison passed
    (no regression, no dropped check unless allowed). A report that already holds a comparison
    is refused: its rows were judged against that one."""
    if report.comparison or report.config_changes:
        raise UsageError(
            f"this report was already compared with {report.config.get('compare')} when it was "
            "written; compare a report written without --compare")
    allowances = tuple(allowances)
    report.config.update(compare=source, compare_fail=canonical(allowances) or None,
                         allow_dropped_checks=allow_dropped)
    body = report.to_dict()
    checks = compare_reports(previous, body, allowances, allow_dropped)
    apply_comparison(report, checks, source,
                     config_changes(previous.get("config") or {}, body["config"]))
    return all(check.passed for check in checks)
