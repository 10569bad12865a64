"""`s2l-scan report`: rendering a saved report, and updating a Hugging Face model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from report_factory import extraction_record, make_report

from s2l_scan.cli import main
from s2l_scan.errors import UsageError
from s2l_scan.report.model_card import BEGIN, END, card_data, update_model_card

CARD = """---
license: openrail
# why this license: see LEGAL.md
tags:
- stable-diffusion
- text-to-image
model-index:
- name: demo-sd
  results:
  - task:
      type: text-to-image
    dataset:
      type: coco
      name: COCO 2017 val
    metrics:
    - type: fid
      value: 12.3
# the FID above was measured at 512 px
library_name: diffusers
---

# demo-sd

A *demo* model. Trained on | pipes | and `code`.

## Limitations

Everything.
"""


def _front(card: str) -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load(card.split("---\n")[1])
    return loaded


def _load(tmp_path: Path, card: str) -> ModelCard:
    """The card as the Hub library reads it from disk (raises on what the Hub refuses)."""
    path = tmp_path / "README.md"
    path.write_text(card, encoding="utf-8")
    return ModelCard.load(path)


def _numbers_only(card: ModelCard) -> bool:
    return all(isinstance(r.metric_value, int | float) and not isinstance(r.metric_value, bool)
               for r in card_data(card).eval_results or [])


def test_existing_card_keeps_its_metadata_results_and_prose(tmp_path: Path) -> None:
    updated = update_model_card(CARD, make_report(extraction=[extraction_record(extracted=2)]))
    card = _load(tmp_path, updated)
    assert (card_data(card).license, card_data(card).library_name) == ("openrail", "diffusers")
    assert card_data(card).tags == ["stable-diffusion", "text-to-image"]
    assert card_data(card).model_name == "demo-sd"
    fid = [r for r in card_data(card).eval_results if r.metric_type == "fid"]
    assert [(r.task_type, r.dataset_type, r.metric_value) for r in fid] == [
        ("text-to-image", "coco", 12.3)]
    tasks = [r["task"]["type"] for r in _front(updated)["model-index"][0]["results"]]  # type: ignore[index]
    assert tasks == ["text-to-image", "membership-inference", "training-data-extraction"]
    assert _numbers_only(card)
    body = CARD.split("---\n", 2)[2]
    assert card.text.startswith(body)  # the prose is kept as written, the section appended
    assert card.text.index("## Limitations") < card.text.index(BEGIN) < card.text.index(END)
    assert "&id" not in updated  # no YAML anchors in Hub metadata


@pytest.mark.parametrize(("card", "license", "domains", "pipeline"), [
    ("", None, None, "text-to-image"),
    ("# Just prose\n\nNo front matter.\n", "apache-2.0", None, "text-to-image"),
    ("---\ntags: [x]\n---\n# t\n", "mit", {"all": {"prompt": "", "n_members": 4,
                                                       "n_nonmembers": 4}},
     "unconditional-image-generation"),
])
def test_new_card_gets_hub_metadata_and_loads(tmp_path: Path, card: str, license: str | None,
                                              domains: dict[str, object] | None,
                                              pipeline: str) -> None:
    report = make_report()
    if domains is not None:
        report.data["domains"] = domains
    updated = update_model_card(card, report, license=license)
    loaded = _load(tmp_path, updated)
    meta = card_data(loaded)
    assert (meta.library_name, meta.pipeline_tag) == ("diffusers", pipeline)
    assert meta.license == license  # given, or left out: never guessed
    assert meta.model_name == "demo" and _numbers_only(loaded)
    assert card.split("---\n")[-1].strip() in loaded.text
    assert update_model_card(updated, report, license=license) == updated


def test_existing_license_and_metadata_are_never_overwritten() -> None:
    card = "---\nlicense: openrail\nlibrary_name: mylib\npipeline_tag: image-to-image\n---\n"
    front = _front(update_model_card(card, make_report(), license="mit"))
    assert (front["license"], front["library_name"], front["pipeline_tag"]) == (
        "openrail", "mylib", "image-to-image")


def test_card_update_is_idempotent_and_replaces_the_old_section() -> None:
    once = update_model_card(CARD, make_report())
    assert update_model_card(once, make_report()) == once
    rescanned = make_report(started="2027-01-01T00:00:00+00:00")
    twice = update_model_card(once, rescanned)
    assert twice.count(BEGIN) == 1 and "2027-01-01" in twice and "2026-01-01" not in twice
    assert len(_front(twice)["model-index"][0]["results"]) == 2  # type: ignore[index]


# what s2l-scan 0.1 wrote: a source without url (the Hub refuses it) and a boolean metric
LEGACY = """---
license: mit
model-index:
- name: old-name
  results:
  - task: {type: text-to-image}
    dataset: {type: coco, name: COCO}
    metrics: [{type: fid, value: 9.5}]
  - task: {type: membership-inference}
    dataset: {type: s2l-scan-audit, name: audit}
    metrics: [{type: passed, value: false}]
    source: {name: s2l-scan}
---
# old
"""


def test_card_written_by_an_older_version_is_repaired(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="source_url"):
        _load(tmp_path, LEGACY)  # the finding: the Hub library refused it
    loaded = _load(tmp_path, update_model_card(LEGACY, make_report()))
    assert card_data(loaded).model_name == "old-name" and card_data(loaded).license == "mit"
    types = [r.metric_type for r in card_data(loaded).eval_results]
    assert types[0] == "fid" and "passed" not in types and _numbers_only(loaded)


@pytest.mark.parametrize(("card", "message"), [
    (f"# x\n{BEGIN}\nhalf a section\n", "only one of the markers"),
    ("---\nmodel-index: 3\n---\n", "not a list of entries"),
    ("---\n: [\n---\n", "not valid YAML"),
    ("---\n- a\n---\n", "not a mapping"),
    ("---\nmodel-index:\n- name: a\n  results: []\n- name: b\n  results: []\n---\n",
     "has 2 entries"),
    ("---\nmodel-index:\n- name: a\n  results:\n  - task: {type: x}\n    metrics: []\n---\n",
     "cannot be read by huggingface_hub"),
])
def test_broken_cards_are_usage_errors(card: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        update_model_card(card, make_report())


def _saved_report(tmp_path: Path) -> Path:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(make_report().to_dict()))
    return path


def test_report_command_renders_every_format_and_the_card(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _saved_report(tmp_path)
    card = tmp_path / "README.md"
    card.write_text(CARD)
    outputs = {flag: tmp_path / f"out.{flag}" for flag in ("html", "markdown", "sarif", "json")}
    argv = ["report", str(report), "--model-card", str(card), "--card-license", "mit"]
    for flag, path in outputs.items():
        argv += [f"--{flag}", str(path)]
    assert main(argv) == 0
    assert all(path.stat().st_size > 0 for path in outputs.values())
    assert json.loads(outputs["json"].read_text()) == json.loads(report.read_text())
    assert BEGIN in card.read_text() and "# demo-sd" in card.read_text()
    assert card_data(ModelCard.load(card)).license == "openrail"  # the card's own license is kept
    assert "model card updated" in capsys.readouterr().out


@pytest.mark.parametrize(("extra", "message"), [
    ([], "nothing to write"),
    (["--html", "{report}"], "is also an input"),
    (["--html", "{tmp}/a", "--sarif", "{tmp}/a"], "is also given to --html"),
    (["--model-card", "{report}"], "is also an input"),
    (["--sarif", "{tmp}/missing/x.sarif"], "does not exist"),
])
def test_report_command_usage_errors_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            extra: list[str], message: str) -> None:
    report = _saved_report(tmp_path)
    before = report.read_bytes()
    argv = [a.format(report=report, tmp=tmp_path) for a in extra]
    assert main(["report", str(report), *argv]) == 4
    assert message in capsys.readouterr().err
    assert report.read_bytes() == before


def test_report_command_refuses_a_mismatched_schema(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "old.json"
    report.write_text(json.dumps({"schema_version": "0", "results": []}))
    assert main(["report", str(report), "--html", str(tmp_path / "x.html")]) == 4
    err = capsys.readouterr().err
    assert str(report) in err and "schema version '0'" in err
    assert not (tmp_path / "x.html").exists()


def test_crlf_card_keeps_its_line_endings(tmp_path: Path) -> None:
    card = "---\r\nlicense: mit\r\ndate: 2024-01-02\r\n---\r\n# Title\r\n\r\nText.\r\n"
    updated = update_model_card(card, make_report())
    assert "\n" not in updated.replace("\r\n", "")  # no bare \n mixed in
    loaded = _load(tmp_path, updated)
    assert card_data(loaded).license == "mit" and "Text." in loaded.text
    assert update_model_card(updated, make_report()) == updated


def test_the_cards_figures_are_the_released_models_only() -> None:
    # issue 27: "matched by 36 of 384 generations" mixed the probes' shaken copies into the
    # release's 18 of 128, and probes::noise/... rows were eval results of this checkpoint
    import dataclasses

    from report_factory import make_row

    released = extraction_record(extracted=2, matched_generations=5)
    shaken = dataclasses.replace(extraction_record(extracted=3, matched_generations=9),
                                 probe="noise")
    rows = [make_row(domain="pooled", shift=3.0),
            make_row(domain="pooled", shift=3.0, probe="noise")]
    report = make_report(rows, extraction=[released, shaken])
    card = update_model_card("", report, model_name="demo")
    names = [r.metric_name for r in card_data(ModelCard(card)).eval_results]
    assert not [name for name in names if "probes::" in name]
    values = {r.metric_type: r.metric_value for r in card_data(ModelCard(card)).eval_results}
    assert (values["matched_generations"], values["generated"]) == (5, released.n_generated)
    assert f"matched by 5 of its {released.n_generated} generated images" in card
    assert "1 of 1 probe checks failed" in card and "not this checkpoint" in card
    assert "In plain words" in card


def test_a_new_card_gets_a_title() -> None:
    card = update_model_card("", make_report(), model_name="acme/portraits")
    assert ModelCard(card).text.lstrip().startswith("# acme/portraits\n")
