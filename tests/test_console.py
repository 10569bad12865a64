"""The console summary, the 'what leaked' digest and the plain progress lines, on factory
reports (tests/report_factory.py)."""

from __future__ import annotations

import pytest
from report_factory import extraction_record, make_report, make_row

from s2l_scan.report.console import render_results, terminal_width
from s2l_scan.report.digest import short_reason, what_leaked
from s2l_scan.report.model import ResultRow, ScanReport

LONG_PROBE = "sweep:noise(sigma=0.001)"


def _probe_row(attack: str, domain: str, shift: float, delta: float, probe: str = "noise",
               **flags: bool) -> ResultRow:
    row = make_row(attack, domain, shift=shift, probe=probe)
    row.delta_auc, row.delta_auc_ci = delta, (delta - 0.05, delta + 0.05)
    for flag, on in flags.items():
        setattr(row, flag, on)
    return row


def _report() -> ScanReport:
    rows = [make_row("loss", "identity-0"), make_row("secmi", "identity-1", shift=3.0),
            _probe_row("loss", "identity-0", 0.5, 0.02, unstable=True),
            _probe_row("pia", "identity-1", 3.0, 0.30, probe=LONG_PROBE),
            _probe_row("loss", "identity-1", 0.0, -0.10, underpowered=True)]
    return make_report(rows, extraction=[extraction_record("identity-0", extracted=2),
                                         extraction_record("identity-1")])


def _ids(report: ScanReport) -> list[str]:
    return [row.item_id for row in report.results] + [r.item_id for r in report.extraction]


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_no_check_id_is_cut_and_no_line_overflows(width: int) -> None:
    report = _report()
    text = render_results(report, width=width)
    lines = text.splitlines()
    assert "…" not in text
    assert max(len(line) for line in lines) <= width
    table_ids = {line.split()[0] for line in lines if "::" in line.split(" ")[0]}
    assert set(_ids(report)) <= table_ids  # every id whole, at the start of its table row


def test_an_id_wider_than_the_line_folds_and_keeps_every_character() -> None:
    row = make_row("loss", "d" * 70, shift=3.0)
    text = render_results(make_report([row]), width=50)
    assert "…" not in text
    assert row.item_id in "".join(text.split())


@pytest.mark.parametrize(("width", "shown", "hidden"), [
    (200, ["AUC [95% CI]", "ΔAUC [95% CI]", "+0.300 [+0.25, +0.35]"], []),
    (80, ["ΔAUC", "+0.300"], ["[+0.25, +0.35]"]),  # a narrow line drops the CIs first
])
def test_probes_show_delta(width: int, shown: list[str], hidden: list[str]) -> None:
    text = render_results(_report(), width=width)
    table = text[:text.index("\ngate:")]  # the tables, not the digest
    assert all(part in table for part in shown)
    assert not any(part in table for part in hidden)


def test_every_failure_has_a_one_line_reason() -> None:
    report = _report()
    text = render_results(report, width=200)
    failed = [c for c in [*report.results, *report.extraction] if not c.passed]
    assert failed
    for check in failed:
        line = next(line for line in text.splitlines() if f"✗ {check.item_id}: " in line)
        assert short_reason(check.reasons[0].text) in line


def test_the_legend_explains_the_flags_that_occur_only() -> None:
    text = " ".join(render_results(_report(), width=200).split())
    assert "unstable (1 row): the two calibration halves" in text
    assert "underpowered (1 row): too few samples" in text
    assert "confounded (" not in text


def test_the_digest_comes_last_with_the_verdict() -> None:
    report = _report()
    lines = render_results(report, width=200).splitlines()
    digest = lines[lines.index("what leaked"):]
    assert digest[-1] == f"verdict: FAILED ({len(report.failed_items)} of 7 checks failed)"
    assert any(f"largest amplification: probes::{LONG_PROBE}/pia[identity-1] ΔAUC +0.300"
               in line for line in digest)
    assert any("identity-0/members/0000.png" in line for line in digest)


@pytest.mark.parametrize(("columns", "expected"), [("80", 80), ("200", 200), (None, 120)])
def test_width_follows_the_terminal_and_is_120_in_a_log(monkeypatch: pytest.MonkeyPatch,
                                                        columns: str | None,
                                                        expected: int) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    # pytest's own stdout is no terminal here (captured): the fallback is the CI width
    assert terminal_width() == expected
    lines = render_results(_report()).splitlines()
    assert max(len(line) for line in lines) <= expected


# ---------------------------------------------------------------------------------------------
# the digest

def test_digest_worst_attack_per_domain_over_baselines_and_probes() -> None:
    digest = what_leaked(_report())
    worst = {w.domain: w.check_id for w in digest.worst}
    report = _report()
    for domain in ("identity-0", "identity-1"):  # oracle: a plain max over the rows
        rows = [row for row in report.results if row.domain == domain]
        assert worst[domain] == max(rows, key=lambda row: row.auc).item_id
    assert list(worst) == ["identity-0", "identity-1"]


def test_digest_counts_each_extracted_image_once_with_every_check_that_found_it() -> None:
    first, second = extraction_record(extracted=2), extraction_record(extracted=1)
    second.probe = "noise"
    digest = what_leaked(make_report(extraction=[first, second]))
    found = {e.image: e.check_ids for e in digest.extracted}
    assert found == {
        "identity-0/members/0000.png": ("extraction::released[identity-0]",
                                        "extraction::noise[identity-0]"),
        "identity-0/members/0001.png": ("extraction::released[identity-0]",)}


@pytest.mark.parametrize(("deltas", "expected"), [
    ([], None),
    ([-0.2, 0.1, 0.05], 0.1),
    ([-0.3, -0.1], -0.1),  # no probe amplified: the least negative is still reported
])
def test_digest_largest_amplification(deltas: list[float], expected: float | None) -> None:
    rows = [make_row("loss", "identity-0"),
            *(_probe_row("loss", f"d{i}", 0.0, delta) for i, delta in enumerate(deltas))]
    amplification = what_leaked(make_report(rows)).amplification
    assert (None if amplification is None else amplification.delta) == expected


@pytest.mark.parametrize(("reason", "short"), [
    ("calibrated AUC 0.895 > max_auc 0.6 (AUC 0.895, 95% CI [0.821, 0.952], p 0.0001)",
     "calibrated AUC 0.895 > max_auc 0.6"),
    ("amplification ΔAUC +0.120 (calibrated; paired 95% CI [+0.05, +0.19], p 0.001 (x)) > "
     "max_amplification 0.05 after probe lora",
     "amplification ΔAUC +0.120 > max_amplification 0.05 after probe lora"),
    ("no parentheses at all", "no parentheses at all"),
    ("2 distinct training image(s) extracted ((k, ℓ2, δ)-eidetic, k=10)",
     "2 distinct training image(s) extracted"),
])
def test_short_reason_drops_the_parenthesised_details(reason: str, short: str) -> None:
    assert short_reason(reason) == short


def test_console_and_markdown_print_the_same_digest() -> None:
    from s2l_scan.report.digest import digest_lines
    from s2l_scan.report.markdown import render_markdown

    report = _report()
    lines = [line.strip() for line in digest_lines(what_leaked(report))[1:]]
    console = [line.strip() for line in render_results(report, width=400).splitlines()]
    markdown = [line.lstrip(" -") for line in render_markdown(report).splitlines()]
    assert len(lines) >= 3  # the verdict's lines, the worst attacks, ...: not vacuous
    for line in lines:
        assert line in console
        assert line.replace("|", "\\|") in markdown
