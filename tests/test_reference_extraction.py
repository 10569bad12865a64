"""The default reference model's extraction check (issue: extraction probe, item 5): its
planted duplicates come back as eidetic matches in the default extraction settings, and a
control index holding only non-members finds nothing. Slow: the default reference builds in
~17 min on one core when it is not cached, and the scan samples 128 images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s2l_scan.config import make_config
from s2l_scan.reference.cache import cached_reference
from s2l_scan.reference.presets import get_preset
from s2l_scan.report.model import ExtractionRecord
from s2l_scan.session import ScanInputs, run_scan


@pytest.mark.slow
def test_default_reference_regenerates_its_planted_members_and_the_control_finds_none(
        user_cache: Path) -> None:
    folder = cached_reference(get_preset("default"), 0, root=user_cache)
    split = json.loads((folder / "manifest.json").read_text())["split"]
    planted = {f"{domain}/members/{name}" for domain, record in split.items()
               for name in record["duplicated_members"]}
    inputs = ScanInputs(model=str(folder / "model"), data=str(folder / "data"))

    def records(known_images: str) -> list[ExtractionRecord]:
        config = make_config(attacks=["loss"], probes=[], known_images=known_images)
        return run_scan(inputs, config).extraction

    found = records("members")
    matches = [match for record in found for match in record.matches]
    assert matches, "the default scan finds no eidetic match of any planted member"
    assert {match["known"] for match in matches} <= planted
    assert all(float(str(match["distance"])) <= 0.1 for match in matches)
    for record in found:  # distinct images apart from the generations that matched them
        assert record.extracted == len({match["known"] for match in record.matches})
        assert record.matched_generations == len({m["generated_index"] for m in record.matches})
        assert record.nonmember_matches == 0  # the index holds no non-member
    control = records("nonmembers")
    assert all(r.extracted == r.matched_generations == 0 and r.matches == [] for r in control)
