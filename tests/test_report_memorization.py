"""Memorization records (Wen's text-guidance magnitude, Carlini's clique) in every renderer, and
the gate line every renderer prints. Table-driven: each case is one record and what any
renderer must then say; the flagged prompts are recomputed here from the values (the oracle),
never read back from the renderer under test."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from PIL import Image
from report_factory import (
    extraction_record,
    make_report,
    make_row,
    memorization_record,
    sarif_validator,
)

from s2l_scan.checks import Outcome
from s2l_scan.report.console import render_results
from s2l_scan.report.digest import digest_lines, what_leaked
from s2l_scan.report.files import report_from_dict, schema
from s2l_scan.report.headline import gate_text, gate_thresholds, headline
from s2l_scan.report.html_page import render_html
from s2l_scan.report.junit import junit_properties
from s2l_scan.report.markdown import render_markdown
from s2l_scan.report.model import MemorizationRecord, ScanReport
from s2l_scan.report.sarif import render_sarif

# (detector, values, threshold, evidence picture?, expected to fail)
CASES = {
    "wen fails": ("wen", (1.0, 4.5), 3.0, False, True),
    "wen passes": ("wen", (1.0, 2.0), 3.0, False, False),
    "wen at the threshold passes": ("wen", (3.0,), 3.0, False, False),  # > fails, = does not
    "wen ungated": ("wen", (1.0, 9.0), None, False, False),
    "anisotropy fails": ("anisotropy", (-0.4, 2.5), 2.0, False, True),
    "anisotropy at the threshold passes": ("anisotropy", (2.0,), 2.0, False, False),
    "anisotropy passes, all negative": ("anisotropy", (-0.9, -0.2), -0.1, False, False),
    "anisotropy ungated": ("anisotropy", (0.5, 7.0), None, False, False),
    "clique fails, pictured": ("clique", (12, 2), 10, True, True),
    "clique at the size fails": ("clique", (10,), 10, False, True),  # ≥ fails
    "clique passes": ("clique", (3, 2), 10, False, False),
    "clique ungated": ("clique", (30,), None, False, False),
}


def _oracle(detector: str, values: tuple[float, ...], threshold: float | None) -> list[int]:
    """The indices of the prompts past the threshold: magnitude > max_text_guidance, anisotropy
    score > max_anisotropy, clique size ≥ clique_size (the config's documented rules); none
    without a threshold."""
    if threshold is None:
        return []
    return [i for i, v in enumerate(values)
            if (v >= threshold if detector == "clique" else v > threshold)]


def _picture(tmp_path: Path) -> Path:
    path = tmp_path / "likely-memorized-identity-0-000.png"
    Image.new("RGB", (8, 4), (200, 10, 10)).save(path)
    return path


def _case(name: str, tmp_path: Path) -> tuple[ScanReport, MemorizationRecord, list[int], bool]:
    detector, values, threshold, pictured, fails = CASES[name]
    evidence = str(_picture(tmp_path)) if pictured else None
    record = memorization_record(detector, values=values, threshold=threshold, evidence=evidence)
    config = {"wen": {"memorization_starts": 2, "max_text_guidance": threshold},
              "anisotropy": {"anisotropy_starts": 2, "max_anisotropy": threshold},
              "clique": {"clique_generations": 16, "clique_size": int(threshold or 10)}}[detector]
    report = make_report([make_row(domain="identity-0")], memorization=[record], config=config)
    return report, record, _oracle(detector, values, threshold), fails


@pytest.mark.parametrize("name", CASES)
def test_the_gate_and_the_report_agree_with_the_oracle(name: str, tmp_path: Path) -> None:
    report, record, flagged, fails = _case(name, tmp_path)
    gated = record.threshold is not None
    assert record.gating is gated and bool(flagged) is fails
    assert record.outcome is (Outcome.FAILED if fails else Outcome.PASSED if gated
                              else Outcome.INCONCLUSIVE)  # not gated: reported, shows nothing
    assert [record.prompts.index(p) for p in record.flagged] == flagged
    assert (record.item_id in report.failed_items) is fails
    assert report.passed is not fails  # the one row passes
    assert headline(report)["checks"] == 2  # the row and the memorization record


@pytest.mark.parametrize("name", CASES)
def test_console_has_a_memorization_group_with_a_reason_per_failure(name: str,
                                                                     tmp_path: Path) -> None:
    report, record, flagged, fails = _case(name, tmp_path)
    text = render_results(report, width=160)
    assert "\nmemorization (" in text
    line = next(line for line in text.splitlines() if line.startswith(record.item_id))
    gated = record.threshold is not None
    assert ("FAIL" in line) is fails and ("pass" in line) is (gated and not fails)
    assert ("reported" in line) is not gated  # never "pass" for a check that does not gate
    assert f" {record.largest:.4g} " in line  # the largest magnitude or clique size
    assert (" - " in line) is (record.threshold is None)  # threshold '-': reported, not gated
    reasons = [line for line in text.splitlines() if line.startswith(f"  ✗ {record.item_id}")]
    assert len(reasons) == int(fails)
    for index in flagged:  # each flagged prompt, its value and the threshold, on one line
        prompt, value = record.prompts[index]["prompt"], record.prompts[index]["value"]
        assert repr(prompt) in reasons[0] and f"{value:.4g}" in reasons[0]
        assert f"{record.threshold:g}" in reasons[0]
    assert (f"verdict: FAILED ({int(fails)} of 2 checks failed)" if fails else
            f"verdict: PASSED (all {1 + gated} gating checks showed safety"
            f"{'' if gated else ' (1 reported, not gated)'})") in text


@pytest.mark.parametrize("name", CASES)
def test_the_digest_lists_the_flagged_prompts(name: str, tmp_path: Path) -> None:
    report, record, flagged, _ = _case(name, tmp_path)
    (memorization,) = what_leaked(report).memorization
    assert [m.prompt for m in memorization.flagged] == [
        record.prompts[i]["prompt"] for i in sorted(flagged, key=lambda i: -float(
            record.prompts[i]["value"]))]
    assert memorization.largest is not None and memorization.largest.value == record.largest
    lines = digest_lines(what_leaked(report))
    said = "\n".join(lines)
    if flagged:
        assert "likely memorized" in said
        for index in flagged:
            assert repr(record.prompts[index]["prompt"]) in said
    else:
        assert "likely memorized" not in said
        assert ("reported, not gated" in said) is (record.threshold is None)
        assert ("no prompt flagged" in said) is (record.threshold is not None)


@pytest.mark.parametrize("name", CASES)
def test_html_has_a_section_and_embeds_the_clique_picture(name: str, tmp_path: Path) -> None:
    report, record, flagged, fails = _case(name, tmp_path)
    page = render_html(report)
    assert '<details class="section" id="memorization">' in page
    assert '<a href="#memorization">' in page
    summary = re.search(r'<tr class="(ok|fail)"><td class=l><code class="id">'
                        + re.escape(record.item_id), page)
    assert summary is not None and (summary[1] == "fail") is fails
    section = page[page.index('id="memorization"'):page.index('id="details"')]
    for prompt in record.prompts:  # every prompt's value, in the section
        assert f"<td>{float(prompt['value']):.4g}</td>" in section
    assert section.count("flagged</span>") == len(flagged)
    assert ("reported, not gated" in section) is (record.threshold is None)
    evidence = record.prompts[0].get("evidence")
    encoded = base64.b64encode(Path(evidence).read_bytes()).decode() if evidence else None
    if encoded:
        leaked = page.split('<nav class="toc"')[0]
        assert encoded in leaked and encoded in section  # first in what leaked, then here
    else:
        assert "data:image/png" not in page


@pytest.mark.parametrize("name", CASES)
def test_markdown_has_a_memorization_table_and_the_failure(name: str, tmp_path: Path) -> None:
    report, record, _, fails = _case(name, tmp_path)
    text = render_markdown(report)
    row = next(line for line in text.splitlines() if line.startswith(f"| `{record.item_id}`"))
    assert ("**FAIL**" in row) is fails
    assert f"| {record.largest:.4g} |" in row
    assert ("reported, not gated" in row) is (record.threshold is None)
    failures = text.split("### Failures")[1].split("###")[0] if "### Failures" in text else ""
    assert (f"- `{record.item_id}`:" in failures) is fails


@pytest.mark.parametrize("name", CASES)
def test_sarif_finds_each_failing_record_and_validates(name: str, tmp_path: Path) -> None:
    report, record, _, fails = _case(name, tmp_path)
    log = render_sarif(report, root=tmp_path)
    sarif_validator().validate(log)
    run = log["runs"][0]
    rule = f"s2l/memorization/{record.detector}"
    assert rule in {r["id"] for r in run["tool"]["driver"]["rules"]}  # a rule, failing or not
    found = [r for r in run["results"] if r["ruleId"] == rule]
    assert [r["properties"]["item"] for r in found] == ([record.item_id] if fails else [])


@pytest.mark.parametrize("name", CASES)
def test_junit_lists_each_record_with_its_largest_value(name: str, tmp_path: Path) -> None:
    report, record, _, _ = _case(name, tmp_path)
    properties = dict(junit_properties(report))
    detector, values, _, _, _ = CASES[name]
    assert properties[f"s2l.observed_largest.{record.item_id}"] == f"{max(values):.6g}"
    key = {"wen": "max_text_guidance", "anisotropy": "max_anisotropy",
           "clique": "clique_size"}[detector]
    configured = report.config[key]  # "": max_text_guidance unset, reported, not gated
    assert properties[f"s2l.threshold_{key}"] == ("" if configured is None else str(configured))


@pytest.mark.parametrize("name", CASES)
def test_a_saved_report_reads_back_with_typed_records(name: str, tmp_path: Path) -> None:
    report, record, _, _ = _case(name, tmp_path)
    body: dict[str, Any] = json.loads(json.dumps(report.to_dict()))
    jsonschema.validate(body, schema())
    again = report_from_dict(body)
    assert isinstance(again.memorization[0], MemorizationRecord)
    assert again.memorization[0].flagged == record.flagged
    assert again.failed_items == report.failed_items
    assert render_markdown(again) == render_markdown(report)  # `s2l-scan report A.json`


# ---------------------------------------------------------------------------------------------
# the gate line: every threshold the gate used, from one function, in every renderer

def _report(kind: str) -> ScanReport:
    if kind == "baselines":
        return make_report()
    if kind == "probes":
        return make_report([make_row(), make_row(probe="noise")])
    if kind == "extraction":
        return make_report(extraction=[extraction_record()])
    if kind == "wen":
        return make_report(memorization=[memorization_record("wen", threshold=None)],
                           config={"memorization_starts": 2})
    if kind == "anisotropy":
        return make_report(memorization=[memorization_record("anisotropy", threshold=None)],
                           config={"anisotropy_starts": 2})
    if kind == "clique":
        return make_report(memorization=[memorization_record("clique", threshold=7)],
                           config={"clique_generations": 8, "clique_size": 7})
    report = make_report()
    report.config.update(compare="v1.json", compare_fail="auc:+0.02")
    return report


@pytest.mark.parametrize(("kind", "keys"), [
    # with no detector on, the line says memorization went unchecked (memorization_starts 0, …)
    ("baselines", ["max_auc", "max_tpr", "memorization_starts", "family_alpha"]),
    ("probes", ["max_auc", "max_tpr", "max_amplification", "memorization_starts",
                "family_alpha"]),
    ("extraction", ["max_auc", "max_tpr", "max_extracted", "memorization_starts",
                    "family_alpha"]),
    ("wen", ["max_auc", "max_tpr", "max_text_guidance", "family_alpha"]),
    ("anisotropy", ["max_auc", "max_tpr", "max_anisotropy", "family_alpha"]),
    ("clique", ["max_auc", "max_tpr", "clique_size", "family_alpha"]),
    ("compare", ["max_auc", "max_tpr", "memorization_starts", "family_alpha", "compare_fail"]),
])
def test_the_gate_line_lists_every_threshold_used_in_every_renderer(kind: str,
                                                                     keys: list[str]) -> None:
    report = _report(kind)
    assert [key for key, _ in gate_thresholds(report)] == keys
    line = gate_text(report)
    for key in keys:  # each with the configured value
        value = report.config[key]
        assert f"{key} {'none' if value is None else value}" in line
    assert gate_text(report) in render_results(report, width=10_000)
    assert gate_text(report) in render_html(report).replace("&#x27;", "'")
    assert gate_text(report) in render_markdown(report)
    if not report.memorization:
        assert ("memorization_starts 0, anisotropy_starts 0, clique_generations 0 "
                "(prompt-level memorization not checked)") in line
    elif kind in ("wen", "anisotropy"):  # on, with no threshold: the default
        assert "reported, not gated" in line
