"""Add or update the privacy-scan section of a Hugging Face model card (``README.md``).

The card is read and written through huggingface_hub's own ``ModelCard`` / ``ModelCardData`` /
``EvalResult``, so whatever the Hub (and ``ModelCard.load``) accepts stays accepted. Two edits,
both idempotent:

* the prose section between ``<!-- s2l-scan:begin -->`` and ``<!-- s2l-scan:end -->`` (appended
  at the end the first time); the rest of the body is kept as written;
* ``model-index`` results on the audit data set (``dataset.type`` ``s2l-scan-audit``) are
  replaced, every other result is kept. Every other metadata key (license, tags, ...) is kept
  with its value and order; YAML comments in the front matter are not (huggingface_hub
  rewrites the block as data).

Metrics are numbers only (AUCs, TPR, counts); the verdict is text, in the prose. A card without
``library_name`` / ``pipeline_tag`` / ``license`` gets ``diffusers``, the pipeline the audit
implies, and the license given (never a guessed one).
"""

from __future__ import annotations

from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard import REGEX_YAML_BLOCK

from s2l_scan.errors import UsageError
from s2l_scan.report.headline import (
    decide_n,
    fmt,
    gate_text,
    headline,
    undecided_reasons,
    verdict_word,
)
from s2l_scan.report.markdown import _cell
from s2l_scan.report.model import ScanReport

BEGIN, END = "<!-- s2l-scan:begin -->", "<!-- s2l-scan:end -->"
SOURCE = "s2l-scan"  # source.name of results written by s2l-scan before 0.2 (no url: the Hub
# refuses a source without one), recognised and replaced
DATASET_TYPE = "s2l-scan-audit"
DATASET_NAME = "s2l-scan audit data (members / non-members)"


def update_model_card(card: str, report: ScanReport, model_name: str | None = None,
                      license: str | None = None) -> str:
    """The card with the scan section and ``model-index`` results set from ``report``.

    ``license`` fills a card that has none (an SPDX-style Hub id such as ``apache-2.0``); an
    existing license is never changed."""
    crlf = "\r\n" in card  # worked on with "\n", written back with the card's own endings
    data, text = _parse(card.replace("\r\n", "\n"))
    name = model_name or _model_name(data, report)
    if "model-index" in data:
        data["model-index"] = _without_ours(data["model-index"])
    parsed = _model_card(data, text)
    meta = card_data(parsed)
    meta.eval_results = list(meta.eval_results or []) + results(report)
    meta.model_name = name
    if meta.library_name is None:
        meta.library_name = "diffusers"
    if meta.pipeline_tag is None:
        meta.pipeline_tag = pipeline_tag(report)
    if meta.license is None and license:
        meta.license = license
    body = parsed.text if parsed.text.strip() else f"# {name}\n"  # a new card gets a title
    parsed.text = _replace_section(body, section(report))
    return str(parsed).replace("\n", "\r\n") if crlf else str(parsed)


def card_data(card: ModelCard) -> ModelCardData:
    """``card.data``, typed (huggingface_hub annotates it as the base ``CardData``)."""
    assert isinstance(card.data, ModelCardData)  # ModelCard.card_data_class
    return card.data


def _parse(card: str) -> tuple[dict[str, Any], str]:
    """Front matter and body of ``card``, split with the Hub's own regular expression."""
    match = REGEX_YAML_BLOCK.search(card)
    if match is None:
        return {}, card if card.startswith("\n") or not card else "\n" + card
    try:
        data = yaml.safe_load(match.group(2))
    except yaml.YAMLError as error:
        raise UsageError(f"the model card's YAML front matter is not valid YAML: {error}"
                         ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError("the model card's YAML front matter is not a mapping")
    return data, card[match.end():]


def _without_ours(index: Any) -> Any:
    """``model-index`` without earlier s2l-scan results (by data set type, or by the source
    name older s2l-scan versions wrote); entries left without results are dropped."""
    if not isinstance(index, list) or not all(isinstance(e, dict) for e in index):
        raise UsageError("the model card's model-index is not a list of entries; fix it by hand")
    if len(index) > 1:
        raise UsageError(
            f"the model card's model-index has {len(index)} entries; huggingface_hub's "
            "ModelCard (which s2l-scan writes cards with) keeps one, and would merge them under "
            "one name. Merge them by hand, or write the scan to a card with one entry.")
    entries = []
    for entry in index:
        results = [r for r in entry.get("results") or [] if not _ours(r)]
        if results:
            entries.append({**entry, "results": results})
    return entries or None


def _ours(result: Any) -> bool:
    if not isinstance(result, dict):
        return False
    dataset, source = result.get("dataset"), result.get("source")
    return ((isinstance(dataset, dict) and dataset.get("type") == DATASET_TYPE)
            or (isinstance(source, dict) and source.get("name") == SOURCE
                and not source.get("url")))


def _model_card(data: dict[str, Any], text: str) -> ModelCard:
    front = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)  # "{}" when empty
    try:
        return ModelCard(f"---\n{front}---\n{text}")
    except ValueError as error:
        raise UsageError(f"the model card's metadata cannot be read by huggingface_hub "
                         f"({error}); fix the front matter by hand") from None


def _model_name(data: dict[str, Any], report: ScanReport) -> str:
    index = data.get("model-index")
    if isinstance(index, list) and index and isinstance(index[0], dict) and index[0].get("name"):
        return str(index[0]["name"])
    for key in ("model_name", "model-name"):
        if data.get(key):
            return str(data[key])
    path = str(report.model.get("path", "model")).rstrip("/")
    return path.rsplit("/", 2)[-2] if path.endswith("/model") else path.rsplit("/", 1)[-1]


def pipeline_tag(report: ScanReport) -> str:
    """``text-to-image`` when the audit data has prompts, else
    ``unconditional-image-generation``."""
    domains = report.data.get("domains", {}).values()
    prompted = any(isinstance(d, dict) and d.get("prompt") for d in domains)
    return "text-to-image" if prompted else "unconditional-image-generation"


def results(report: ScanReport) -> list[EvalResult]:
    """The scan's numeric ``model-index`` results: AUC per pooled (or only) check, the largest
    TPR at 1% FPR, the failed-check count and, with extraction, its counts."""
    top = headline(report)

    def result(task: str, task_name: str, metric: str, name: str, value: float) -> EvalResult:
        return EvalResult(task_type=task, task_name=task_name, dataset_type=DATASET_TYPE,
                          dataset_name=DATASET_NAME, metric_type=metric, metric_name=name,
                          metric_value=value)

    mia = ("membership-inference", "Membership inference")
    single = len(report.data.get("domains", {})) <= 1
    # this checkpoint's own results: a probe row measures a shaken copy, not the release
    out = [result(*mia, "roc_auc", f"{row.item_id} AUC", round(row.auc, 4))
           for row in report.results if row.probe is None and (row.domain == "pooled" or single)]
    if top["max_tpr_at_1pct_fpr"] is not None:
        out.append(result(*mia, "tpr_at_1pct_fpr", "max TPR at 1% FPR",
                          round(float(top["max_tpr_at_1pct_fpr"]), 4)))
    out.append(result(*mia, "failed_checks", "s2l-scan checks failed (0: no leak shown)",
                      int(top["failed"])))
    out.append(result(*mia, "inconclusive_checks", "s2l-scan checks inconclusive (0 with 0 "
                      "failed: release gate passed)", int(top["inconclusive"])))
    released = released_extraction(report)
    if released is not None:
        extraction = ("training-data-extraction", "Training image extraction")
        out += [result(*extraction, "extracted_images",
                       "distinct training images extracted (eidetic)", released["extracted"]),
                result(*extraction, "matched_generations", "generations that matched",
                       released["matched_generations"]),
                result(*extraction, "generated", "generated images", released["generated"])]
    return out


def released_extraction(report: ScanReport) -> dict[str, int] | None:
    """The released model's own extraction counts (the probes' shaken copies left out:
    their generations are not this checkpoint's); None without extraction on it."""
    records = [record for record in report.extraction if record.probe is None]
    if not records:
        return None
    return {"extracted": len({str(m["known"]) for r in records for m in r.matches}),
            "matched_generations": sum(int(r.matched_generations) for r in records),
            "generated": sum(int(r.n_generated) for r in records)}


def _plain_lines(report: ScanReport) -> list[str]:
    """The released model's extraction and the probes, in plain sentences (the table above is
    this checkpoint's rows only)."""
    lines = ["", "In plain words: an attacker holding one of the training images tried to tell "
             "whether it was used to train this model (an AUC of 0.5 is a coin toss), and "
             "generated images were compared with the training images to see whether the "
             "model draws any of them again. A check fails only when it is past its threshold "
             "and the excess is too large to be chance over all the checks run."]
    released = released_extraction(report)
    if released is not None:
        lines += ["", f"Extraction: {released['extracted']} distinct training image(s) "
                      f"reproduced by this checkpoint (a generated image within a small pixel "
                      f"distance of a training image: the (k, ℓ2, δ)-eidetic test), matched by "
                      f"{released['matched_generations']} of its {released['generated']} "
                      "generated images."]
    probes = [row for row in report.results if row.probe is not None]
    if probes:
        failed = sum(not row.passed for row in probes)
        lines += ["", f"Shake-to-Leak probes: copies of this checkpoint were shaken (noise, a "
                      f"short fine-tune) and attacked again; {failed} of {len(probes)} probe "
                      "checks failed. Their numbers describe the shaken copies, not this "
                      "checkpoint, and are in the full report."]
    return lines


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
    verdict = {"passed": "passed: every gating check showed safety",
               "failed": f"failed ({top['failed']} of {top['checks']} checks)",
               "inconclusive": f"was INCONCLUSIVE ({top['inconclusive']} of {top['checks']} "
                               "checks undecided): no leak was shown, but this scan could not "
                               "show the model safe either"}[top["verdict"]]
    lines = ["## Privacy scan (s2l-scan)", "",
             f"This checkpoint was scanned for training-data leakage with s2l-scan "
             f"{report.packages.get('s2l-scan', '?')} on {report.timestamps.get('started', '?')}"
             f": membership inference attacks and a training-image extraction probe "
             f"(Shake-to-Leak threat model). The release gate **{verdict}**. Gate: "
             f"{gate_text(report)}.", "",
             "| check | AUC [95% CI] | TPR@1% FPR | blind AUC | verdict |",
             "|---|---:|---:|---:|---|"]
    own = [row for row in report.results if row.probe is None]
    pooled = [row for row in own if row.domain == "pooled"] or own
    for row in pooled:
        low, high = row.auc_ci
        lines.append(f"| `{_cell(row.item_id)}` | {row.auc:.3f} [{low:.3f}, {high:.3f}] | "
                     f"{fmt(row.tpr_at_1pct_fpr)} | {row.blind_auc:.3f} | "
                     f"{verdict_word(row)} |")
    if top["verdict"] == "inconclusive":
        needed = decide_n(report)
        lines += ["", "This is not a pass. " + "; ".join(
            f"`{_cell(item)}`: {_cell(reason.text)}" for item, reason in undecided_reasons(report))
            + ("." if needed is None else f". About {needed} members and {needed} non-members "
               "per domain would decide it.")]
    lines += _plain_lines(report)
    lines += ["", f"Model hash (SHA-256 of the weight files): `{top['model_hash']}`. An AUC "
              "near 0.5 means the attacks cannot tell training images from held-out ones; "
              "the blind AUC is a model-free control for distribution shift.", ""]
    return "\n".join(lines)
