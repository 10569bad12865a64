"""SARIF 2.1.0 findings of one :class:`ScanReport`, for GitHub code scanning.

One rule per check (each attack, each probe/attack pair, extraction, each regression metric);
one result per failed item, located at the scanned model's ``model_index.json`` (relative to
the repository root when the model lies inside it). ``partialFingerprints`` hash only the
rule and item, never numbers or timestamps, so a finding keeps its identity across scans and
code scanning closes it when the item passes again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from s2l_scan import __version__
from s2l_scan.gate import regression_reason
from s2l_scan.report.headline import gate_text
from s2l_scan.report.model import ScanReport

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_FINGERPRINT = "s2lScanItem/v1"


def _rule(rule_id: str, name: str, short: str, full: str, severity: str,
          tags: list[str]) -> dict[str, Any]:
    return {
        "id": rule_id, "name": name,
        "shortDescription": {"text": short}, "fullDescription": {"text": full},
        "help": {"text": full, "markdown": full},
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["privacy", "security", *tags], "precision": "high",
                       "security-severity": severity},
    }


def _membership_rule(attack: str, probe: str | None) -> dict[str, Any]:
    subject = attack if probe is None else f"{attack} after the {probe} probe"
    rule_id = f"s2l/membership/{attack}" if probe is None else f"s2l/probe/{probe}/{attack}"
    name = "".join(part.capitalize() for part in f"{probe or ''}_{attack}_membership".split("_"))
    return _rule(rule_id, name, f"Membership inference ({subject}) above the gate",
                 f"The {subject} attack tells training members from held-out images of the same "
                 "domain better than the release gate allows (AUC above max_auc, or calibrated "
                 "TPR at 1% FPR above max_tpr): the model leaks which images it was trained on.",
                 "7.5" if probe is None else "6.5", ["membership-inference"])


def _extraction_rule() -> dict[str, Any]:
    return _rule("s2l/extraction", "TrainingImageExtraction",
                 "Generated images reproduce training images",
                 "Images generated from the domain prompt reproduce known training images: "
                 "more distinct training images than max_extracted are (k, ℓ2, δ)-eidetic "
                 "(some generation within RMS δ of the image, and at most k training images, "
                 "itself included, within δ of it): the model regurgitates training data.",
                 "8.5", ["extraction"])


def _regression_rule(metric: str) -> dict[str, Any]:
    return _rule(f"s2l/regression/{metric}", f"{metric.capitalize()}Regression",
                 f"{metric} rose since the previous release",
                 f"The {metric} of a check rose by more than the allowance (compare_fail) since "
                 "the previous release's report: privacy got worse.", "5.0", ["regression"])


def _location(report: ScanReport, root: Path | None) -> dict[str, Any]:
    target = Path(str(report.model.get("path", "."))) / "model_index.json"
    root = Path.cwd() if root is None else root
    absolute = Path(os.path.abspath(target))
    try:
        relative = absolute.relative_to(os.path.abspath(root))
        artifact = {"uri": relative.as_posix(), "uriBaseId": "%SRCROOT%"}
    except ValueError:  # outside the repository, e.g. the cached reference model
        artifact = {"uri": absolute.as_uri()}
    return {"physicalLocation": {"artifactLocation": artifact, "region": {"startLine": 1}}}


def _fingerprint(rule_id: str, item: str, model_path: str) -> dict[str, str]:
    digest = hashlib.sha256(f"{rule_id}\0{item}\0{model_path}".encode()).hexdigest()
    return {_FINGERPRINT: digest[:32]}


def render_sarif(report: ScanReport, root: Path | None = None) -> dict[str, Any]:
    """The SARIF log as a dict (``json.dumps`` it). ``root``: the repository root (cwd)."""
    rules: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    location = _location(report, root)
    model_uri = location["physicalLocation"]["artifactLocation"]["uri"]
    source = str(report.config.get("compare"))

    def add(rule: dict[str, Any], item: str, message: str) -> None:
        rules.setdefault(rule["id"], rule)
        results.append({
            "ruleId": rule["id"], "level": "error",
            "message": {"text": f"{item}: {message}"},
            "locations": [location],
            "partialFingerprints": _fingerprint(rule["id"], item, model_uri),
            "properties": {"item": item},
        })

    for row in report.results:
        rule = _membership_rule(row.attack, row.probe)
        rules.setdefault(rule["id"], rule)  # every check has a rule, failing or not
        regressions = {regression_reason(c, source): c for c in report.comparison
                       if c.item == row.item_id and not c.passed}
        threshold_reasons = [r for r in row.reasons if r not in regressions]
        if threshold_reasons:
            add(rule, row.item_id, "; ".join(threshold_reasons))
        for reason, check in regressions.items():
            add(_regression_rule(check.metric), row.item_id, reason)
    for record in report.extraction:
        rules.setdefault("s2l/extraction", _extraction_rule())
        if not record.passed:
            add(_extraction_rule(), record.item_id, "; ".join(record.reasons) or
                f"{record.extracted} training images extracted")
    row_items = {row.item_id for row in report.results}
    for check in report.comparison:
        if not check.passed and check.item not in row_items:
            add(_regression_rule(check.metric), check.item,
                regression_reason(check, source))
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "s2l-scan", "version": report.packages.get("s2l-scan", __version__),
                "semanticVersion": report.packages.get("s2l-scan", __version__),
                "rules": [rules[key] for key in sorted(rules)],
            }},
            "automationDetails": {"id": "s2l-scan/"},
            "originalUriBaseIds": {"%SRCROOT%": {"description": {
                "text": "The repository root (the folder the scan ran in)."}}},
            "invocations": [{
                "executionSuccessful": True,
                "properties": {"gate": gate_text(report), "passed": report.passed,
                               "model_hash": report.model.get("model_hash")},
            }],
            "results": results,
        }],
    }
