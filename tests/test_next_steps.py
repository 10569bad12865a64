"""What to do next, budget cuts and reused units: in the console, the HTML page and SARIF."""

from __future__ import annotations

import re
from pathlib import Path

from report_factory import extraction_record, make_report, make_row, sarif_validator

from s2l_scan.checks import Reason
from s2l_scan.report.console import render_results
from s2l_scan.report.remedies import REMEDIES, check_kind, failed_kinds, next_steps
from s2l_scan.report.run_notes import budget_lines, reuse_line
from s2l_scan.report.sarif import render_sarif

ROOT = Path(__file__).resolve().parents[1]

BUDGET = {"budget_s": 1.0, "predicted_s": 52.0, "fits": False, "seconds_per_sample_forward": 0.1,
          "cuts": [{"setting": "extraction_samples", "before": 32, "after": 8,
                    "power": "P(find an image regenerated 5% of the time) 81% -> 34%"}]}


def _failing() -> object:
    amplified = make_row(domain="identity-0", shift=3.0, probe="noise")
    amplified.reasons = [Reason("amplification", "max_amplification", 0.2, 0.05, "Δ +0.2")]
    rows = [make_row(domain="identity-0", shift=3.0), amplified,
            make_row(domain="identity-1", shift=3.0, probe="noise")]  # fails on its AUC
    return make_report(rows, extraction=[extraction_record(extracted=2)])


def test_every_kind_has_a_docs_page_saying_what_it_measured_and_what_to_do() -> None:
    for remedy in REMEDIES.values():
        page = (ROOT / remedy.page).read_text()
        assert page.startswith("# ") and "## What it measured" in page
        assert "## What you can do" in page and "## Why it fails" in page


def test_check_ids_map_to_their_kind() -> None:
    assert [check_kind(i) for i in ("baselines::loss[a]", "probes::lora/pia[a]",
                                    "extraction::noise[a]", "memorization::wen[a]")] == [
        "membership", "amplification", "extraction", "memorization"]


def test_a_failed_scan_says_what_to_do_next_per_kind_and_a_pass_says_nothing() -> None:
    report = _failing()
    # counted by the kind of the failing reason: the probe row that fails on its AUC is a
    # membership failure of the shaken copy, not an amplification
    assert failed_kinds(report) == {"membership": 2, "amplification": 1, "extraction": 1}
    text = render_results(report, width=200)
    section = text.split("what to do next", 1)[1]
    assert "docs/checks/membership.md" in section and "docs/checks/extraction.md" in section
    assert section.index("docs/checks/extraction.md") < section.index("verdict:")
    passing = make_report([make_row(domain="identity-0")])
    assert next_steps(passing) == [] and "what to do next" not in render_results(passing)


def test_sarif_rules_carry_help_and_a_help_uri_per_kind(tmp_path: Path) -> None:
    log = render_sarif(_failing(), root=tmp_path)
    sarif_validator().validate(log)
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert {rule["id"] for rule in rules} >= {"s2l/membership/loss", "s2l/extraction",
                                              "s2l/probe/noise/loss"}
    for rule in rules:
        assert re.fullmatch(r"https://\S+/docs/checks/\w+\.md", rule["helpUri"])
        assert "What you can do" in rule["help"]["markdown"]
        assert "What you can do" in rule["help"]["text"]


def test_a_budget_cut_is_in_the_console_and_says_it_did_not_fit() -> None:
    report = _failing()
    report.model["sampling"] = {"budget": BUDGET}
    assert budget_lines(report)[0].startswith("budget cut: extraction_samples 32 → 8")
    assert "does not fit" in budget_lines(report)[1]
    text = render_results(report, width=200)
    assert "budget cut: extraction_samples 32 → 8" in text
    assert budget_lines(make_report()) == []


def test_a_rerun_says_how_many_units_it_reused() -> None:
    report = make_report()
    assert reuse_line(report) is None  # nothing reused: nothing said
    report.timestamps.update(unit_cache="/c/units", units_reused="36", units_computed="0")
    line = reuse_line(report)
    assert line is not None and line.startswith("reused 36 of 36 units from /c/units")
    assert line in render_results(report, width=200)


def test_the_html_first_screen_names_the_budget_cut_and_what_to_do_next() -> None:
    from s2l_scan.report.html_page import render_html

    report = _failing()
    report.model["sampling"] = {"budget": BUDGET}
    page = render_html(report)
    notes, leaked = page.index('id="run-notes"'), page.index('id="leaked"')
    assert notes < leaked and "extraction_samples 32 → 8" in page[notes:leaked]
    steps = page.index('id="next-steps"')
    assert leaked < steps < page.index('class="toc"')
    assert "docs/checks/extraction.md" in page[steps:]
    assert 'id="next-steps"' not in render_html(make_report([make_row(domain="identity-0")]))


def test_the_markdown_summary_names_the_budget_cut_and_what_to_do_next() -> None:
    from s2l_scan.report.markdown import render_markdown

    report = _failing()
    report.model["sampling"] = {"budget": BUDGET}
    text = render_markdown(report)
    assert "### This run" in text and "extraction_samples 32 → 8" in text
    assert text.index("### This run") < text.index("### What to do next") < text.index(
        "### Results")
    assert "### What to do next" not in render_markdown(make_report([make_row()]))


def test_an_evidence_triplet_says_which_panel_is_which(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from s2l_scan.report.html_page import render_html

    Image.fromarray(np.zeros((4, 12, 3), np.uint8)).save(tmp_path / "pair.png")
    record = extraction_record(extracted=1, evidence=[str(tmp_path / "pair.png")])
    page = render_html(make_report([make_row()], extraction=[record]))
    assert "generated · training image · difference" in page
