"""The gate: every decision of a scan, made here and nowhere else.

Stages measure; this module judges. Each check gets an outcome (:class:`~s2l_scan.checks.
Outcome`): FAILED when a leak is shown, PASSED when safety is shown (the check could have
caught a leak of its threshold's size: its one-sided 95 % upper bound is within the
threshold), INCONCLUSIVE otherwise, with :class:`~s2l_scan.checks.Reason` data saying why (and,
for an inconclusive check, how many images per class would decide it). Each rule is one small
function (:func:`auc_check`, :func:`delta_check`, :func:`tpr_check`).

The families (docs/verdict-maths.md, "The verdict as evidence"): membership is one hypothesis
per domain (and ``pooled``): every row of the domain — each attack and candidate, the ``+base``
rows, each probe copy's re-attack, each row's memorized-few count — is tested with the same
label permutations (Westfall–Young step-down minP), Holm across domains, at
:func:`membership_alpha`. Amplification (H0: Δ ≤ ``max_amplification``) is a second family
of one hypothesis per domain at :func:`amplification_alpha`; the two levels add up to
``family_alpha``, so the false-fail rate of a whole scan on data with no signal stays at or
below it, and adding an attack, probe, sweep value or base model never adds a hypothesis.
An extraction record fails past ``max_extracted``; a regression check when its metric rose
more than its allowance since the previous report, which also fails the record it names, and a
check of the previous report this one dropped unless ``allow_dropped_checks``. :func:`decide`
applies all of it to a finished :class:`ScanReport`, whose verdict (``ScanReport.outcome``) is
FAILED if any check failed, PASSED only if every gating check passed, INCONCLUSIVE otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from s2l_scan.checks import (
    Outcome,
    Reason,
    amplification_level,
    combine,
    membership_level,
)
from s2l_scan.config import ScanConfig
from s2l_scan.detectors import DETECTORS
from s2l_scan.errors import ExitCode, UsageError
from s2l_scan.functional import family, power
from s2l_scan.functional.metrics import holm
from s2l_scan.report.compare import (
    Allowance,
    canonical,
    compare,
    config_changes,
    regression_reason,
)
from s2l_scan.report.model import (
    ComparisonCheck,
    ExtractionRecord,
    MemorizationRecord,
    ResultRow,
    ScanReport,
)

# regression_reason (the text of a regression or dropped check) lives with the compare
# (report/compare.py), where a renderer reads it without the gate; imported above, it keeps
# `from s2l_scan.gate import regression_reason` working.

# A float rounding slack, so that 0.62 - 0.60 (= 0.0200000000000000018) is not "+0.02 exceeded".
_SLACK = 1e-9


Judged = tuple[Outcome, list[Reason]]
"""One check's outcome and its reasons (none when it passed)."""

MIN_PER_CLASS = family.BOUND_MIN_PER_CLASS
"""The fewest members and non-members with which an AUC or Δ check may pass: below it no
one-sided bound is issued (docs/verdict-maths.md: the bootstrap bound's coverage by n)."""

def membership_alpha(config: ScanConfig) -> float:
    """The level of the membership (primary) family: one hypothesis per domain
    (:func:`~s2l_scan.checks.membership_level`)."""
    return membership_level(config.family_alpha)


def amplification_alpha(config: ScanConfig) -> float:
    """The level of the amplification (secondary) family: one hypothesis per domain
    (:func:`~s2l_scan.checks.amplification_level`)."""
    return amplification_level(config.family_alpha)


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
    """The images per class that would bring an upper bound ``high`` down to ``limit``, were
    the estimate ``observed`` to stay and the bound to narrow as 1/√n: ``n × ((high −
    observed) / (limit − observed))²``, rounded up (at least :data:`MIN_PER_CLASS`); None when
    ``observed`` is not below ``limit`` (no n would pass it). Used for Δ and the TPR, whose
    bounds have no closed-form law here; the AUC uses :func:`power.images_to_decide`.

    >>> decide_n(20, 0.5, 0.7, 0.6)
    80
    """
    if observed >= limit or n <= 0:
        return None
    return max(MIN_PER_CLASS, math.ceil(n * ((high - observed) / (limit - observed)) ** 2
                                        - 1e-9))


def auc_check(row: ResultRow, config: ScanConfig) -> Judged:
    """A row's AUC check (docs/verdict-maths.md, "The verdict as evidence").

    FAILED: the ``ci_end`` AUC exceeds ``max_auc`` and the row is significant family-wise
    (its domain's step-down p, across domains, ≤ the membership alpha); or the memorized few
    are shown: the members scored above every calibration non-member are significant
    family-wise and more than ``max_tpr`` of the members. PASSED: the one-sided 95 % upper
    bound of the calibrated AUC is ≤ ``max_auc`` (safety shown; no bound below
    :data:`MIN_PER_CLASS` per class). Else INCONCLUSIVE, with the images per class that would
    decide it."""
    end, alpha, limit = config.ci_end, membership_alpha(config), config.max_auc
    compared = _end(row.auc, row.auc_ci, end)
    ci = f"95% CI [{row.auc_ci[0]:.3f}, {row.auc_ci[1]:.3f}]"
    n = f"n = {row.n_members} members / {row.n_nonmembers} non-members"
    failed: list[Reason] = []
    if compared > limit and _significant(row.p_adjusted, alpha):
        which = "calibrated AUC" if end == "point" else f"calibrated AUC CI {end} end"
        failed.append(Reason("auc", "max_auc", compared, limit, (
            f"{which} {compared:.3f} > max_auc {limit} (AUC {row.auc:.3f}, {ci}, "
            f"{_p_text(row.p_value, row.p_adjusted, alpha)}, raw fixed-sign AUC "
            f"{row.auc_raw:.3f}, {n}, blind AUC {row.blind_auc:.3f}"
            f"{', confounded' if row.confounded else ''})")))
    top = top_members_reason(row, config)
    if top is not None:
        failed.append(top)
    if failed:
        return Outcome.FAILED, failed
    high = row.auc_upper
    if high is not None and high <= limit:
        return Outcome.PASSED, []
    family_size = max(1, int((row.top_members or {}).get("domains", 1)))
    needed = power.images_to_decide(row.auc, row.n_members, row.n_nonmembers, limit,
                                    min(alpha, 0.5), family_size)  # alpha 1: uncorrected
    if high is None:
        why = (f"no upper bound at {n} (fewer than {MIN_PER_CLASS} per class), so safety "
               f"cannot be shown")
        needed = max(MIN_PER_CLASS, needed or MIN_PER_CLASS)
    elif row.underpowered:
        why = (f"AUC {row.auc:.3f}, one-sided 95% upper bound {high:.3f} > max_auc {limit}, and "
               f"at {n} no AUC could be significant at alpha {alpha:.3g}")
    else:
        why = (f"AUC {row.auc:.3f} is not shown below max_auc {limit}: its one-sided 95% "
               f"upper bound is {high:.3f}; nor is it shown above "
               f"({_p_text(row.p_value, row.p_adjusted, alpha, rejected=False)})")
    return Outcome.INCONCLUSIVE, [Reason("undecided", "max_auc", high, limit, (
        f"{why}; {_decide_text(needed)}"), needed)]


def top_members_reason(row: ResultRow, config: ScanConfig) -> Reason | None:
    """The memorized-few route to FAILED: more than ``max_tpr`` of the members scored above
    every calibration non-member (net of the non-members there), significant family-wise."""
    top = row.top_members
    if not top or top.get("p_adjusted") is None:
        return None
    alpha = membership_alpha(config)
    share = float(top["count"]) / row.n_members
    if share <= config.max_tpr or not _significant(top["p_adjusted"], alpha):
        return None
    return Reason("tpr", "max_tpr", share, config.max_tpr, (
        f"{int(top['count'])} of {row.n_members} members ({share:.3f}) scored above every "
        f"calibration non-member (net of the test non-members above it; the memorized few) > "
        f"max_tpr {config.max_tpr} ({_p_text(float(top['p_value']), top['p_adjusted'], alpha)}"
        f"; flagged members {', '.join(f'#{i}' for i in top['flagged'][:10])}"
        f"{' …' if len(top['flagged']) > 10 else ''})"))


def _decide_text(needed: int | None) -> str:
    if needed is None:
        return "add members and non-members"
    return f"about {needed} members and {needed} non-members per domain would decide it"


def delta_check(row: ResultRow, config: ScanConfig) -> Judged:
    """A probe row's Δ check. FAILED: the ``ci_end`` ΔAUC exceeds ``max_amplification`` and
    H0: Δ ≤ ``max_amplification`` is rejected family-wise (the domain's Romano–Wolf step-down
    on the paired bootstrap, across domains, at the amplification alpha). PASSED: Δ's
    one-sided 95 % upper bound is ≤ ``max_amplification``. Else INCONCLUSIVE."""
    assert row.delta_auc is not None and row.delta_auc_ci is not None
    alpha, limit = amplification_alpha(config), config.max_amplification
    low, high = row.delta_auc_ci
    delta = _end(row.delta_auc, row.delta_auc_ci, config.ci_end)
    if delta > limit and _significant(row.delta_p_adjusted, alpha):
        return Outcome.FAILED, [Reason("amplification", "max_amplification", row.delta_auc,
                                       limit, (
            f"amplification ΔAUC {row.delta_auc:+.3f} (calibrated; paired 95% CI "
            f"[{low:+.3f}, {high:+.3f}], H0 Δ ≤ {limit}: "
            f"{_p_text(row.delta_p_value or 1.0, row.delta_p_adjusted, alpha)}) > "
            f"max_amplification {limit} after probe {row.probe}"))]
    upper = row.delta_upper
    if upper is not None and upper <= limit:
        return Outcome.PASSED, []
    per_class = min(row.n_members, row.n_nonmembers)
    if upper is None:
        needed: int | None = MIN_PER_CLASS
        shown = f"no upper bound at fewer than {MIN_PER_CLASS} per class"
    else:
        needed = decide_n(per_class, row.delta_auc, upper, limit)
        shown = f"its one-sided 95% upper bound is {upper:+.3f}"
    return Outcome.INCONCLUSIVE, [Reason("undecided", "max_amplification", upper, limit, (
        f"ΔAUC {row.delta_auc:+.3f} after probe {row.probe} is not shown below "
        f"max_amplification {limit}: {shown} (paired 95% CI [{low:+.3f}, {high:+.3f}], "
        f"n = {row.n_members} / {row.n_nonmembers}); {_decide_text(needed)}"), needed)]


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


def _p_text(p: float, adjusted: float | None, alpha: float, rejected: bool = True) -> str:
    if adjusted is None:
        return f"p {p:.2g}"
    relation = "≤" if rejected and adjusted <= alpha else ">"
    return f"p {p:.2g}, family-wise {adjusted:.2g} {relation} alpha {alpha:.3g}"


def _groups(rows: list[ResultRow]) -> dict[str, list[ResultRow]]:
    """The rows of each domain (and ``pooled``), in the order they first appear."""
    groups: dict[str, list[ResultRow]] = {}
    for row in rows:
        groups.setdefault(row.domain, []).append(row)
    return groups


def _combined(step_down: float, domain_p: float, holm_p: float, n_domains: int) -> float:
    """A check's family-wise p: its domain's Holm-adjusted p for the domain's strongest
    statistic (its step-down p is the domain p), else the larger of that and the step-down p
    times the number of domains (Bonferroni across domains for the rows inside one: closed
    testing, a check is rejected only inside a rejected domain)."""
    if step_down <= domain_p:
        return holm_p
    return max(holm_p, min(1.0, n_domains * step_down))


def adjust_family(rows: list[ResultRow], config: ScanConfig) -> None:
    """Family-wise p-values, upper bounds and the attainability flag of every row.

    Membership (primary family): per domain, every row's calibrated AUC and its memorized-few
    count under the SAME label permutations (the rows score the same images), Westfall–Young
    step-down minP; Holm across the domains (and ``pooled``). Adding an attack, probe, base
    model or sweep value adds columns inside a domain, never a hypothesis to the family.
    Amplification (secondary family): per domain, H0: Δ ≤ ``max_amplification`` for every
    probe row, Romano–Wolf on shared paired-bootstrap draws; Holm across domains."""
    groups = _groups(rows)
    tests = {domain: _membership(members, config) for domain, members in groups.items()}
    holm_p = dict(zip(tests, holm([test.domain_p for test, _, _ in tests.values()]),
                      strict=True))
    for domain, members in groups.items():
        test, top, attainable = tests[domain]
        width = len(members)
        for r, row in enumerate(members):
            row.p_adjusted = _combined(float(test.step_down[r]), test.domain_p, holm_p[domain],
                                       len(groups))
            row.underpowered = attainable * len(groups) > membership_alpha(config)
            row.top_members = {
                "count": float(top[r].statistic[0]), "flagged": [int(i) for i in top[r].flagged],
                "p_value": float(test.raw[width + r]),
                "p_adjusted": _combined(float(test.step_down[width + r]), test.domain_p,
                                        holm_p[domain], len(groups)),
                "domains": len(groups)}
            row.auc_upper = family.auc_upper_bound(*row.candidates(), config.seed,
                                                   bootstrap_seed=config.resample_seed,
                                                   n_resamples=config.bootstrap)
    _adjust_amplification(groups, config)


def _membership(rows: list[ResultRow], config: ScanConfig,
                ) -> tuple[family.FamilyResult, list[family.TopMembers], float]:
    """One domain's membership family: the test, each row's memorized-few statistic, and the
    smallest domain p the family could give (a perfectly separating row in its place)."""
    sizes = {(row.n_members, row.n_nonmembers) for row in rows}
    if len(sizes) != 1:
        raise UsageError(f"domain {rows[0].domain}: its rows score different samples "
                         f"({sorted(sizes)}); every row of a domain must score the same images")
    n_members, n_nonmembers = sizes.pop()
    perms = family.LabelPermutations.build(n_members, n_nonmembers, seed=config.seed,
                                           permutation_seed=config.resample_seed,
                                           n_permutations=config.permutations)
    candidates = [row.candidates() for row in rows]
    aucs = family.crossfit_auc_statistics(candidates, perms)
    tops = [family.top_members_statistic(m, n, perms) for m, n in candidates]
    table = np.column_stack([aucs] + [top.statistic for top in tops])
    perfect = family.crossfit_auc_statistic({"": [1.0] * n_members}, {"": [0.0] * n_nonmembers},
                                            perms)
    attainable = family.family_attainable_pvalue(table, perfect)
    return family.family_test(table), tops, attainable


def _adjust_amplification(groups: dict[str, list[ResultRow]], config: ScanConfig) -> None:
    """The amplification family: per domain, each probe row against the released row of the
    same attack; Holm across the domains that have probe rows."""
    tests: dict[str, tuple[list[ResultRow], family.AmplificationResult]] = {}
    for domain, rows in groups.items():
        released = {row.attack: row for row in rows if row.probe is None}
        probed = [row for row in rows if row.probe is not None and row.attack in released]
        if not probed:
            continue
        pairs = [(*row.candidates(), *released[row.attack].candidates()) for row in probed]
        tests[domain] = probed, family.amplification_test(
            pairs, config.max_amplification, config.seed, bootstrap_seed=config.resample_seed)
    holm_p = dict(zip(tests, holm([test.domain_p for _, test in tests.values()]), strict=True))
    for domain, (probed, test) in tests.items():
        for r, row in enumerate(probed):
            row.delta_p_value = float(test.raw[r])
            row.delta_p_adjusted = _combined(float(test.adjusted[r]), test.domain_p,
                                             holm_p[domain], len(tests))
            upper = float(test.upper[r])
            row.delta_upper = None if math.isnan(upper) else upper


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
