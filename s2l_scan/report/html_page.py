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
from s2l_scan import detectors as memorization_detectors
from s2l_scan.checks import Outcome, Reason
from s2l_scan.report import charts
from s2l_scan.report.copy_rate import extracted_cell
from s2l_scan.report.digest import (
    DETECTORS,
    ROOM_TITLES,
    flag_meanings,
    memorization_lines,
    short_reason,
    what_leaked,
)
from s2l_scan.report.headline import (
    extraction_counts,
    extraction_reading,
    fmt,
    gate_text,
    headline,
    reading,
    verdict_word,
)
from s2l_scan.report.model import MemorizationRecord, ResultRow, ScanReport

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_EVIDENCE_IMAGES = 64  # per extraction record: enough to judge, small enough to open
MAX_EVIDENCE_BYTES = 2 * 2**20

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#fff}
main{max-width:1280px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:20px 0 8px}
h3{font-size:15px;margin:14px 0 6px}
.banner{padding:14px 18px;border-radius:6px;color:#fff;font-size:18px;font-weight:600;margin:12px 0}
.banner.passed{background:#1a7f37}.banner.failed{background:#cf222e}
.banner.inconclusive{background:#9a6700}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right;white-space:nowrap;
vertical-align:top}
th{background:#f6f8fa}td.l,th.l{text-align:left;white-space:normal}
tr.fail td{background:#ffebe9}tr.undecided td{background:#fff8c5}
.tag{font-size:12px;padding:1px 6px;border-radius:10px;
background:#fff8c5;border:1px solid #d4a72c;margin-left:4px;white-space:nowrap}
.pass{color:#1a7f37;font-weight:600}.failtxt{color:#cf222e;font-weight:600}
.undecidedtxt{color:#9a6700;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.chart{max-width:100%;height:auto}
.chart text{font-size:11px;fill:#333}.chart .chart-title{font-size:12px;font-weight:600}
.muted{color:#57606a}.pair{display:inline-block;margin:6px;text-align:center;font-size:12px;
max-width:100%;vertical-align:top}
.pair img{image-rendering:pixelated;border:1px solid #ccc;max-width:min(400px,100%)}
.why{font-size:12px;color:#57606a;margin-top:2px;white-space:normal}
code{font-size:12px}td.l code.id{white-space:nowrap}
details.section{border:1px solid #d0d7de;border-radius:6px;margin:12px 0;padding:0 12px}
details.section>summary{font-size:17px;font-weight:600;padding:8px 0;cursor:pointer}
nav.toc{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;
margin:12px 0}nav.toc ol{margin:4px 0;padding-left:20px}nav.toc li{margin:2px 0}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:6px 0;
font-size:13px}dl.kv dt{color:#57606a}dl.kv dd{margin:0;word-break:break-word}
.leak{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.axes{font-size:13px;margin:6px 0}.roc.linear{display:none}pre{overflow-x:auto}
#linear:checked~.charts .roc.linear{display:inline}#linear:checked~.charts .roc.log{display:none}
@media (max-width:900px){main{padding:8px}th,td{padding:3px 4px;font-size:12px}
.minor{display:none}.banner{font-size:16px}}
"""

MAX_DIGEST_PAIRS = 8  # extracted images shown with their evidence in "What leaked"
MAX_WORST_ROWS = 10  # failed rows listed in "What leaked", strongest first

_SECTIONS = (("leaked", "What leaked"), ("results", "Results by check"),
             ("comparison", "Compared with the previous report"),
             ("charts", "ROC curves and score distributions"),
             ("extraction", "Extraction evidence"),
             ("memorization", "Prompt-level memorization"),
             ("details", "Model, data and configuration"))


def render_html(report: ScanReport, search: Sequence[Path] = ()) -> str:
    """The page as one string. Relative evidence paths are looked up in ``search``, then cwd.

    The verdict and what leaked come first (the digest of :mod:`s2l_scan.report.digest`: worst
    attack per domain, extracted images with their evidence, the largest amplification, the
    strongest failures); then a table of contents and one collapsible section each for the
    results, the regression compare, the charts (log-log ROC, linear on a switch), the
    extraction evidence and the model, data and configuration."""
    top = headline(report)
    search = [*search, Path.cwd()]
    title = f"s2l-scan: {report.model.get('source', '?')}"
    sections = {
        "leaked": _leaked(report, search),
        "results": _results(report),
        "comparison": _comparison(report),
        "charts": _attack_sections(report),
        "extraction": _extraction(report, search),
        "memorization": _memorization(report, search),
        "details": _details(report),
    }
    present = [(anchor, name) for anchor, name in _SECTIONS if sections[anchor]]
    toc = ('<nav class="toc" aria-label="contents"><strong>Contents</strong><ol>'
           + "".join(f'<li><a href="#{anchor}">{escape(name)}</a></li>'
                     for anchor, name in present) + "</ol></nav>")
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">model hash <code>{escape(str(top["model_hash"]))}</code> · '
        f"scanned {escape(report.timestamps.get('started', '?'))} "
        f"({escape(str(report.timestamps.get('seconds', '?')))} s) · s2l-scan "
        f"{escape(report.packages.get('s2l-scan', __version__))}</p>",
        _banner(report, top),
        _run_notes(report),
        f'<section id="leaked"><h2>What leaked</h2>{sections["leaked"]}</section>',
        _next_steps(report),
        toc,
        *(f'<details class="section" id="{anchor}"{" open" if anchor == "results" else ""}>'
          f"<summary>{escape(name)}</summary>{sections[anchor]}</details>"
          for anchor, name in present if anchor != "leaked"),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


def _run_notes(report: ScanReport) -> str:
    """Budget cuts and reused units, on the first screen (:mod:`s2l_scan.report.run_notes`)."""
    from s2l_scan.report.run_notes import run_lines

    lines = run_lines(report)
    if not lines:
        return ""
    return ('<section id="run-notes" class="notes"><h2>This run</h2><ul>'
            + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul></section>")


def _next_steps(report: ScanReport) -> str:
    """What to do next, per kind of failed check (:mod:`s2l_scan.report.remedies`)."""
    from s2l_scan.report.remedies import REMEDIES, failed_kinds

    kinds = failed_kinds(report)
    if not kinds:
        return ""
    items = "".join(
        f"<li><strong>{escape(REMEDIES[kind].title)}</strong> ({count} failed): "
        + "; ".join(escape(step.replace("`", "")) for step in REMEDIES[kind].steps[:3])
        + f" — more in <code>{escape(REMEDIES[kind].page)}</code></li>"  # no network links
        for kind, count in kinds.items())
    return f'<section id="next-steps"><h2>What to do next</h2><ul>{items}</ul></section>'


def _banner(report: ScanReport, top: dict[str, Any]) -> str:
    """The verdict: green PASSED, red FAILED, amber INCONCLUSIVE with what would decide it."""
    verdict = top["verdict"]
    digest = what_leaked(report)
    undecided = ""
    if verdict == "inconclusive":
        needed = ("" if digest.decide_n is None else
                  f"<p>About {digest.decide_n} members and {digest.decide_n} non-members per "
                  "domain would decide it.</p>")
        undecided = ("<ul>" + "".join(f"<li>{escape(line)}</li>" for line in digest.undecided)
                     + "</ul>" + needed
                     + (f"<p><strong>{escape(digest.warning)}</strong></p>"
                        if digest.warning else ""))
    return (f'<div class="banner {verdict}">Release gate {escape(digest.verdict)}</div>'
            f'{undecided}<p class="muted">gate: {escape(gate_text(report))}.</p>')


def _leaked(report: ScanReport, search: Sequence[Path]) -> str:
    """The digest: extracted images with evidence, worst attack per domain, the largest
    amplification and the strongest failures."""
    digest = what_leaked(report)
    parts = []
    if digest.extracted:
        by_image: dict[str, dict[str, Any]] = {}  # each image's closest match with evidence
        for match in sorted((m for r in report.extraction for m in r.matches),
                            key=lambda m: -float(m["distance"])):
            if _evidence_png(match.get("evidence"), search) is not None:
                by_image[str(match["known"])] = match
        pairs = []
        for image in digest.extracted[:MAX_DIGEST_PAIRS]:
            match = by_image.get(image.image) or {"known": image.image,
                                                  "distance": image.distance}
            pairs.append(_pair(match, search, note=", ".join(image.check_ids)))
        more = len(digest.extracted) - MAX_DIGEST_PAIRS
        parts.append(f"<h3>{len(digest.extracted)} training image"
                     f"{'' if len(digest.extracted) == 1 else 's'} extracted</h3>"
                     + "".join(pairs)
                     + (f'<p class="muted">… {more} more in <a href="#extraction">Extraction '
                        "evidence</a></p>" if more > 0 else ""))
    elif report.extraction:
        parts.append("<h3>No training image extracted</h3>")
    if digest.worst:
        rows = "".join(
            f'<tr class="{_ROW_CLASSES[w.verdict]}"><td class=l>{escape(w.domain)}</td>'
            f'<td class=l><code class="id">{escape(w.check_id)}</code></td>'
            f"<td class=l>{_word(w.verdict)}</td><td>{w.auc:.3f}</td>"
            f"<td>[{w.auc_ci[0]:.3f}, {w.auc_ci[1]:.3f}]</td></tr>" for w in digest.worst)
        parts.append('<div class="scroll"><table><tr><th class=l>domain</th>'
                     "<th class=l>strongest attack</th><th class=l>verdict</th><th>AUC</th>"
                     f"<th>95% CI</th></tr>{rows}</table></div>")
    amplification = digest.amplification
    if amplification is not None:
        ci = ("" if amplification.delta_ci is None else
              f" [{amplification.delta_ci[0]:+.3f}, {amplification.delta_ci[1]:+.3f}]")
        parts.append(f"<p>Largest amplification: <code>{escape(amplification.check_id)}</code> "
                     f"ΔAUC <strong>{amplification.delta:+.3f}</strong>{escape(ci)} to AUC "
                     f"{amplification.auc:.3f} (max_amplification "
                     f"{escape(str(amplification.max_amplification))}).</p>")
    for memorization in digest.memorization:
        head, *prompts = memorization_lines(memorization, MAX_DIGEST_PAIRS)
        pictures = "".join(_picture(m.evidence, search, f"clique of {m.prompt!r}",
                                    f"{m.prompt!r}: clique of {m.value:g} ({m.check_id})")
                           for m in memorization.flagged[:MAX_DIGEST_PAIRS] if m.evidence)
        parts.append(f"<p>{escape(head)}</p>"
                     + (f"<ul>{''.join(f'<li>{escape(i.strip())}</li>' for i in prompts)}"
                        "</ul>" if prompts else "") + pictures)
    failed = sorted((row for row in report.results if row.outcome is Outcome.FAILED),
                    key=lambda row: -row.auc)
    if failed:
        items = "".join(f"<li><code>{escape(row.item_id)}</code>: "
                        f"{escape('; '.join(short_reason(r.text) for r in row.reasons))}</li>"
                        for row in failed[:MAX_WORST_ROWS])
        more = len(failed) - MAX_WORST_ROWS
        parts.append(f"<h3>Strongest failures ({len(failed)} failed rows)</h3><ul>{items}</ul>"
                     + (f'<p class="muted">… {more} more in <a href="#results">Results by '
                        "check</a></p>" if more > 0 else ""))
    return "".join(parts)


_WORD_CLASSES = {"pass": "pass", "FAIL": "failtxt", "INCONCLUSIVE": "undecidedtxt",
                 "reported": "muted"}
_ROW_CLASSES = {"pass": "ok", "FAIL": "fail", "INCONCLUSIVE": "undecided", "reported": "ok"}


def _word(word: str) -> str:
    """A verdict word (:func:`~s2l_scan.report.headline.verdict_word`), coloured."""
    return f'<span class="{_WORD_CLASSES[word]}">{escape(word)}</span>'


def _row_open(item_id: str, word: str) -> str:
    """A check's table row up to its id cell: the row coloured by the verdict, the id in code."""
    return (f'<tr class="{_ROW_CLASSES[word]}"><td class=l><code class="id">'
            f"{escape(item_id)}</code></td>")


def _reasons(reasons: list[Reason]) -> str:
    """A check's reasons, each shortened, with the whole reason on hover."""
    return "".join(f'<div class="why" title="{escape(r.text)}">'
                   f"{escape(short_reason(r.text))}</div>" for r in reasons)


def _results(report: ScanReport) -> str:
    baselines = [row for row in report.results if row.probe is None]
    probes = [row for row in report.results if row.probe is not None]
    parts = [f'<p class="muted">{escape(reading())}</p>']
    for room, rows in (("baselines", baselines), ("probes", probes)):
        if rows:
            parts.append(f"<h3>{escape(ROOM_TITLES[room])}</h3>"
                         + _rows_table(rows, delta=room == "probes"))
    if report.extraction:
        rows_html = "".join(
            _row_open(r.item_id, verdict_word(r)) + f"<td class=l>{_word(verdict_word(r))}"
            + _reasons(r.reasons)
            + f"</td><td>{extracted_cell(r)}</td>"
            f"<td>{r.matched_generations}/{r.n_generated}</td>"
            f"<td>{r.nonmember_matches}</td><td>{fmt(r.nearest_distance, 4)}</td></tr>"
            for r in report.extraction)
        parts.append(f"<h3>{escape(ROOM_TITLES['extraction'])}</h3>"
                     '<div class="scroll"><table><tr><th class=l>check</th>'
                     "<th class=l>verdict</th><th>training images extracted</th>"
                     "<th>generations matched</th><th>non-member matches</th>"
                     f"<th>nearest RMS</th></tr>{rows_html}</table></div>")
    if report.memorization:
        rows_html = "".join(
            _row_open(r.item_id, verdict_word(r)) + f"<td class=l>{_word(verdict_word(r))}"
            + _reasons(r.reasons)
            + f"</td><td class=l>{escape(DETECTORS.get(r.detector, (r.detector,))[0])}</td>"
            f"<td>{len(r.prompts)}</td><td>{r.largest:.4g}</td><td>{_threshold(r)}</td>"
            f"<td>{'-' if r.threshold is None else len(r.flagged)}</td></tr>"
            for r in report.memorization)
        parts.append(f"<h3>{escape(ROOM_TITLES['memorization'])}</h3>"
                     '<div class="scroll"><table><tr><th class=l>check</th>'
                     "<th class=l>verdict</th><th class=l>measure</th><th>prompts</th>"
                     "<th>largest</th><th>threshold</th><th>flagged</th></tr>"
                     f"{rows_html}</table></div>")
    return "".join(parts)


def _threshold(record: MemorizationRecord) -> str:
    if record.threshold is None:
        return '<span class="muted">reported, not gated</span>'
    strict = memorization_detectors.DETECTORS[record.detector].strict
    return f"{'&gt;' if strict else '≥'} {record.threshold:g}"


def _rows_table(rows: list[ResultRow], delta: bool) -> str:
    # the verdict right after the check, so that a narrow window never hides it; the minor
    # columns go under 900 px
    head = ("<tr><th class=l>check</th><th class=l>verdict</th><th>AUC [95% CI]</th>"
            + ("<th>ΔAUC [95% CI]</th>" if delta else "")
            + "<th class=minor>raw AUC</th><th>TPR@1%</th><th class=minor>TPR@0.1%</th>"
            "<th class=minor>ASR</th><th>blind AUC</th><th>n</th></tr>")
    out = []
    for row in rows:
        tags = "".join(f'<span class="tag" title="{escape(meaning)}">{flag}</span>'
                       for flag, meaning in flag_meanings().items() if getattr(row, flag))
        reasons = _reasons(row.reasons)
        low, high = row.auc_ci
        change = ""
        if delta:
            change = f"<td>{_signed(row.delta_auc, 3)}"
            if row.delta_auc_ci is not None:
                change += f" [{row.delta_auc_ci[0]:+.2f}, {row.delta_auc_ci[1]:+.2f}]"
            change += "</td>"
        out.append(
            _row_open(row.item_id, verdict_word(row))
            + f'<td class="l verdict">{_word(verdict_word(row))}{tags}{reasons}</td>'
            f"<td>{row.auc:.3f} [{low:.2f}, {high:.2f}]</td>"
            f"{change}<td class=minor>{row.auc_raw:.3f}</td><td>{fmt(row.tpr_at_1pct_fpr)}</td>"
            f"<td class=minor>{fmt(row.tpr_at_01pct_fpr)}</td><td class=minor>{row.asr:.3f}</td>"
            f"<td>{row.blind_auc:.3f}</td><td>{row.n_members}/{row.n_nonmembers}</td></tr>")
    legend = "".join(f"<dt>{flag}</dt><dd>{escape(meaning)}</dd>"
                     for flag, meaning in flag_meanings().items()
                     if any(getattr(row, flag) for row in rows))
    return (f'<div class="scroll"><table>{head}{"".join(out)}</table></div>'
            + (f'<dl class="kv">{legend}</dl>' if legend else ""))


def settings_list(settings: dict[str, Any], prefix: str = "") -> str:
    """Settings as a definition list, nested dicts flattened to dotted keys (``probe.lr``)."""
    items = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items.append(settings_list(value, f"{name}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        items.append(f"<dt>{escape(name)}</dt><dd><code>{escape(text)}</code></dd>")
    body = "".join(items)
    return body if prefix else f'<dl class="kv">{body}</dl>'


def _comparison(report: ScanReport) -> str:
    if not report.comparison:
        return ""
    rows = "".join(
        _row_open(c.item, verdict_word(c)) + f"<td class=l>{escape(c.metric)}</td>"
        f"<td>{fmt(c.previous, 4)}</td><td>{fmt(c.current, 4)}</td><td>{_signed(c.change)}</td>"
        f"<td>{escape(str(c.allowance or '-'))}</td><td class=l>{escape(c.status)}</td></tr>"
        for c in report.comparison)
    against = escape(str(report.config.get("compare")))
    return (f'<p class=muted>{against}</p><div class="scroll"><table>'
            "<tr><th class=l>check</th><th class=l>metric</th><th>previous</th><th>current</th>"
            f"<th>change</th><th>allowed</th><th class=l>status</th></tr>{rows}</table></div>")


def _signed(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def _attack_sections(report: ScanReport) -> str:
    if not report.results:
        return ""
    groups: dict[tuple[str, str | None], list[ResultRow]] = {}
    for row in report.results:
        groups.setdefault((row.attack, row.probe), []).append(row)
    floor = charts.log_floor(max(row.n_nonmembers for row in report.results))
    sections = ['<input type="checkbox" id="linear"> <label for="linear" class="axes">linear '
                "ROC axes (default: log-log, which shows the true positive rate at low false "
                f"positive rates; points at 0 sit on the {floor:g} floor)</label>"]
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
        rocs = (charts.roc_svg(f"ROC: {name}", curves, scale="log", floor=floor)
                + charts.roc_svg(f"ROC: {name}", curves, scale="linear"))
        sections.append(
            f"<h3>{escape(name)}</h3>{settings_list(rows[0].settings)}"
            f'<div class="charts">{rocs}{bars}</div><div class="charts">{histograms}</div>')
    return "".join(sections)


def _extraction(report: ScanReport, search: Sequence[Path]) -> str:
    if not report.extraction:
        return ""
    blocks = []
    for record in report.extraction:
        head = (f'<h3><code class="id">{escape(record.item_id)}</code>: '
                f"{escape(extraction_counts(record))} {_word(verdict_word(record))}</h3>")
        facts = (f"<p class=muted>nearest generation to any known image: RMS "
                 f"{fmt(record.nearest_distance, 4)}</p>{settings_list(record.settings)}")
        pairs = [_pair(match, search) for match in record.matches[:MAX_EVIDENCE_IMAGES]]
        more = len(record.matches) - MAX_EVIDENCE_IMAGES
        if more > 0:
            pairs.append(f"<p class=muted>… {more} more matches in the JSON report</p>")
        blocks.append(head + facts + "".join(pairs))
    return (f"<p class=muted>{escape(extraction_reading(report))} Each pair: generated | known "
            "(training) image | difference ×4.</p>" + "".join(blocks))


def _memorization(report: ScanReport, search: Sequence[Path]) -> str:
    """Per detector and domain: every prompt's value and the gate's verdict on it, with the
    picture of each flagged clique (Carlini et al.'s likely memorized generations)."""
    blocks = []
    for record in report.memorization:
        what, whose = DETECTORS.get(record.detector, (record.detector, ""))
        head = (f'<h3><code class="id">{escape(record.item_id)}</code>: {escape(what)} '
                f"({escape(whose)}), threshold {_threshold(record)} "
                f"{_word(verdict_word(record))}</h3>")
        rows = "".join(
            f'<tr class="{"fail" if p.get("flagged") else "ok"}"><td class=l>'
            f"{escape(str(p['prompt']))}</td><td class=l>{escape(str(p.get('source', '')))}"
            f"</td><td>{float(p['value']):.4g}</td><td class=l>"
            + ("-" if record.threshold is None else
               '<span class="failtxt">flagged</span>' if p.get("flagged") else "no")
            + "</td></tr>" for p in record.prompts)
        pictures = "".join(
            _picture(p.get("evidence"), search, f"clique of {p['prompt']!r}",
                     f"{p['prompt']!r}: clique of {float(p['value']):g} near-copies")
            for p in record.prompts if p.get("evidence"))
        blocks.append(head + settings_list(record.settings)
                      + '<div class="scroll"><table><tr><th class=l>prompt</th>'
                        f"<th class=l>source</th><th>{escape(what)}</th><th class=l>flagged</th>"
                        f"</tr>{rows}</table></div>" + pictures)
    return "".join(blocks)


def _picture(path: object, search: Sequence[Path], alt: str, caption: str) -> str:
    """A saved evidence picture, embedded; its path when it cannot be read."""
    data = _evidence_png(path, search)
    if data is None:
        return (f'<div class="pair"><div class=muted>image: {escape(str(path))}</div>'
                f"{escape(caption)}</div>")
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<div class="pair"><img alt="{escape(alt)}" src="data:image/png;base64,'
            f'{encoded}"><br>{escape(caption)}</div>')


def _pair(match: dict[str, Any], search: Sequence[Path], note: str = "") -> str:
    index = match.get("generated_index")
    caption = (f"{'' if index is None else f'generation {index} ≈ '}"
               f"{escape(str(match.get('known')))} (RMS {fmt(match.get('distance'), 4)})"
               + (f"<br><code>{escape(note)}</code>" if note else ""))
    data = _evidence_png(match.get("evidence"), search)
    if data is None:
        where = escape(str(match.get("evidence") or "not saved (set evidence_dir)"))
        return f'<div class="pair"><div class=muted>image: {where}</div>{caption}</div>'
    encoded = base64.b64encode(data).decode("ascii")
    alt = escape(f"generation ≈ {match.get('known')}")
    # the evidence picture is three panels side by side: say which is which
    labels = '<div class="muted">generated · training image · difference</div>'
    return (f'<div class="pair">{labels}<img alt="{alt}" src="data:image/png;base64,'
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
    return (f"<p>model folder "
            f"<code>{escape(str(report.model.get('path')))}</code></p><div class=\"scroll\">"
            f"<table><tr><th class=l>weight file</th><th class=l>SHA-256</th></tr>{files}"
            "</table></div>"
            f"<p>audit data <code>{escape(str(report.data.get('root')))}</code></p><table>"
            "<tr><th class=l>domain</th><th class=l>prompt</th><th>members</th>"
            f"<th>non-members</th></tr>{domains}</table><details><summary>effective "
            f"configuration</summary><pre>{config}</pre></details>"
            f"<p class=muted>packages: {packages}</p>")
