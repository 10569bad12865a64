"""A self-contained HTML page of one :class:`ScanReport`.

Everything is inline: CSS, SVG charts (ROC curves per attack and probe, score histograms, AUC
next to the blind baseline) and extraction evidence as base64 PNG. A Content-Security-Policy
forbids any network load, and there is no script, so the page renders the same offline, as a
CI artifact, or attached to a release.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from s2l_scan import __version__
from s2l_scan.report import charts
from s2l_scan.report.headline import (
    extraction_counts,
    extraction_reading,
    fmt,
    gate_text,
    headline,
    reading,
)
from s2l_scan.report.model import ResultRow, ScanReport

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_EVIDENCE_IMAGES = 64  # per extraction record: enough to judge, small enough to open
MAX_EVIDENCE_BYTES = 2 * 2**20

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#fff}
main{max-width:1280px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.banner{padding:14px 18px;border-radius:6px;color:#fff;font-size:18px;font-weight:600;margin:12px 0}
.banner.passed{background:#1a7f37}.banner.failed{background:#cf222e}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f6f8fa}td.l,th.l{text-align:left;white-space:normal}
tr.fail td{background:#ffebe9}.tag{font-size:12px;padding:1px 6px;border-radius:10px;
background:#fff8c5;border:1px solid #d4a72c;margin-left:4px}
.pass{color:#1a7f37;font-weight:600}.failtxt{color:#cf222e;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.chart text{font-size:11px;fill:#333}.chart .chart-title{font-size:12px;font-weight:600}
.muted{color:#57606a}.pair{display:inline-block;margin:6px;text-align:center;font-size:12px}
.pair img{image-rendering:pixelated;border:1px solid #ccc;max-width:400px}
ul.reasons{margin:4px 0 0 0;padding-left:18px;text-align:left}td.verdict{min-width:340px}
code{font-size:12px}td.l code{white-space:nowrap}
"""


def render_html(report: ScanReport, search: Sequence[Path] = ()) -> str:
    """The page as one string. Relative evidence paths are looked up in ``search``, then cwd."""
    top = headline(report)
    title = f"s2l-scan: {report.model.get('source', '?')}"
    sections = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">model hash <code>{escape(str(top["model_hash"]))}</code> · '
        f"scanned {escape(report.timestamps.get('started', '?'))} "
        f"({escape(str(report.timestamps.get('seconds', '?')))} s) · s2l-scan "
        f"{escape(report.packages.get('s2l-scan', __version__))}</p>",
        _banner(report, top),
        _results_table(report),
        _comparison(report),
        _attack_sections(report),
        _extraction(report, [*search, Path.cwd()]),
        _details(report),
    ]
    body = "\n".join(part for part in sections if part)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
            f"{body}\n</main>\n</body>\n</html>\n")


def _banner(report: ScanReport, top: dict[str, Any]) -> str:
    verdict = top["verdict"]
    text = (f"Release gate {verdict.upper()}: {top['failed']} of {top['checks']} checks failed"
            if verdict == "failed" else f"Release gate PASSED: all {top['checks']} checks passed")
    return (f'<div class="banner {verdict}">{escape(text)}</div>'
            f'<p class="muted">gate: {escape(gate_text(report))}. {escape(reading())}</p>')


def _results_table(report: ScanReport) -> str:
    head = ("<tr><th class=l>check</th><th>AUC</th><th>95% CI</th><th>raw AUC</th><th>TPR@1%</th>"
            "<th>TPR@0.1%</th><th>ASR</th><th>blind AUC</th><th>ΔAUC</th><th>n</th>"
            "<th class=l>verdict</th></tr>")
    rows = []
    for row in report.results:
        tags = "".join(f'<span class="tag">{t}</span>' for t, on in
                       (("confounded", row.confounded), ("unstable", row.unstable),
                                                       ("underpowered", row.underpowered)) if on)
        verdict = ('<span class="pass">pass</span>' if row.passed
                   else '<span class="failtxt">FAIL</span>')
        reasons = ("" if not row.reasons else '<ul class="reasons">'
                   + "".join(f"<li>{escape(r)}</li>" for r in row.reasons) + "</ul>")
        low, high = row.auc_ci
        rows.append(
            f'<tr class="{"ok" if row.passed else "fail"}"><td class=l><code>'
            f"{escape(row.item_id)}</code></td><td>{row.auc:.3f}</td>"
            f"<td>[{low:.3f}, {high:.3f}]</td><td>{row.auc_raw:.3f}</td>"
            f"<td>{fmt(row.tpr_at_1pct_fpr)}</td>"
            f"<td>{fmt(row.tpr_at_01pct_fpr)}</td><td>{row.asr:.3f}</td>"
            f"<td>{row.blind_auc:.3f}</td><td>{fmt(row.delta_auc)}</td>"
            f"<td>{row.n_members}/{row.n_nonmembers}</td>"
            f'<td class="l verdict">{verdict}{tags}{reasons}</td></tr>')
    return f"<h2>Results</h2><table>{head}{''.join(rows)}</table>"


def _comparison(report: ScanReport) -> str:
    if not report.comparison:
        return ""
    rows = "".join(
        f'<tr class="{"ok" if c.passed else "fail"}"><td class=l><code>{escape(c.item)}'
        f"</code></td><td class=l>{escape(c.metric)}</td><td>{fmt(c.previous, 4)}</td>"
        f"<td>{fmt(c.current, 4)}</td><td>{_signed(c.change)}</td>"
        f"<td>{escape(str(c.allowance or '-'))}</td><td class=l>{escape(c.status)}</td></tr>"
        for c in report.comparison)
    against = escape(str(report.config.get("compare")))
    return (f"<h2>Compared with the previous report</h2><p class=muted>{against}</p><table>"
            "<tr><th class=l>check</th><th class=l>metric</th><th>previous</th><th>current</th>"
            f"<th>change</th><th>allowed</th><th class=l>status</th></tr>{rows}</table>")


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _attack_sections(report: ScanReport) -> str:
    groups: dict[tuple[str, str | None], list[ResultRow]] = {}
    for row in report.results:
        groups.setdefault((row.attack, row.probe), []).append(row)
    sections = []
    max_auc = float(report.config.get("max_auc", 0.6))
    for (attack, probe), rows in groups.items():
        name = attack if probe is None else f"{probe} / {attack}"
        curves = []
        for index, row in enumerate(rows):
            colour = (charts.POOLED_COLOR if row.domain == "pooled"
                      else charts.PALETTE[index % len(charts.PALETTE)])
            points = charts.roc_points(row.member_scores, row.nonmember_scores)
            curves.append((f"{row.domain}: AUC {row.auc:.2f} (blind {row.blind_auc:.2f})",
                           colour, points))
        histograms = "".join(
            charts.histogram_svg(f"{name} · {row.domain}", row.member_scores,
                                 row.nonmember_scores) for row in rows)
        bars = charts.auc_bars_svg(f"{name}: AUC (red) vs blind baseline (grey)",
                                   [(row.domain, row.auc, row.blind_auc) for row in rows],
                                   max_auc)
        settings = escape(json.dumps(rows[0].settings, sort_keys=True))
        sections.append(
            f"<h2>{escape(name)}</h2><p class=muted>settings <code>{settings}</code></p>"
            f'<div class="charts">{charts.roc_svg(f"ROC: {name}", curves)}{bars}</div>'
            f'<div class="charts">{histograms}</div>')
    return "".join(sections)


def _extraction(report: ScanReport, search: Sequence[Path]) -> str:
    if not report.extraction:
        return ""
    blocks = []
    for record in report.extraction:
        probe = record.probe or "released model"
        status = ('<span class="pass">pass</span>' if record.passed
                  else '<span class="failtxt">FAIL</span>')
        head = (f"<h3>{escape(str(probe))} · {escape(str(record.domain))}: "
                f"{escape(extraction_counts(record))} {status}</h3>")
        nearest = record.nearest_distance
        facts = (f"<p class=muted>nearest generation to any known image: RMS "
                 f"{fmt(nearest, 4)}; settings "
                 f"<code>{escape(json.dumps(record.settings, sort_keys=True))}"
                 "</code></p>")
        pairs = [_pair(match, search) for match in
                 record.matches[:MAX_EVIDENCE_IMAGES]]
        more = len(record.matches) - MAX_EVIDENCE_IMAGES
        if more > 0:
            pairs.append(f"<p class=muted>… {more} more matches in the JSON report</p>")
        blocks.append(head + facts + "".join(pairs))
    return (f"<h2>Extraction</h2><p class=muted>{escape(extraction_reading(report))} Each "
            "pair: generated | known (training) image | difference ×4.</p>" + "".join(blocks))


def _pair(match: dict[str, Any], search: Sequence[Path]) -> str:
    caption = (f"generation {match.get('generated_index')} ≈ "
               f"{escape(str(match.get('known')))} (RMS {fmt(match.get('distance'), 4)})")
    data = _evidence_png(match.get("evidence"), search)
    if data is None:
        where = escape(str(match.get("evidence") or "not saved (set evidence_dir)"))
        return f'<div class="pair"><div class=muted>image: {where}</div>{caption}</div>'
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<div class="pair"><img alt="{escape(caption)}" src="data:image/png;base64,'
            f'{encoded}"><br>{caption}</div>')


def _evidence_png(path: object, search: Sequence[Path]) -> bytes | None:
    if not isinstance(path, str) or not path:
        return None
    candidates = [Path(path)] if os.path.isabs(path) else [base / path for base in search]
    for candidate in candidates:
        try:
            if candidate.stat().st_size > MAX_EVIDENCE_BYTES:
                continue
            data = candidate.read_bytes()
        except OSError:
            continue
        if data.startswith(_PNG_MAGIC):
            return data
    return None


def _details(report: ScanReport) -> str:
    files = "".join(f"<tr><td class=l><code>{escape(name)}</code></td><td class=l><code>"
                    f"{escape(digest)}</code></td></tr>"
                    for name, digest in report.model.get("files", {}).items())
    domains = "".join(
        f"<tr><td class=l>{escape(name)}</td><td class=l>{escape(str(d.get('prompt')))}</td>"
        f"<td>{d.get('n_members')}</td><td>{d.get('n_nonmembers')}</td></tr>"
        for name, d in report.data.get("domains", {}).items())
    config = escape(json.dumps(report.config, indent=2, sort_keys=True))
    packages = ", ".join(f"{escape(k)} {escape(v)}" for k, v in report.packages.items())
    return (f"<h2>Model, data and configuration</h2><p>model folder "
            f"<code>{escape(str(report.model.get('path')))}</code></p><table>"
            f"<tr><th class=l>weight file</th><th class=l>SHA-256</th></tr>{files}</table>"
            f"<p>audit data <code>{escape(str(report.data.get('root')))}</code></p><table>"
            "<tr><th class=l>domain</th><th class=l>prompt</th><th>members</th>"
            f"<th>non-members</th></tr>{domains}</table><details><summary>effective "
            f"configuration</summary><pre>{config}</pre></details>"
            f"<p class=muted>packages: {packages}</p>")
