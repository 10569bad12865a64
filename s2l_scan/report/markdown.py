"""Markdown summary of one :class:`ScanReport`, sized for ``$GITHUB_STEP_SUMMARY``.

GitHub accepts at most 1 MiB of step summary, so the text is cut at a line boundary before that
with a note saying how much was left out and where the rest is (the JSON report).
"""

from __future__ import annotations

import json

from s2l_scan.checks import Check
from s2l_scan.report.copy_rate import extracted_cell
from s2l_scan.report.digest import DETECTORS, digest_lines, what_leaked
from s2l_scan.report.headline import (
    extraction_reading,
    fmt,
    gate_text,
    headline,
    reading,
    verdict_sentence,
    verdict_word,
)
from s2l_scan.report.model import ScanReport
from s2l_scan.report.remedies import next_steps
from s2l_scan.report.run_notes import run_lines

MARKDOWN_LIMIT = 2**20  # bytes: GitHub's per-step summary limit


def _cell(text: object) -> str:
    """A table cell: pipes and newlines would break the row."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _word(check: Check) -> str:
    word = verdict_word(check)
    return word if word in ("pass", "reported") else f"**{word}**"


def _section(title: str, items: list[str]) -> list[str]:
    """A titled bullet list (budget cuts and reused units; what to do next); nothing when
    there are no items."""
    if not items:
        return []
    return [f"### {title}", "", *(f"- {_cell(item)}" for item in items), ""]


def markdown_lines(report: ScanReport) -> list[str]:
    """The summary, one element per line, most important first."""
    top = headline(report)
    sentence = verdict_sentence(report)
    verdict = {"passed": "✅ **PASSED**", "failed": "❌ **FAILED**",
               "inconclusive": "⚠️ **INCONCLUSIVE**"}[top["verdict"]]
    verdict += f" ({_cell(sentence.split(': ', 1)[1])})"
    lines = [f"## s2l-scan: {_cell(report.model.get('source', '?'))}", "",
             f"Release gate {verdict}. Gate: {gate_text(report)}.", "",
             f"Model hash `{top['model_hash']}`; scanned {report.timestamps.get('started', '?')}"
             f" in {report.timestamps.get('seconds', '?')} s with s2l-scan "
             f"{report.packages.get('s2l-scan', '?')}.", ""]
    lines += _section("This run", run_lines(report))
    leaked = digest_lines(what_leaked(report))[1:]
    if leaked:
        lines += ["### What leaked", ""]
        lines += [f"- {_cell(line.strip())}" if not line.startswith("  ") else
                  f"  - {_cell(line.strip())}" for line in leaked]
        lines.append("")
    lines += _section("What to do next", next_steps(report))
    for title, word in (("Failures", "FAIL"), ("Undecided (inconclusive checks)",
                                                 "INCONCLUSIVE")):
        found = [(str(check.check_id), reason) for check in report.checks()
                 if verdict_word(check) == word for reason in check.reasons
                 if word != "FAIL" or reason.kind != "undecided"]
        if found:
            lines += [f"### {title}", ""]
            lines += [f"- `{item}`: {_cell(reason.text)}" for item, reason in found]
            lines.append("")
    lines += ["### Results", "",
              "| check | AUC [95% CI] | raw AUC | TPR@1% | TPR@0.1% | ASR | blind AUC | n | "
              "verdict |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in report.results:
        flags = "".join(f" ({name})" for name, on in (("confounded", row.confounded),
                                                       ("unstable", row.unstable),
                                                       ("underpowered", row.underpowered)) if on)
        low, high = row.auc_ci
        lines.append(f"| `{_cell(row.item_id)}` | {row.auc:.3f} [{low:.3f}, {high:.3f}] | "
                     f"{row.auc_raw:.3f} | "
                     f"{fmt(row.tpr_at_1pct_fpr)} | {fmt(row.tpr_at_01pct_fpr)} | {row.asr:.3f} | "
                     f"{row.blind_auc:.3f} | {row.n_members}/{row.n_nonmembers} | "
                     f"{_word(row)}{flags} |")
    lines += ["", _cell(reading()), ""]
    if report.extraction:
        lines += ["### Extraction", "", "| model | domain | training images extracted | "
                  "generations matched | generated | non-member matches | nearest RMS | "
                  "verdict |", "|---|---|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {_cell(r.probe or 'released')} | {_cell(r.domain)} | "
                  f"{extracted_cell(r)} | {r.matched_generations} | {r.n_generated} | "
                  f"{r.nonmember_matches} | {fmt(r.nearest_distance, 4)} | "
                  f"{_word(r)} |"
                  for r in report.extraction]
        lines += ["", _cell(extraction_reading(report)), ""]
    if report.memorization:
        lines += ["### Memorization", "", "| check | measure | prompts | largest | largest on | "
                  "threshold | flagged | verdict |", "|---|---|---:|---:|---|---:|---:|---|"]
        for r in report.memorization:
            peak = max(r.prompts, key=lambda p: float(p["value"])) if r.prompts else None
            gated = r.threshold is not None
            lines.append(
                f"| `{_cell(r.item_id)}` | {DETECTORS.get(r.detector, (r.detector,))[0]} | "
                f"{len(r.prompts)} | {r.largest:.4g} | "
                f"{'-' if peak is None else _cell(repr(str(peak['prompt'])))} | "
                f"{_cell(f'{r.threshold:g}') if gated else 'reported, not gated'} | "
                f"{len(r.flagged) if gated else '-'} | {_word(r)} |")
        lines.append("")
    if report.comparison:
        lines += [f"### Compared with `{_cell(report.config.get('compare'))}`", "",
                  "| check | metric | previous | current | change | allowed | status |",
                  "|---|---|---:|---:|---:|---|---|"]
        lines += [f"| `{_cell(c.item)}` | {c.metric} | {fmt(c.previous, 4)} | "
                  f"{fmt(c.current, 4)} | "
                  f"{'-' if c.change is None else format(c.change, '+.4f')} | "
                  f"{c.allowance or '-'} | "
                  f"{c.status if c.passed else '**' + c.status + '**'} |"
                  for c in report.comparison]
        lines.append("")
    if report.config_changes:
        lines += ["Configuration changed since the compared report:", "",
                  "| key | previous | current |", "|---|---|---|"]
        lines += [f"| `{_cell(c['key'])}` | `{_cell(json.dumps(c['previous']))}` | "
                  f"`{_cell(json.dumps(c['current']))}` |" for c in report.config_changes]
        lines.append("")
    return lines


def render_markdown(report: ScanReport, limit: int = MARKDOWN_LIMIT) -> str:
    """The summary as text of at most ``limit`` UTF-8 bytes, cut with a note when longer."""
    lines = markdown_lines(report)
    text = "\n".join(lines) + "\n"
    if len(text.encode("utf-8")) <= limit:
        return text
    kept: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        note = (f"\n> **Truncated**: this summary is limited to {limit:,} bytes; "
                f"{len(lines) - index:,} more lines were left out. The full results are in the "
                "JSON and HTML reports.\n")
        cost = len(line.encode("utf-8")) + 1
        if used + cost + len(note.encode("utf-8")) > limit:
            return "\n".join(kept) + "\n" + note
        kept.append(line)
        used += cost
    return text  # pragma: no cover - unreachable: the whole text was over the limit
