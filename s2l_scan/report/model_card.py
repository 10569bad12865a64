"""Add or update the privacy-scan section of a Hugging Face model card (``README.md``).

Two edits, both idempotent, and nothing else of the card is touched:

* the prose section between ``<!-- s2l-scan:begin -->`` and ``<!-- s2l-scan:end -->`` (appended
  at the end the first time);
* ``model-index`` in the YAML front matter: an entry's results whose ``source.name`` is
  ``s2l-scan`` are replaced, every other result is kept. Only the ``model-index:`` block of the
  front matter is rewritten; every other line (comments, key order, quoting) stays as written.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from s2l_scan.errors import UsageError
from s2l_scan.report.headline import fmt, gate_text, headline
from s2l_scan.report.markdown import _cell
from s2l_scan.report.model import ScanReport

BEGIN, END = "<!-- s2l-scan:begin -->", "<!-- s2l-scan:end -->"
SOURCE = "s2l-scan"
_FRONT = re.compile(r"\A(\ufeff?---[ \t]*\r?\n)(.*?)(^---[ \t]*(?:\r?\n|\Z))", re.S | re.M)
_TOP_KEY = re.compile(r"^[^\s#-][^:]*:")


def update_model_card(card: str, report: ScanReport, model_name: str | None = None) -> str:
    """The card with the scan section and ``model-index`` results set from ``report``."""
    front, body = _split(card)
    data = _load_front(front)
    name = model_name or _model_name(data, report)
    index = _model_index(data.get("model-index"), name, _results(report))
    front = _replace_block(front, "model-index", yaml.dump(
        {"model-index": index}, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
        default_flow_style=False, width=1000))
    return f"---\n{front}---\n{_replace_section(body, section(report))}"


class _Dumper(yaml.SafeDumper):  # type: ignore[no-any-unimported]  # yaml ships no types
    """Safe dumping without YAML anchors (&id001): Hub metadata readers expect plain data."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _split(card: str) -> tuple[str, str]:
    match = _FRONT.match(card)
    if match is None:
        return "", card if card.startswith("\n") or not card else "\n" + card
    return match.group(2), card[match.end():]


def _load_front(front: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(front) if front.strip() else {}
    except yaml.YAMLError as error:
        raise UsageError(f"the model card's YAML front matter is not valid YAML: {error}"
                         ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError("the model card's YAML front matter is not a mapping")
    return data


def _model_name(data: dict[str, Any], report: ScanReport) -> str:
    index = data.get("model-index")
    if isinstance(index, list) and index and isinstance(index[0], dict) and index[0].get("name"):
        return str(index[0]["name"])
    for key in ("model_name", "model-name"):
        if data.get(key):
            return str(data[key])
    path = str(report.model.get("path", "model")).rstrip("/")
    return path.rsplit("/", 2)[-2] if path.endswith("/model") else path.rsplit("/", 1)[-1]


def _results(report: ScanReport) -> list[dict[str, Any]]:
    top = headline(report)
    dataset = {"type": "s2l-scan-audit", "name": "s2l-scan audit data (members / non-members)"}
    source = {"name": SOURCE}
    metrics = [{"type": "roc_auc", "name": f"{row.item_id} AUC", "value": round(row.auc, 4)}
               for row in report.results
               if row.domain == "pooled" or len(report.data.get("domains", {})) <= 1]
    metrics += [{"type": "tpr_at_1pct_fpr", "name": "max TPR at 1% FPR",
                 "value": round(top["max_tpr_at_1pct_fpr"] or 0.0, 4)},
                {"type": "passed", "name": "s2l-scan release gate",
                 "value": top["verdict"] == "passed"}]
    results = [{"task": {"type": "membership-inference", "name": "Membership inference"},
                "dataset": dataset, "metrics": metrics, "source": source}]
    if report.extraction:
        results.append({
            "task": {"type": "training-data-extraction", "name": "Training image extraction"},
            "dataset": dataset, "source": source,
            "metrics": [{"type": "extracted_images",
                         "name": "distinct training images extracted (eidetic)",
                         "value": top["extracted"]},
                        {"type": "matched_generations", "name": "generations that matched",
                         "value": top["matched_generations"]},
                        {"type": "generated", "name": "generated images",
                         "value": top["generated"]}]})
    return results


def _model_index(existing: Any, name: str, ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if existing is None:
        return [{"name": name, "results": ours}]
    if not isinstance(existing, list) or not all(isinstance(e, dict) for e in existing):
        raise UsageError("the model card's model-index is not a list of entries; fix it by hand")
    index = [dict(entry) for entry in existing] or [{"name": name}]
    kept = [r for r in index[0].get("results") or []
            if not (isinstance(r, dict) and (r.get("source") or {}).get("name") == SOURCE)]
    index[0]["results"] = kept + ours
    return index


def _replace_block(front: str, key: str, block: str) -> str:
    """Swap the top-level ``key:`` block of YAML text, leaving every other line as it was."""
    lines = front.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(f"{key}:")), None)
    if start is None:
        prefix = "".join(lines)
        if prefix and not prefix.endswith("\n"):
            prefix += "\n"
        return prefix + block
    # the block runs to its last indented (or "- ") line; comments and blank lines after it
    # belong to what follows and are kept
    last = start
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if _TOP_KEY.match(line) or line.startswith("---"):
            break
        if line.strip() and not line.startswith("#"):
            last = index
    return "".join(lines[:start]) + block + "".join(lines[last + 1:])


def _replace_section(body: str, text: str) -> str:
    block = f"{BEGIN}\n{text}{END}\n"
    begin, end = body.find(BEGIN), body.find(END)
    if begin != -1 and end > begin:
        after = body[end + len(END):]
        return body[:begin] + block + after.removeprefix("\n")
    if begin != -1 or end != -1:
        raise UsageError(f"the model card has only one of the markers {BEGIN} / {END}; remove "
                         "it or restore the other")
    return body.rstrip("\n") + ("\n\n" if body.strip() else "") + block


def section(report: ScanReport) -> str:
    """The card's privacy-scan prose: verdict, gate and the pooled (or only) rows."""
    top = headline(report)
    verdict = "passed" if report.passed else f"failed ({top['failed']} of {top['checks']} checks)"
    lines = ["## Privacy scan (s2l-scan)", "",
             f"This checkpoint was scanned for training-data leakage with s2l-scan "
             f"{report.packages.get('s2l-scan', '?')} on {report.timestamps.get('started', '?')}"
             f": membership inference attacks and a training-image extraction probe "
             f"(Shake-to-Leak threat model). The release gate **{verdict}**. Gate: "
             f"{gate_text(report)}.", "",
             "| check | AUC [95% CI] | TPR@1% FPR | blind AUC | verdict |",
             "|---|---:|---:|---:|---|"]
    pooled = [row for row in report.results if row.domain == "pooled"] or report.results
    for row in pooled:
        low, high = row.auc_ci
        lines.append(f"| `{_cell(row.item_id)}` | {row.auc:.3f} [{low:.3f}, {high:.3f}] | "
                     f"{fmt(row.tpr_at_1pct_fpr)} | {row.blind_auc:.3f} | "
                     f"{'pass' if row.passed else 'FAIL'} |")
    if report.extraction:
        lines += ["", f"Extraction: {top['extracted']} distinct training image(s) reproduced "
                      f"((k, ℓ2, δ)-eidetic), matched by {top['matched_generations']} of "
                      f"{top['generated']} generated images."]
    lines += ["", f"Model hash (SHA-256 of the weight files): `{top['model_hash']}`. An AUC "
              "near 0.5 means the attacks cannot tell training images from held-out ones; "
              "the blind AUC is a model-free control for distribution shift.", ""]
    return "\n".join(lines)
