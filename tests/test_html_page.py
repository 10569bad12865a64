"""The HTML page's structure: the digest first, a table of contents whose anchors resolve,
collapsible sections, log-log ROC axes, readable settings, the verdict beside each check."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

import pytest
from report_factory import extraction_record, make_report, make_row

from s2l_scan.report import charts
from s2l_scan.report.html_page import render_html, settings_list


class _Outline(HTMLParser):
    """Ids, TOC links, <details> sections and table headers, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.links: list[str] = []
        self.sections: list[str] = []
        self.headers: list[list[str]] = []
        self._in_th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if named.get("id"):
            self.ids.append(str(named["id"]))
        if tag == "a" and str(named.get("href", "")).startswith("#"):
            self.links.append(str(named["href"])[1:])
        if tag == "details" and named.get("class") == "section":
            self.sections.append(str(named.get("id")))
        if tag == "tr":
            self.headers.append([])
        self._in_th = tag == "th"

    def handle_endtag(self, tag: str) -> None:
        self._in_th = self._in_th and tag != "th"

    def handle_data(self, data: str) -> None:
        if self._in_th and self.headers:
            self.headers[-1].append(data)


def _page() -> str:
    probe = make_row("loss", "identity-1", shift=3.0, probe="noise")
    probe.delta_auc, probe.delta_auc_ci = 0.2, (0.1, 0.3)
    probe.settings = {"t": 100, "probe": {"label": "noise", "sigma": 0.001}}
    return render_html(make_report([make_row(), make_row(domain="identity-1", shift=3.0),
                                    probe], extraction=[extraction_record(extracted=1)]))


def test_digest_first_then_contents_then_collapsible_sections() -> None:
    page = _page()
    order = [page.index(marker) for marker in (
        'class="banner failed"', '<section id="leaked">', '<nav class="toc"',
        '<details class="section" id="results" open>', 'id="charts"', 'id="details"')]
    assert order == sorted(order)
    outline = _Outline()
    outline.feed(page)
    assert outline.sections == ["results", "charts", "extraction", "details"]
    assert outline.links and set(outline.links) <= set(outline.ids)  # every anchor resolves


def test_what_leaked_names_the_worst_rows_and_the_amplification() -> None:
    leaked = _page().split('<nav class="toc"')[0]
    assert "probes::noise/loss[identity-1]" in leaked  # the strongest attack on identity-1
    assert "Largest amplification" in leaked and "+0.200" in leaked
    assert "1 training image extracted" in leaked
    assert "Strongest failures" in leaked


def test_the_verdict_follows_the_check_in_every_results_table() -> None:
    outline = _Outline()
    outline.feed(_page())
    tables = [h for h in outline.headers if h and h[0] == "check"]
    assert len(tables) == 3  # baselines, probes (with Δ), extraction
    assert all(header[1] == "verdict" for header in tables)
    assert "ΔAUC [95% CI]" in tables[1]


def test_narrow_windows_hide_minor_columns_and_scroll_tables() -> None:
    page = _page()
    media = re.search(r"@media \(max-width:900px\)\{(.*?)\}\}", page, re.S)
    assert media is not None and ".minor{display:none}" in media.group(1)
    assert page.count('<div class="scroll"><table>') >= 3


@pytest.mark.parametrize(("value", "floor"), [(1e-3, 1e-3), (0.02, 1e-3), (0.5, 1e-2),
                                              (1.0, 1e-3), (0.0, 1e-3)])
def test_log_position_against_log10(value: float, floor: float) -> None:
    expected = (math.log10(max(value, floor)) - math.log10(floor)) / -math.log10(floor)
    assert charts.log_position(value, floor) == pytest.approx(expected)


@pytest.mark.parametrize(("n", "floor"), [(6, 1e-2), (48, 1e-2), (192, 1e-3), (5000, 1e-4)])
def test_log_floor_is_the_decade_below_one_nonmember(n: int, floor: float) -> None:
    assert charts.log_floor(n) == pytest.approx(floor)


def test_roc_is_log_log_by_default_with_decade_ticks() -> None:
    page = _page()
    log = re.search(r'<svg class="chart roc log".*?</svg>', page, re.S)
    assert log is not None
    for tick in ("0.01", "0.1", "1"):
        assert f">{tick}</text>" in log.group(0)
    assert "false positive rate (log)" in log.group(0)
    # linear axes on a switch (CSS only: the page has no script)
    assert '<input type="checkbox" id="linear">' in page and ".roc.linear{display:none}" in page


def test_settings_are_a_definition_list_with_nested_keys_flattened() -> None:
    html = settings_list({"t": 100, "probe": {"lr": 0.0001, "targets": ["to_q", "to_v"]},
                          "prompt": "a <b> photo"})
    assert html == ('<dl class="kv"><dt>t</dt><dd><code>100</code></dd>'
                    "<dt>probe.lr</dt><dd><code>0.0001</code></dd>"
                    '<dt>probe.targets</dt><dd><code>[&quot;to_q&quot;, &quot;to_v&quot;]'
                    "</code></dd><dt>prompt</dt><dd><code>a &lt;b&gt; photo</code></dd></dl>")
    assert "probe.sigma" in _page()  # and the page shows a probe's settings that way
