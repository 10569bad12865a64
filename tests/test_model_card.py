"""`s2l-scan report`: rendering a saved report, and updating a Hugging Face model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from report_factory import extraction_record, make_report

from s2l_scan.cli import main
from s2l_scan.errors import UsageError
from s2l_scan.report.model_card import BEGIN, END, update_model_card

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


def test_card_keeps_every_line_and_gains_section_and_model_index() -> None:
    updated = update_model_card(CARD, make_report(extraction=[extraction_record(extracted=2)]))
    kept = [line for line in CARD.splitlines()
            if not line.startswith(("  ", "- name", "model-index"))]
    lines = updated.splitlines()
    assert all(line in lines for line in kept)  # comments, prose, other keys: all still there
    front = _front(updated)
    assert front["license"] == "openrail" and front["library_name"] == "diffusers"
    entry = front["model-index"][0]  # type: ignore[index]
    assert entry["name"] == "demo-sd"
    tasks = [result["task"]["type"] for result in entry["results"]]
    assert tasks == ["text-to-image", "membership-inference", "training-data-extraction"]
    assert entry["results"][0]["metrics"] == [{"type": "fid", "value": 12.3}]
    assert updated.index("## Limitations") < updated.index(BEGIN) < updated.index(END)
    assert "&id" not in updated  # no YAML anchors in Hub metadata


def test_card_update_is_idempotent_and_replaces_the_old_section() -> None:
    once = update_model_card(CARD, make_report())
    assert update_model_card(once, make_report()) == once
    rescanned = make_report(started="2027-01-01T00:00:00+00:00")
    twice = update_model_card(once, rescanned)
    assert twice.count(BEGIN) == 1 and "2027-01-01" in twice and "2026-01-01" not in twice
    assert len(_front(twice)["model-index"][0]["results"]) == 2  # type: ignore[index]


@pytest.mark.parametrize("card", ["", "# Just prose\n\nNo front matter.\n"])
def test_card_without_front_matter_gets_one(card: str) -> None:
    updated = update_model_card(card, make_report())
    assert updated.startswith("---\nmodel-index:\n- name: demo\n")
    assert card.strip() in updated
    assert update_model_card(updated, make_report()) == updated


@pytest.mark.parametrize(("card", "message"), [
    (f"# x\n{BEGIN}\nhalf a section\n", "only one of the markers"),
    ("---\nmodel-index: 3\n---\n", "not a list of entries"),
    ("---\n: [\n---\n", "not valid YAML"),
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
    argv = ["report", str(report), "--model-card", str(card)]
    for flag, path in outputs.items():
        argv += [f"--{flag}", str(path)]
    assert main(argv) == 0
    assert all(path.stat().st_size > 0 for path in outputs.values())
    assert json.loads(outputs["json"].read_text()) == json.loads(report.read_text())
    assert BEGIN in card.read_text() and "# demo-sd" in card.read_text()
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
