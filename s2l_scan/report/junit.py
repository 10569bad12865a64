"""Headline numbers as JUnit ``<testsuite>`` properties (pytest ``--junitxml``).

CI dashboards that read JUnit XML (GitLab, Jenkins, Azure) then chart AUC and extraction counts
per release without parsing the JSON report.
"""

from __future__ import annotations

from s2l_scan.detectors import DETECTORS
from s2l_scan.report.headline import headline
from s2l_scan.report.model import ScanReport


def junit_properties(report: ScanReport) -> list[tuple[str, str]]:
    """(name, value) pairs, all prefixed ``s2l.``; per-row AUCs follow the headline.

    What the scan measured is named ``observed_*``, the gate's limits ``threshold_*``, so a
    dashboard never charts the largest AUC seen as if it were the allowed one.
    """
    top = headline(report)
    config = report.config
    pairs = [("s2l.verdict", top["verdict"]), ("s2l.checks", str(top["checks"])),
             ("s2l.failed", str(top["failed"])),
             ("s2l.inconclusive", str(top["inconclusive"])),
             ("s2l.on_inconclusive", str(config.get("on_inconclusive", "fail"))),
             ("s2l.observed_max_auc", _number(top["max_auc"])),
             ("s2l.observed_max_auc_check", str(top["max_auc_item"])),
             ("s2l.observed_max_tpr_at_1pct_fpr", _number(top["max_tpr_at_1pct_fpr"])),
             ("s2l.observed_extracted", str(top["extracted"])),
             ("s2l.observed_matched_generations", str(top["matched_generations"])),
             ("s2l.observed_nonmember_matches", str(top["nonmember_matches"])),
             ("s2l.threshold_max_auc", _number(config.get("max_auc"))),
             ("s2l.threshold_max_tpr_at_1pct_fpr", _number(config.get("max_tpr"))),
             ("s2l.threshold_max_extracted", _text(config.get("max_extracted"))),
             ("s2l.threshold_max_amplification", _number(config.get("max_amplification"))),
             ("s2l.regressions", str(top["regressions"])),
             ("s2l.model_hash", str(top["model_hash"])),
             ("s2l.schema_version", report.schema_version)]
    pairs += [(f"s2l.observed_auc.{row.item_id}", _number(row.auc)) for row in report.results]
    detectors = {record.detector for record in report.memorization}
    for detector in DETECTORS.values():
        if detector.name in detectors:  # "": reported, not gated
            pairs.append((f"s2l.threshold_{detector.threshold}",
                          _text(config.get(detector.threshold))))
    # the largest text-guidance magnitude or clique size of each memorization check
    pairs += [(f"s2l.observed_largest.{record.item_id}", _number(record.largest))
              for record in report.memorization]
    return pairs


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"
