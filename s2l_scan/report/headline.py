"""The few numbers a release manager reads first, shared by every renderer."""

from __future__ import annotations

from typing import Any

from s2l_scan.checks import Check, Outcome, Reason, membership_level
from s2l_scan.detectors import DETECTORS
from s2l_scan.report.model import ExtractionRecord, ScanReport
from s2l_scan.report.remedies import CONFOUNDED_MEANING

VERDICT_WORDS = {Outcome.PASSED: "pass", Outcome.FAILED: "FAIL",
                 Outcome.INCONCLUSIVE: "INCONCLUSIVE"}
"""How a table cell names a gating check's outcome; a non-gating one reads ``reported``."""


def verdict_word(check: Check) -> str:
    """``pass``, ``FAIL``, ``INCONCLUSIVE``, or ``reported`` for a check that does not gate
    (never "pass": it showed nothing)."""
    if not check.gating and check.outcome is not Outcome.FAILED:
        return "reported"
    return VERDICT_WORDS[check.outcome]


def verdict_sentence(report: ScanReport) -> str:
    """The verdict in one line, e.g. ``INCONCLUSIVE: 3 of 12 checks undecided, none failed
    (no leak shown, but safety not shown either)``."""
    top = headline(report)
    if top["verdict"] == "failed":
        return f"FAILED: {top['failed']} of {top['checks']} checks failed"
    if top["verdict"] == "inconclusive":
        return (f"INCONCLUSIVE: {top['inconclusive']} of {top['checks']} checks undecided, none "
                "failed; no leak shown, but safety not shown either")
    return f"PASSED: all {top['gating']} gating checks showed safety" + (
        f" ({top['checks'] - top['gating']} reported, not gated)"
        if top["checks"] > top["gating"] else "")


def undecided_reasons(report: ScanReport, limit: int = 3) -> list[tuple[str, Reason]]:
    """The reasons of the gating inconclusive checks, (check id, reason), those needing the
    most images per class first: what would decide the verdict."""
    pairs = [(str(check.check_id), reason) for check in report.checks()
             if check.gating and check.outcome is Outcome.INCONCLUSIVE
             for reason in check.reasons]
    pairs.sort(key=lambda pair: -(pair[1].decide_n or 0))
    return pairs[:limit]


def decide_n(report: ScanReport) -> int | None:
    """The most images per class any inconclusive check says would decide it (None: none
    says)."""
    return max((reason.decide_n for _, reason in undecided_reasons(report, limit=10**9)
                if reason.decide_n is not None), default=None)


def policy_warning(report: ScanReport) -> str | None:
    """The warning an INCONCLUSIVE verdict carries under ``on_inconclusive = "warn"`` (the run
    exits 0), naming why; None otherwise."""
    if report.outcome is not Outcome.INCONCLUSIVE or report.config.get(
            "on_inconclusive") != "warn" or report.config.get("ci_end") == "upper":
        return None
    return ("warning: on_inconclusive = warn, so this INCONCLUSIVE verdict exits 0; the "
            "release was not shown safe: " + "; ".join(
                f"{item}: {reason.text}" for item, reason in undecided_reasons(report, 1)))


def headline(report: ScanReport) -> dict[str, Any]:
    """Verdict, counts and the worst numbers of a report, as plain JSON-ready values."""
    rows = report.results
    worst_auc = max(rows, key=lambda row: row.auc, default=None)
    worst_tpr = max((row for row in rows if row.tpr_at_1pct_fpr is not None),
                    key=lambda row: float(row.tpr_at_1pct_fpr or 0.0), default=None)
    failed = report.failed_items
    inconclusive = report.inconclusive_items
    dropped = len({c.item for c in report.comparison if c.status == "missing"})
    records: list[Check] = [*rows, *report.extraction, *report.memorization]
    return {
        "verdict": str(report.outcome),
        # the checks of this report, and those of the compared report it dropped
        "checks": len(records) + dropped,
        "gating": sum(record.gating for record in records) + dropped,
        "failed": len(failed),
        "failed_items": failed,
        "inconclusive": len(inconclusive),
        "inconclusive_items": inconclusive,
        "max_auc": None if worst_auc is None else worst_auc.auc,
        "max_auc_item": None if worst_auc is None else worst_auc.item_id,
        "max_tpr_at_1pct_fpr": None if worst_tpr is None else worst_tpr.tpr_at_1pct_fpr,
        "max_tpr_item": None if worst_tpr is None else worst_tpr.item_id,
        # distinct training images extracted by any check (one image found by two checks
        # counts once); the per-check counts are each record's ``extracted``
        "extracted": len({str(match["known"]) for record in report.extraction
                          for match in record.matches}),
        "matched_generations": sum(int(record.matched_generations)
                                   for record in report.extraction),
        "nonmember_matches": sum(int(record.nonmember_matches) for record in report.extraction),
        "generated": sum(int(record.n_generated) for record in report.extraction),
        "regressions": sum(not check.passed for check in report.comparison),
        "model_hash": report.model.get("model_hash"),
    }


def extraction_counts(record: ExtractionRecord) -> str:
    """One check's extraction numbers in words, e.g. ``2 training images extracted (matched by
    13 of 32 generations); 0 generations within δ of a non-member``."""
    return (f"{record.extracted} training image{_s(record.extracted)} extracted (matched by "
            f"{record.matched_generations} of {record.n_generated} generations); "
            f"{record.nonmember_matches} generation{_s(record.nonmember_matches)} within δ of a "
            f"non-member")


def _s(count: int) -> str:
    return "" if count == 1 else "s"


EXTRACTION_READING = (
    "Extraction counts distinct training images that are (k, ℓ2, δ)-eidetic (Carlini et al. "
    "2023): some generation lies within δ (RMS of [0, 1] pixels) of the image, and at most k "
    "training images, itself included, lie within δ of it. A generation within δ of a "
    "held-out non-member is never extraction; it is counted apart as a false-positive "
    "indicator of the criterion, and not gated.")


def extraction_reading(report: ScanReport) -> str:
    """:data:`EXTRACTION_READING` and what stood in for the training set in this report."""
    stand_ins = dict.fromkeys(str(record.settings["training_set"])
                              for record in report.extraction
                              if record.settings.get("training_set"))
    return " ".join([EXTRACTION_READING, *(f"Here {text}." for text in stand_ins)])


def gate_thresholds(report: ScanReport) -> list[tuple[str, str]]:
    """Every threshold the gate used on ``report``, as (config key, text) pairs in a fixed
    order: ``max_auc`` and ``max_tpr`` always; ``max_amplification`` with probe rows,
    ``max_extracted`` with extraction records, each memorization detector's threshold
    (``max_text_guidance``, ``max_anisotropy``, ``clique_size``; "none": reported, not gated)
    with the records it judges, or, with no detector on, their switches at 0 (so the line says
    memorization went unchecked); ``family_alpha``; ``compare_fail`` with a compare.
    The one source of the console's, HTML's, Markdown's and SARIF's gate line."""
    config = report.config
    detectors = {record.detector for record in report.memorization}
    out = [("max_auc", f"max_auc {config.get('max_auc')} (compared: "
                       f"{config.get('ci_end', 'point')} AUC)"),
           ("max_tpr", f"max_tpr {config.get('max_tpr')} at 1% FPR where estimable")]
    if any(row.probe is not None for row in report.results):
        out.append(("max_amplification", f"max_amplification {config.get('max_amplification')}"
                                          " (ΔAUC of a probe's copy)"))
    if report.extraction:
        out.append(("max_extracted", f"max_extracted {config.get('max_extracted')}"))
    for detector in DETECTORS.values():
        if detector.name in detectors:
            value = config.get(detector.threshold)
            out.append((detector.threshold, f"{detector.threshold} " + (
                f"none ({detector.measures} reported, not gated)" if value is None
                else str(value))))
    if not detectors:  # the default: say so, rather than list nothing
        switches = [detector.switch for detector in DETECTORS.values()]
        out.append((switches[0], ", ".join(f"{name} {config.get(name, 0)}" for name in switches)
                    + " (prompt-level memorization not checked)"))
    out.append(("family_alpha", f"family_alpha {config.get('family_alpha', '-')} (an AUC or Δ "
                                "check fails only when also significant family-wise: one "
                                "membership and one amplification hypothesis per domain; "
                                "a check passes only when its upper bound is within its "
                                "threshold)"))
    if config.get("compare_fail"):
        out.append(("compare_fail",
                    f"compare_fail {config['compare_fail']} against {config.get('compare')}"))
    return out


def gate_text(report: ScanReport) -> str:
    """The gate's thresholds in one line (:func:`gate_thresholds`), e.g. ``max_auc 0.6
    (compared: point AUC), max_tpr 0.1 at 1% FPR where estimable, ...``."""
    return ", ".join(text for _, text in gate_thresholds(report))


READING = (
    "AUC is calibrated: the score's direction (and, for SecMI, the compared timestep among its "
    "neighbours) is chosen on one half of the samples and measured on the other, halves "
    "swapped; raw is the paper's fixed-sign AUC. A TPR is shown only at an FPR the calibration "
    "half can estimate (it needs at least 1/FPR non-members per half): '-' means not "
    "estimable at this n, and the JSON report gives the TPR at the lowest estimable FPR. An "
    "AUC or ΔAUC check FAILS only past its threshold and significant family-wise (one "
    "membership hypothesis per domain, every row of the domain tested with the same label "
    "permutations; one amplification hypothesis per domain, H0 Δ ≤ max_amplification; Holm "
    "across domains), which bounds the scan's false-fail rate on data with no signal by "
    "family_alpha. A check PASSES only when its one-sided 95% upper bound is within its "
    "threshold (safety shown; no bound below 8 per class); otherwise it is INCONCLUSIVE. "
    "'unstable': the two halves learned a different sign or variant. 'underpowered': too few "
    "samples for that check ever to be significant, however strong the signal: add members "
    "and non-members. ")
"""How to read a results table; renderers print it with the confounded meaning appended."""


def reading() -> str:
    """:data:`READING` with what a confounded row means."""
    return READING + CONFOUNDED_MEANING


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table cell; ``-`` for a missing one."""
    return "-" if value is None else f"{value:.{digits}f}"


def power_line(report: ScanReport) -> str | None:
    """What this audit could detect, for the console's last lines: the minimum detectable
    calibrated AUC at 80 % power for the smallest domain's n and the membership family's size
    and level (:func:`s2l_scan.functional.power.minimum_detectable_auc`; the within-domain rows
    cost a little more, docs/verdict-maths.md), and the images per class a row with no signal
    needs to PASS at ``max_auc``. None for a report without rows."""
    from s2l_scan.functional.power import images_for_pass, minimum_detectable_auc

    domains = [row for row in report.results if row.probe is None]
    if not domains:
        return None
    groups = {row.domain for row in report.results}
    smallest = min(domains, key=lambda row: min(row.n_members, row.n_nonmembers))
    alpha = membership_level(float(report.config.get("family_alpha", 0.05)))
    max_auc = float(report.config.get("max_auc", 0.6))
    if alpha >= 1.0:  # family_alpha 1: every point past its threshold fails
        detect = "no significance is asked (family_alpha 1)"
    else:
        mde = minimum_detectable_auc(smallest.n_members, smallest.n_nonmembers, alpha,
                                     len(groups))
        detect = ("no AUC is detectable (too few images for any check to be significant)"
                  if mde is None else f"the smallest AUC detected with 80% power is {mde:.3f}")
    needed = images_for_pass(max_auc) if 0.5 < max_auc < 1.0 else None
    passing = "" if needed is None else (
        f"; a PASS at max_auc {max_auc:g} needs at least about {needed} members and {needed} "
        f"non-members per domain even with no signal (one row; more rows need more)")
    return (f"power: at {smallest.n_members} members / {smallest.n_nonmembers} non-members "
            f"({smallest.domain}; {len(groups)} membership hypotheses at alpha {alpha:.3g}), "
            f"{detect}{passing}")
