"""The gate: every decision of a scan, made here and nowhere else.

Stages measure; this module judges. Each check gets an outcome (:class:`~s2l_scan.checks.
Outcome`): FAILED when a leak is shown, PASSED when safety is shown (the check could have
caught a leak of its threshold's size), INCONCLUSIVE otherwise, with
:class:`~s2l_scan.checks.Reason` data saying why (and, for an inconclusive check, what would
decide it). Each rule is one small function (:func:`auc_check`, :func:`delta_check`,
:func:`tpr_check`); the PASS rules are INTERIM (a CI end below the threshold) until the
verdict statistics (docs/verdict-maths.md) replace them.

A result row fails past ``max_auc``, ``max_tpr`` or ``max_amplification`` — an AUC or Δ check
only when it is also significant after Holm's correction over every such check of the scan at
``family_alpha``, so the false-fail rate of a whole scan on data with no signal stays at or
below ``family_alpha``; an extraction record fails past ``max_extracted``; a regression check
when its metric rose more than its allowance since the previous report, which also fails the
record it names, and a check of the previous report this one dropped unless
``allow_dropped_checks``. :func:`decide` applies all of it to a finished :class:`ScanReport`,
whose verdict (``ScanReport.outcome``) is FAILED if any check failed, PASSED only if every
gating check passed, INCONCLUSIVE otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from s2l_scan.checks import Outcome, Reason, combine
from s2l_scan.config import ScanConfig
from s2l_scan.detectors import DETECTORS
from s2l_scan.errors import ExitCode, UsageError
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


Judged = tuple[Outcome, list[Reason]]
"""One check's outcome and its reasons (none when it passed)."""

MIN_PER_CLASS = 10
"""INTERIM: the fewest members and non-members with which an AUC or Δ check may pass."""


def judge_row(row: ResultRow, config: ScanConfig) -> None:
    """Set ``row.outcome`` / ``row.reasons`` from its AUC check, its Δ check (probe rows) and
    its TPR check (only where 1 % FPR is estimable; otherwise not gated, and the row says so
    in ``tpr_estimates``): FAILED if any fails, else INCONCLUSIVE if any is, else PASSED.

    Every number compared is cross-fitted: the calibrated AUC (direction and variant learned
    on a calibration half), Δ between two calibrated AUCs, and the TPR at 1 % FPR on the test
    halves. Each rule is one small function below, so the statistics can replace it."""
    judged = [auc_check(row, config)]
    if row.delta_auc is not None and row.delta_auc_ci is not None:
        judged.append(delta_check(row, config))
    tpr = tpr_check(row, config)
    if tpr is not None:
        judged.append(tpr)
    row.outcome = combine((outcome, True) for outcome, _ in judged)
    row.reasons = [reason for _, reasons in judged for reason in reasons]


def _end(point: float, ci: tuple[float, float], end: str) -> float:
    """The number ``ci_end`` compares: the point estimate or one end of its CI."""
    return {"point": point, "lower": ci[0], "upper": ci[1]}[end]


def _enough(row: ResultRow) -> bool:
    return min(row.n_members, row.n_nonmembers) >= MIN_PER_CLASS


def decide_n(n: int, observed: float, high: float, limit: float) -> int | None:
    """INTERIM: the images per class that would bring the CI's upper end ``high`` down to
    ``limit``, were the estimate ``observed`` to stay and the CI to narrow as 1/√n:
    ``n × ((high − observed) / (limit − observed))²``, rounded up (at least
    :data:`MIN_PER_CLASS`); None when ``observed`` is not below ``limit`` (no n would pass it).

    >>> decide_n(20, 0.5, 0.7, 0.6)
    80
    """
    if observed >= limit or n <= 0:
        return None
    return max(MIN_PER_CLASS, math.ceil(n * ((high - observed) / (limit - observed)) ** 2
                                        - 1e-9))


def auc_check(row: ResultRow, config: ScanConfig) -> Judged:
    """INTERIM rule of a row's AUC check. FAILED: the ``ci_end`` AUC exceeds ``max_auc`` and
    is Holm-significant. PASSED: the row is not underpowered, has ≥ :data:`MIN_PER_CLASS`
    members and non-members, and its CI's upper end is ≤ ``max_auc``. Else INCONCLUSIVE."""
    end, alpha, limit = config.ci_end, config.family_alpha, config.max_auc
    compared = _end(row.auc, row.auc_ci, end)
    ci = f"95% CI [{row.auc_ci[0]:.3f}, {row.auc_ci[1]:.3f}]"
    n = f"n = {row.n_members} members / {row.n_nonmembers} non-members"
    if compared > limit and _significant(row.p_adjusted, alpha):
        which = "calibrated AUC" if end == "point" else f"calibrated AUC CI {end} end"
        return Outcome.FAILED, [Reason("auc", "max_auc", compared, limit, (
            f"{which} {compared:.3f} > max_auc {limit} (AUC {row.auc:.3f}, {ci}, "
            f"{_p_text(row.p_value, row.p_adjusted, alpha)}, raw fixed-sign AUC "
            f"{row.auc_raw:.3f}, {n}, blind AUC {row.blind_auc:.3f}"
            f"{', confounded' if row.confounded else ''})"))]
    high = row.auc_ci[1]
    if not row.underpowered and _enough(row) and high <= limit:
        return Outcome.PASSED, []
    per_class = min(row.n_members, row.n_nonmembers)
    if high > limit:
        why = (f"AUC {row.auc:.3f} is not shown below max_auc {limit}: its {ci} reaches "
               f"{high:.3f}")
        needed = decide_n(per_class, row.auc, high, limit)
    elif not _enough(row):
        why = f"fewer than {MIN_PER_CLASS} members or non-members ({n})"
        needed = MIN_PER_CLASS
    else:
        why = (f"underpowered: at {n} the AUC check could never be significant at "
               f"family_alpha {alpha}, so its pass would show nothing")
        needed = None
    return Outcome.INCONCLUSIVE, [Reason("undecided", "max_auc", high, limit, (
        f"{why}; {_decide_text(needed)}"), needed)]


def _decide_text(needed: int | None) -> str:
    if needed is None:
        return "add members and non-members"
    return f"about {needed} members and {needed} non-members per domain would decide it"


def delta_check(row: ResultRow, config: ScanConfig) -> Judged:
    """INTERIM rule of a probe row's Δ check. FAILED: the ``ci_end`` ΔAUC exceeds
    ``max_amplification`` and is Holm-significant. PASSED: the paired CI's upper end is ≤
    ``max_amplification`` with ≥ :data:`MIN_PER_CLASS` per class. Else INCONCLUSIVE."""
    assert row.delta_auc is not None and row.delta_auc_ci is not None
    alpha, limit = config.family_alpha, config.max_amplification
    low, high = row.delta_auc_ci
    delta = _end(row.delta_auc, row.delta_auc_ci, config.ci_end)
    if delta > limit and _significant(row.delta_p_adjusted, alpha):
        return Outcome.FAILED, [Reason("amplification", "max_amplification", row.delta_auc,
                                       limit, (
            f"amplification ΔAUC {row.delta_auc:+.3f} (calibrated; paired 95% CI "
            f"[{low:+.3f}, {high:+.3f}], "
            f"{_p_text(row.delta_p_value or 1.0, row.delta_p_adjusted, alpha)}) > "
            f"max_amplification {limit} after probe {row.probe}"))]
    if _enough(row) and high <= limit:
        return Outcome.PASSED, []
    needed = decide_n(min(row.n_members, row.n_nonmembers), row.delta_auc, high, limit) \
        if high > limit else MIN_PER_CLASS
    return Outcome.INCONCLUSIVE, [Reason("undecided", "max_amplification", high, limit, (
        f"ΔAUC {row.delta_auc:+.3f} after probe {row.probe} is not shown below "
        f"max_amplification {limit}: its paired 95% CI [{low:+.3f}, {high:+.3f}] "
        f"(n = {row.n_members} / {row.n_nonmembers}); {_decide_text(needed)}"), needed)]


def tpr_check(row: ResultRow, config: ScanConfig) -> Judged | None:
    """INTERIM rule of a row's TPR check at 1 % FPR, gating only where that FPR is estimable
    (None otherwise: not gated). FAILED: the ``ci_end`` TPR exceeds ``max_tpr``. PASSED: the
    exact CI's upper end is ≤ ``max_tpr``. Else INCONCLUSIVE."""
    estimate = _tpr_estimate(row, 0.01)
    if estimate is None or not estimate.get("estimable"):
        return None
    low, high = estimate["tpr_ci"]
    tpr = _end(estimate["tpr"], (low, high), config.ci_end)
    n = f"n = {row.n_members} members / {row.n_nonmembers} non-members"
    if tpr > config.max_tpr:
        return Outcome.FAILED, [Reason("tpr", "max_tpr", tpr, config.max_tpr, (
            f"TPR {estimate['tpr']:.3f} (exact 95% CI [{low:.3f}, {high:.3f}]) at 1% FPR "
            f"(achieved {estimate['achieved_fpr']:.3f} on the test halves) > max_tpr "
            f"{config.max_tpr} (thresholds calibrated on half the data, measured on the "
            f"other; {n})"))]
    if high <= config.max_tpr:
        return Outcome.PASSED, []
    needed = decide_n(row.n_members, float(estimate["tpr"]), high, config.max_tpr)
    return Outcome.INCONCLUSIVE, [Reason("undecided", "max_tpr", high, config.max_tpr, (
        f"TPR {estimate['tpr']:.3f} at 1% FPR is not shown below max_tpr {config.max_tpr}: its "
        f"exact 95% CI [{low:.3f}, {high:.3f}] ({n}); {_decide_text(needed)}"), needed)]


def exit_code(report: ScanReport) -> ExitCode:
    """The exit status of a judged scan, in both doors: 1 FAILED, 0 PASSED, 6 INCONCLUSIVE
    when :func:`inconclusive_fails` for the report's configuration, else 0."""
    outcome = report.outcome
    if outcome is Outcome.FAILED:
        return ExitCode.FAILED
    if outcome is Outcome.INCONCLUSIVE and inconclusive_fails(report.config):
        return ExitCode.INCONCLUSIVE
    return ExitCode.PASSED


def inconclusive_fails(config: ScanConfig | dict[str, Any]) -> bool:
    """Whether an INCONCLUSIVE verdict fails the run (exit 6, a failed pytest session):
    ``on_inconclusive = "fail"``, and always with ``ci_end = "upper"`` (documented as "fails
    unless the whole CI is below max_auc": a check not shown safe counts as a failure)."""
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(
        config, key, default)
    return get("on_inconclusive", "fail") != "warn" or get("ci_end", "point") == "upper"


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
    """Set ``record.outcome`` / ``reasons`` from ``max_extracted``: FAILED past it, else
    PASSED (the count is exact: no sampling error to leave it undecided)."""
    if record.extracted <= config.max_extracted:
        record.outcome, record.reasons = Outcome.PASSED, []
        return
    record.outcome = Outcome.FAILED
    record.reasons = [Reason("extraction", "max_extracted", float(record.extracted),
                             float(config.max_extracted), (
        f"{record.extracted} distinct training image(s) extracted ((k, ℓ2, δ)-eidetic, "
        f"k={config.extraction_k}, δ={config.extraction_delta}; matched by "
        f"{record.matched_generations} of {record.n_generated} generations) > max_extracted "
        f"{config.max_extracted}"))]


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


def regression_reason(check: ComparisonCheck, source: str) -> Reason:
    """What rose, from what to what, by how much, and what was allowed (kind "regression"),
    or which check was dropped (kind "dropped")."""
    if check.status == "missing":
        return Reason("dropped", "allow_dropped_checks", None, None,
                      f"dropped: checked in the previous report {source} but not in this scan "
                      "(a scan that runs fewer checks cannot show there was no regression). "
                      "Restore the check, or accept it with --allow-dropped-checks (pytest: "
                      "--s2l-allow-dropped-checks; config: allow_dropped_checks = true)")
    return Reason("regression", "compare_fail", check.change, None, (
        f"{check.metric} rose from {check.previous:.4g} to {check.current:.4g} "
        f"(+{check.change:.4g}) since the previous report {source}; allowed "
        f"{check.allowance}"))


def judge_memorization(record: MemorizationRecord) -> None:
    """Set ``record.outcome`` / ``reasons``: a domain fails when one of its prompts' value is past
    its detector's threshold (Wen's text-guidance magnitude over ``max_text_guidance``, the
    anisotropy score over ``max_anisotropy``), or its generations hold a clique of at least
    ``clique_size`` near-copies (Carlini), and passes otherwise. A record without a threshold
    is reported, not gated (``gating`` False): INCONCLUSIVE, saying which setting gates it."""
    detector = DETECTORS[record.detector]
    setting = detector.threshold
    if record.threshold is None:
        for prompt in record.prompts:
            prompt.pop("flagged", None)  # reported, not gated
        record.outcome = Outcome.INCONCLUSIVE
        record.reasons = [Reason("undecided", setting, record.largest, None, (
            f"reported, not gated: no {setting} is set (set it to gate this check)"))]
        return
    record.reasons = []
    for prompt in record.prompts:
        value = float(prompt["value"])
        # the per-prompt verdict, stamped for the renderers (which never judge)
        prompt["flagged"] = detector.flags(value, record.threshold)
        if prompt["flagged"] and detector.strict:
            text = (f"prompt {prompt['prompt']!r}: {detector.measures} {value:.4g} > "
                    f"{setting} {record.threshold:g} ({detector.authors}: a likely "
                    f"memorized prompt, found with no known image)")
        elif prompt["flagged"]:
            text = (f"prompt {prompt['prompt']!r}: a clique of {int(value)} generations, each "
                    f"a near-copy of every other, ≥ clique_size {int(record.threshold)} "
                    f"(Carlini et al.: likely memorized generations{_evidence(prompt)})")
        else:
            continue
        record.reasons.append(Reason("memorization", setting, value, float(record.threshold),
                                     text))
    record.outcome = Outcome.FAILED if record.reasons else Outcome.PASSED


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
    ``report.config_changes``), give each failed one its reason (both numbers, the rise, the
    allowance and the previous report), and fail the rows and records that regressed with
    that reason too. A dropped check fails the verdict through ``report.comparison``: it has
    no record of its own."""
    records: list[ResultRow | ExtractionRecord | MemorizationRecord] = [
        *report.results, *report.extraction, *report.memorization]
    rows = {record.item_id: record for record in records}
    for check in checks:
        if check.passed:
            continue
        reason = regression_reason(check, source)
        check.reasons = [reason]
        if check.item in rows:
            row = rows[check.item]
            row.outcome = Outcome.FAILED
            row.reasons.append(reason)
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
