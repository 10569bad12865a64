"""Headline numbers as JUnit ``<testsuite>`` properties (pytest ``--junitxml``).

CI dashboards that read JUnit XML (GitLab, Jenkins, Azure) then chart AUC and extraction counts
per release without parsing the JSON report.
"""

from __future__ import annotations

from s2l_scan.report.headline import headline
from s2l_scan.report.model import ScanReport


def junit_properties(report: ScanReport) -> list[tuple[str, str]]:
    """(name, value) pairs, all prefixed ``s2l.``; per-row AUCs follow the headline."""
    top = headline(report)
    pairs = [("s2l.verdict", top["verdict"]), ("s2l.checks", str(top["checks"])),
             ("s2l.failed", str(top["failed"])),
             ("s2l.max_auc", _number(top["max_auc"])),
             ("s2l.max_auc_item", str(top["max_auc_item"])),
             ("s2l.max_tpr_at_1pct_fpr", _number(top["max_tpr_at_1pct_fpr"])),
             ("s2l.extracted", str(top["extracted"])),
             ("s2l.matched_generations", str(top["matched_generations"])),
             ("s2l.nonmember_matches", str(top["nonmember_matches"])),
             ("s2l.regressions", str(top["regressions"])),
             ("s2l.model_hash", str(top["model_hash"])),
             ("s2l.schema_version", report.schema_version)]
    pairs += [(f"s2l.auc.{row.item_id}", _number(row.auc)) for row in report.results]
    return pairs


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"
