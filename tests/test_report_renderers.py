"""Renderers of one ScanReport: JSON schema, Markdown, HTML (+ headless Chromium), SARIF, JUnit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from PIL import Image
from report_factory import extraction_record, make_report, make_row, sarif_validator
from sklearn.metrics import roc_auc_score, roc_curve

from s2l_scan.gate import apply_comparison, compare_reports
from s2l_scan.report import charts
from s2l_scan.report.files import schema
from s2l_scan.report.html_page import render_html
from s2l_scan.report.junit import junit_properties
from s2l_scan.report.markdown import render_markdown
from s2l_scan.report.model import ComparisonCheck
from s2l_scan.report.sarif import render_sarif


def _as_json(report: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(report.to_dict()))
    return body


# ---------------------------------------------------------------------------------------------
# the maths behind the charts, against sklearn

@pytest.mark.parametrize(("members", "nonmembers"), [
    ([0.9, 0.8, 0.7], [0.1, 0.2, 0.3]),
    ([0.1, 0.2], [0.8, 0.9]),
    ([0.5, 0.5, 0.7, 0.1], [0.5, 0.2, 0.5]),  # ties across the classes
    ([1.0] * 4, [1.0] * 5),
    ([float(i % 7) for i in range(40)], [float(i % 5) for i in range(33)]),
])
def test_roc_points_lie_on_sklearn_curve_and_keep_its_area(members: list[float],
                                                           nonmembers: list[float]) -> None:
    labels = [1] * len(members) + [0] * len(nonmembers)
    fpr, tpr, _ = roc_curve(labels, members + nonmembers, drop_intermediate=False)
    exact = {(round(f, 12), round(t, 12)) for f, t in zip(fpr, tpr, strict=True)}
    points = charts.roc_points(members, nonmembers)
    assert points[0] == (0.0, 0.0) and points[-1] == (1.0, 1.0)
    assert {(round(f, 12), round(t, 12)) for f, t in points} <= exact
    assert charts.trapezoid_area(points) == pytest.approx(roc_auc_score(labels,
                                                                        members + nonmembers))


def test_histogram_fractions_match_numpy() -> None:
    import numpy as np

    values = [0.1, 0.2, 0.2, 0.9, 1.0, 0.55]
    edges = charts.shared_edges(values, [0.0], bins=5)
    expected, _ = np.histogram(values, bins=edges)
    assert charts.histogram(values, edges) == pytest.approx(list(expected / len(values)))


# ---------------------------------------------------------------------------------------------
# JSON schema

def test_schema_is_valid_and_accepts_reports_with_extraction_and_comparison() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    report = make_report(extraction=[extraction_record(extracted=1)])
    report.comparison = [ComparisonCheck(
        item="baselines::loss[identity-0]", metric="auc", attack="loss", probe=None,
        domain="identity-0", previous=0.5, current=0.6, change=0.1, allowance="auc:+0.02",
        status="regressed", passed=False)]
    jsonschema.Draft202012Validator(schema()).validate(_as_json(report))


@pytest.mark.parametrize("breakage", ["drop-verdict", "auc-out-of-range", "unknown-top-key"])
def test_schema_rejects_broken_reports(breakage: str) -> None:
    body = _as_json(make_report())
    if breakage == "drop-verdict":
        del body["verdict"]
    elif breakage == "auc-out-of-range":
        body["results"][0]["auc"] = 1.5
    else:
        body["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema()).validate(body)


# ---------------------------------------------------------------------------------------------
# Markdown

def test_markdown_states_verdict_failures_and_escapes_cells() -> None:
    rows = [make_row(domain="a|b"), make_row(domain="identity-1", shift=3.0)]
    text = render_markdown(make_report(rows))
    assert "❌ **FAILED** (1 of 2 checks failed)" in text
    assert "### Failures" in text and "`baselines::loss[identity-1]`: AUC" in text
    assert "baselines::loss[a\\|b]" in text  # a pipe would split the table row
    table = [line for line in text.splitlines() if line.startswith("| `baselines")]
    assert len(table) == 2 and all(line.count(" | ") == 8 for line in table)


def test_extraction_counts_images_generations_and_nonmember_matches_apart() -> None:
    from s2l_scan.report.console import render_results
    from s2l_scan.report.headline import headline

    # 2 distinct member images, matched by 7 generations; 3 generations near a non-member.
    record = extraction_record(extracted=2, matched_generations=7, nonmember_matches=3)
    report = make_report(extraction=[record, extraction_record(domain="identity-1")])
    row = next(line for line in render_markdown(report).splitlines()
               if line.startswith("| released | identity-0"))
    assert [cell.strip() for cell in row.split("|")[3:7]] == ["2", "7", "7", "3"]
    printed = render_results(report, width=400)
    line = next(line for line in printed.splitlines()
                if line.startswith("extraction::released[identity-0]"))
    assert line.split()[1:5] == ["2", "7/7", "3", "0.0500"]  # extracted, matched, non-member
    printed = " ".join(printed.split())
    assert "itself included" in printed and "the known member images stand in" in printed
    html = render_html(report, search=[])
    assert "2 training images extracted (matched by 7 of 7 generations)" in html
    top = headline(report)
    assert (top["extracted"], top["matched_generations"], top["nonmember_matches"]) == (2, 7, 3)
    jsonschema.Draft202012Validator(schema()).validate(_as_json(report))


def test_none_extracted_prints_the_copy_rate_bound_in_every_renderer() -> None:
    # "0 extracted of 4 generations" bounds the copy rate only below 1 − 0.05^(1/4) = 52.7%
    # (one-sided 95% Clopper–Pearson); a count alone reads as "never copies"
    from s2l_scan.report.console import render_results

    report = make_report(extraction=[extraction_record(domain="identity-1"),
                                     extraction_record(extracted=2)])
    bound = f"0 (copy rate < {1 - 0.05 ** (1 / 4):.1%})"
    assert bound == "0 (copy rate < 52.7%)"
    row = next(line for line in render_markdown(report).splitlines()
               if line.startswith("| released | identity-1"))
    assert row.split("|")[3].strip() == bound
    assert bound in " ".join(render_results(report, width=400).split())
    assert f"<td>{bound}</td>" in render_html(report, search=[])
    assert "2 (copy rate" not in render_markdown(report)  # a count of copies needs no bound


def test_headline_counts_an_image_extracted_by_two_checks_once() -> None:
    from s2l_scan.report.headline import headline

    first, second = extraction_record(extracted=1), extraction_record(extracted=2)
    second.probe = "noise"  # the same identity-0 member 0000 is extracted by both copies
    assert headline(make_report(extraction=[first, second]))["extracted"] == 2


@pytest.mark.parametrize("field", ["matched_generations", "nonmember_matches"])
def test_schema_requires_the_separate_extraction_counts(field: str) -> None:
    body = _as_json(make_report(extraction=[extraction_record(extracted=1)]))
    del body["extraction"][0][field]
    with pytest.raises(jsonschema.ValidationError, match=field):
        jsonschema.Draft202012Validator(schema()).validate(body)


def test_markdown_is_cut_under_the_limit_with_a_note() -> None:
    rows = [make_row(domain=f"d{i}", n=2) for i in range(400)]
    full = render_markdown(make_report(rows))
    cut = render_markdown(make_report(rows), limit=8_000)
    assert len(full.encode()) > 8_000 >= len(cut.encode())
    assert "**Truncated**" in cut and "more lines were left out" in cut
    assert "**Truncated**" not in full


# ---------------------------------------------------------------------------------------------
# HTML

def _evidence(tmp_path: Path) -> str:
    image = Image.new("RGB", (24, 8), (200, 30, 30))
    path = tmp_path / "pair.png"
    image.save(path)
    return path.name  # relative: found through the search folders


def test_html_is_self_contained_with_charts_and_inline_evidence(tmp_path: Path) -> None:
    record = extraction_record(extracted=1, evidence=[_evidence(tmp_path)])
    missing = extraction_record(domain="identity-1", extracted=1, evidence=["gone.png"])
    page = render_html(make_report(extraction=[record, missing]), search=[tmp_path])
    lowered = page.lower()
    for forbidden in ("<script", "<link", "src=\"http", "href=\"http", "url(", "@import"):
        assert forbidden not in lowered
    assert "default-src 'none'" in page  # a CSP forbids any network load
    assert page.count('<svg class="chart roc log"') == 1  # and the same on linear axes
    assert page.count('<svg class="chart roc linear"') == 1
    assert page.count('<svg class="chart hist"') == 3
    assert "blind baseline" in page
    leaked, rest = page.split('<nav class="toc"')
    assert leaked.count('src="data:image/png;base64,') == 1  # the extracted image, first
    assert rest.count('src="data:image/png;base64,') == 1  # and in the extraction evidence
    assert "image: gone.png" in page


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(html: Path, png: Path, profile: Path, height: int = 1600) -> None:
    """Render ``html`` in headless Chromium (no network, no GPU) into ``png``."""
    browser = _chromium()
    assert browser is not None
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--hide-scrollbars",
                    f"--user-data-dir={profile}", f"--window-size=1280,{height}",
                    f"--screenshot={png}", html.as_uri()],
                   check=True, capture_output=True, timeout=120,
                   env={**os.environ, "HOME": str(profile)})


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed "
                    "(Debian: apt-get install chromium; .ci/run installs it)")
def test_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    html.write_text(render_html(make_report()), encoding="utf-8")
    png = tmp_path / "shot.png"
    screenshot(html, png, tmp_path / "profile")
    image = Image.open(png).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    background = max(colours)[1]
    drawn = sum(count for count, colour in colours if colour != background)
    assert drawn > 0.02 * image.width * image.height  # text, tables and charts, not a blank page
    red = sum(count for count, (r, g, b) in colours if r > 180 and g < 80 and b < 80)
    assert red > 500  # the FAILED banner (#cf222e) and the member-score bars


# ---------------------------------------------------------------------------------------------
# SARIF

def test_sarif_validates_and_locates_findings_at_model_index(tmp_path: Path) -> None:
    model = tmp_path / "models" / "demo"
    report = make_report(model_path=str(model),
                         extraction=[extraction_record(extracted=2), extraction_record(
                             domain="identity-1")])
    log = render_sarif(report, root=tmp_path)
    sarif_validator().validate(log)
    run = log["runs"][0]
    assert {rule["id"] for rule in run["tool"]["driver"]["rules"]} == {
        "s2l/membership/loss", "s2l/extraction"}
    assert [result["ruleId"] for result in run["results"]] == [
        "s2l/membership/loss", "s2l/membership/loss", "s2l/extraction"]  # the failed items only
    location = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": "models/demo/model_index.json", "uriBaseId": "%SRCROOT%"}


def test_sarif_fingerprints_are_stable_across_scans(tmp_path: Path) -> None:
    def fingerprints(shift: float, started: str) -> list[dict[str, str]]:
        rows = [make_row(domain="identity-1", shift=shift)]
        log = render_sarif(make_report(rows, started=started), root=tmp_path)
        return [r["partialFingerprints"] for r in log["runs"][0]["results"]]

    first = fingerprints(3.0, "2026-01-01T00:00:00+00:00")
    assert first and first == fingerprints(2.5, "2026-02-01T00:00:00+00:00")


@pytest.mark.parametrize(("model", "workspace", "artifact", "base"), [
    ("repo/models/demo", "repo", {"uri": "models/demo/model_index.json",
                                  "uriBaseId": "%SRCROOT%"}, None),
    ("repo/models/demo", None, {"uri": "repo/models/demo/model_index.json",
                                "uriBaseId": "%SRCROOT%"}, None),  # no workspace: the cwd
    ("cache/ref/model", "repo", {"uri": "model/model_index.json", "uriBaseId": "MODELROOT"},
     "cache/ref/"),  # outside: relative to the model's parent, named once in the run
])
def test_sarif_locations_are_repository_relative_or_a_named_base(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str, workspace: str | None,
        artifact: dict[str, str], base: str | None) -> None:
    monkeypatch.chdir(tmp_path)
    if workspace is None:
        monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)
    else:
        monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path / workspace))
    log = render_sarif(make_report(model_path=str(tmp_path / model)))
    sarif_validator().validate(log)
    run = log["runs"][0]
    assert run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"] == artifact
    assert "file://" not in json.dumps(run["results"])  # no machine path in any finding
    bases = run["originalUriBaseIds"]
    assert (bases.get("MODELROOT", {}).get("uri")) == (
        None if base is None else (tmp_path / base).as_uri() + "/")


def test_sarif_findings_are_distinct_per_check(tmp_path: Path) -> None:
    # two failing domains of one attack: one rule, one line of model_index.json, two alerts
    rows = [make_row(domain="identity-0", shift=3.0), make_row(domain="identity-1", shift=3.0)]
    results = render_sarif(make_report(rows), root=tmp_path)["runs"][0]["results"]
    assert {r["ruleId"] for r in results} == {"s2l/membership/loss"}
    logical = [r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] for r in results]
    assert logical == ["baselines::loss[identity-0]", "baselines::loss[identity-1]"]
    for key in ("s2lScanItem/v1", "primaryLocationLineHash"):
        assert len({r["partialFingerprints"][key] for r in results}) == 2


def test_sarif_reports_a_dropped_check(tmp_path: Path) -> None:
    report = make_report([make_row(domain="identity-0")])
    report.config["compare"] = "v1.json"
    previous = make_report([make_row(domain="identity-0"), make_row(domain="gone")])
    apply_comparison(report, compare_reports(json.loads(json.dumps(previous.to_dict())),
                                             report.to_dict()), "v1.json")
    log = render_sarif(report, root=tmp_path)
    sarif_validator().validate(log)
    [result] = log["runs"][0]["results"]
    assert result["ruleId"] == "s2l/regression/dropped"
    assert result["message"]["text"].startswith(
        "baselines::loss[gone]: dropped: checked in the previous report v1.json")


# ---------------------------------------------------------------------------------------------
# JUnit properties

def test_junit_properties_carry_the_headline() -> None:
    report = make_report(extraction=[extraction_record(extracted=3)])
    properties = dict(junit_properties(report))
    assert properties["s2l.verdict"] == "failed"
    assert properties["s2l.observed_extracted"] == "3"
    assert properties["s2l.observed_matched_generations"] == "3"
    assert properties["s2l.observed_nonmember_matches"] == "0"
    assert properties["s2l.observed_max_auc_check"] == "baselines::loss[identity-1]"
    assert float(properties["s2l.observed_max_auc"]) == pytest.approx(
        max(row.auc for row in report.results), rel=1e-5)
    assert float(properties["s2l.observed_auc.baselines::loss[pooled]"]) > 0.5


@pytest.mark.parametrize(("name", "key"), [
    ("s2l.threshold_max_auc", "max_auc"),
    ("s2l.threshold_max_tpr_at_1pct_fpr", "max_tpr"),
    ("s2l.threshold_max_extracted", "max_extracted"),
    ("s2l.threshold_max_amplification", "max_amplification"),
])
def test_junit_thresholds_are_the_configured_limits(name: str, key: str) -> None:
    report = make_report()
    report.config[key] = 7  # a limit no measurement could produce
    properties = dict(junit_properties(report))
    assert float(properties[name]) == 7


def test_junit_numbers_say_whether_they_were_observed_or_allowed() -> None:
    # the finding: "s2l.max_auc" was the largest AUC seen but read like the gate's max_auc
    names = [name for name, _ in junit_properties(make_report())]
    numeric = [n for n in names if "auc" in n or "tpr" in n or "extracted" in n]
    assert numeric and all(n.startswith(("s2l.observed_", "s2l.threshold_")) for n in numeric)
