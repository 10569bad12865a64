"""SARIF 2.1.0 findings of one :class:`ScanReport`, for GitHub code scanning.

One rule per check (each attack, each probe/attack pair, extraction, each memorization
detector, each regression metric, dropped checks); one result per failed item (level
``error``) and per inconclusive gating item (level ``warning``: no leak shown, safety not shown
either), its message the gate's Reason texts and its properties their kinds; located at the
scanned model's ``model_index.json`` and, logically, at its check id
(``baselines::loss[identity-0]``).

Where: the repository root is ``$GITHUB_WORKSPACE``, else the current folder. A model inside it
is given repository-relative (``uriBaseId`` ``%SRCROOT%``), which is what code scanning links to.
A model outside it (the cached reference model, a download in a temporary folder) is given
relative to ``MODELROOT``, the model's parent folder, whose absolute ``file://`` URI appears
once, in ``run.originalUriBaseIds``: no result carries a machine-specific absolute path, and
code scanning shows such a finding without a source link.

Identity: ``partialFingerprints`` hash only the rule, the check id and the model location,
never numbers or timestamps, so a finding keeps its identity across scans and code scanning
closes it when the check passes again. ``primaryLocationLineHash`` (the fingerprint code
scanning itself matches alerts on; upload-sarif computes it from the file's line when it is
absent) is set from the same hash, so two findings on the same line of ``model_index.json``
never merge into one alert.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from s2l_scan import __version__
from s2l_scan.checks import Check, Outcome, Reason
from s2l_scan.report.headline import gate_text
from s2l_scan.report.model import (
    ComparisonCheck,
    ExtractionRecord,
    MemorizationRecord,
    ResultRow,
    ScanReport,
)
from s2l_scan.report.remedies import REMEDIES

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_FINGERPRINT = "s2lScanItem/v1"


_RULE_KINDS = {"membership": "membership", "probe": "amplification", "extraction": "extraction",
               "memorization": "memorization", "regression": "regression"}


def _rule(rule_id: str, name: str, short: str, full: str, severity: str,
          tags: list[str]) -> dict[str, Any]:
    remedy = REMEDIES[_RULE_KINDS[rule_id.split("/")[1]]]
    steps = " ".join(f"({i}) {step}." for i, step in enumerate(remedy.steps, 1))
    return {
        "id": rule_id, "name": name,
        "shortDescription": {"text": short}, "fullDescription": {"text": full},
        "helpUri": remedy.url,
        "help": {"text": f"{full} What you can do: {steps} More: {remedy.url}",
                 "markdown": f"{full}\n\n{remedy.markdown()}"},
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


def _memorization_rule(detector: str) -> dict[str, Any]:
    if detector == "clique":
        return _rule("s2l/memorization/clique", "MemorizedGenerations",
                     "A prompt's generations are near-copies of one another",
                     "Among the images generated from one prompt, at least clique_size are "
                     "near-copies of one another (Carlini et al.'s clique): likely memorized "
                     "generations, found with no known training image.", "8.0",
                     ["memorization"])
    return _rule(f"s2l/memorization/{detector}", "MemorizedPrompt",
                 "A prompt's text guidance is abnormally strong",
                 "The text-conditional noise prediction of a prompt differs from the "
                 "unconditional one by more than max_text_guidance in the first sampling steps "
                 "(Wen et al.): a likely memorized prompt, found with no known training image.",
                 "7.0", ["memorization"])


def _regression_rule(metric: str) -> dict[str, Any]:
    return _rule(f"s2l/regression/{metric}", f"{metric.capitalize()}Regression",
                 f"{metric} rose since the previous release",
                 f"The {metric} of a check rose by more than the allowance (compare_fail) since "
                 "the previous release's report: privacy got worse.", "5.0", ["regression"])


MODEL_ROOT = "MODELROOT"


def repository_root() -> Path:
    """``$GITHUB_WORKSPACE`` (set in every GitHub Actions job), else the current folder."""
    return Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd())


def _location(report: ScanReport, root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The physical location of every finding, and the run's ``originalUriBaseIds``."""
    target = Path(os.path.abspath(Path(str(report.model.get("path", "."))) / "model_index.json"))
    bases: dict[str, Any] = {"%SRCROOT%": {"description": {
        "text": "The repository root ($GITHUB_WORKSPACE, else the folder the report was "
                "written in)."}}}
    try:
        relative = target.relative_to(os.path.abspath(root))
        artifact = {"uri": relative.as_posix(), "uriBaseId": "%SRCROOT%"}
    except ValueError:  # outside the repository, e.g. the cached reference model
        parent = target.parent.parent
        artifact = {"uri": target.relative_to(parent).as_posix(), "uriBaseId": MODEL_ROOT}
        bases[MODEL_ROOT] = {"uri": parent.as_uri() + "/", "description": {
            "text": "The scanned model's parent folder, outside the repository."}}
    return {"physicalLocation": {"artifactLocation": artifact,
                                 "region": {"startLine": 1}}}, bases


def _fingerprints(rule_id: str, item: str, model_uri: str) -> dict[str, str]:
    digest = hashlib.sha256(f"{rule_id}\0{item}\0{model_uri}".encode()).hexdigest()
    return {_FINGERPRINT: digest[:32], "primaryLocationLineHash": f"{digest[:16]}:1"}


def _dropped_rule() -> dict[str, Any]:
    return _rule("s2l/regression/dropped", "DroppedCheck",
                 "A check of the previous release was not run",
                 "The previous release's report has a check that this scan did not run "
                 "(a changed attack, probe or domain selection): no evidence that it did not "
                 "regress. Restore the check or accept it with allow_dropped_checks.",
                 "5.0", ["regression"])


def _rule_of(check: Check) -> dict[str, Any]:
    """The rule of a check, from what it is (never from its reasons' text)."""
    if isinstance(check, ResultRow):
        return _membership_rule(check.attack, check.probe)
    if isinstance(check, ExtractionRecord):
        return _extraction_rule()
    if isinstance(check, MemorizationRecord):
        return _memorization_rule(check.detector)
    assert isinstance(check, ComparisonCheck)
    return _dropped_rule() if check.status == "missing" else _regression_rule(check.metric)


def render_sarif(report: ScanReport, root: Path | None = None) -> dict[str, Any]:
    """The SARIF log as a dict (``json.dumps`` it). ``root``: the repository root (default:
    :func:`repository_root`)."""
    rules: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    location, bases = _location(report, repository_root() if root is None else root)
    model_uri = location["physicalLocation"]["artifactLocation"]["uri"]

    def add(rule: dict[str, Any], item: str, reasons: list[Reason], level: str) -> None:
        rules.setdefault(rule["id"], rule)
        results.append({
            "ruleId": rule["id"], "level": level,
            "message": {"text": f"{item}: {'; '.join(r.text for r in reasons) or level}"},
            "locations": [{**location, "logicalLocations": [
                {"name": item, "fullyQualifiedName": item, "kind": "resource"}]}],
            "partialFingerprints": _fingerprints(rule["id"], item, model_uri),
            "properties": {"item": item, "kinds": sorted({r.kind for r in reasons}),
                           "settings": sorted({r.setting for r in reasons if r.setting}),
                           **({"decide_n": max(r.decide_n for r in reasons if r.decide_n)}
                              if any(r.decide_n for r in reasons) else {})},
        })

    for check in report.checks():
        item = str(check.check_id)
        rule = _rule_of(check)
        if not isinstance(check, ComparisonCheck):
            rules.setdefault(rule["id"], rule)  # every check has a rule, failing or not
        # a record's regression reasons are reported by its comparison check, under its rule
        own = [r for r in check.reasons if r.kind not in ("regression", "dropped")
               or isinstance(check, ComparisonCheck)]
        if check.outcome is Outcome.FAILED and (own or isinstance(check, ComparisonCheck)):
            add(rule, item, own, "error")
        elif check.outcome is Outcome.INCONCLUSIVE and check.gating:
            add(rule, item, own, "warning")
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
            "originalUriBaseIds": bases,
            "invocations": [{
                "executionSuccessful": True,
                "properties": {"gate": gate_text(report), "outcome": str(report.outcome),
                               "passed": report.passed,
                               "model_hash": report.model.get("model_hash")},
            }],
            "results": results,
        }],
    }
