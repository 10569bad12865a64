"""The extraction probe in a scan: generation, matching, evidence PNGs and the gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2l_scan.config import make_config
from s2l_scan.generation import SamplerSettings, generate_images
from s2l_scan.io.model import load_pipeline
from s2l_scan.session import ScanInputs, run_scan


def _scan(ref: Path, **options: object) -> object:
    options.setdefault("probes", [])
    config = make_config(attacks=["loss"], extraction_samples=3, extraction_steps=2,
                         extraction_guidance=1.0, **options)
    return run_scan(ScanInputs(model=str(ref / "model"), data=str(ref / "data")), config)


def test_generation_is_seeded_per_image(tiny_reference: Path) -> None:
    pipe = load_pipeline(tiny_reference / "model").pipeline
    few = SamplerSettings(steps=2, guidance=1.0, batch_size=2)
    first = generate_images(pipe, "a photo of identity 0", 3, seed=0, key="d", settings=few)
    again = generate_images(pipe, "a photo of identity 0", 2, seed=0, key="d",
                            settings=SamplerSettings(steps=2, guidance=1.0, batch_size=1))
    assert first.shape == (3, 32, 32, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first[:2], again)
    other = generate_images(pipe, "a photo of identity 0", 2, seed=1, key="d", settings=few)
    assert not np.array_equal(first[:2], other)
    tail = generate_images(pipe, "a photo of identity 0", 2, seed=0, key="d", settings=few,
                           first=1)  # a slice of the stream, as a data-parallel scan asks
    np.testing.assert_array_equal(first[1:], tail)


def test_every_generation_matches_when_delta_is_loose(tiny_reference: Path, tmp_path: Path
                                                      ) -> None:
    report = _scan(tiny_reference, extraction_delta=1.0, extraction_k=1000,
                   evidence_dir=str(tmp_path / "evidence"))
    records = report.extraction  # type: ignore[attr-defined]
    assert [r["domain"] for r in records] == ["identity-0", "identity-1"]
    for record in records:
        assert record["extracted"] == 3 and not record["passed"]
        assert "max_extracted 0" in record["reasons"][0]
        for match in record["matches"]:
            assert match["known"].startswith("identity-") and "/members/" in match["known"]
            png = Image.open(match["evidence"])
            assert png.width == 3 * png.height  # generated | known | difference
    assert not report.passed  # type: ignore[attr-defined]


def test_nothing_matches_when_delta_is_tight(tiny_reference: Path) -> None:
    report = _scan(tiny_reference, extraction_delta=1e-4, max_extracted=0, max_auc=1.0,
                   max_tpr=1.0)
    assert all(r["extracted"] == 0 and r["passed"] for r in report.extraction)  # type: ignore[attr-defined]
    assert all(r["nearest_distance"] > 1e-4 for r in report.extraction)  # type: ignore[attr-defined]
    assert report.passed  # type: ignore[attr-defined]


@pytest.mark.parametrize(("key", "value"), [("extraction_delta", 0.0),
                                            ("extraction_samples", -1),
                                            ("extraction_guidance", float("nan"))])
def test_bad_extraction_settings_are_usage_errors(key: str, value: object) -> None:
    from s2l_scan.errors import UsageError

    with pytest.raises(UsageError, match=key):
        make_config(**{key: value})


def test_extraction_runs_on_each_probe_copy(tiny_reference: Path) -> None:
    report = _scan(tiny_reference, probes=["noise"], extraction_delta=1.0, extraction_k=1000)
    records = {(r["probe"], r["domain"]): r for r in report.extraction}  # type: ignore[attr-defined]
    assert set(records) == {(p, d) for p in (None, "noise")
                            for d in ("identity-0", "identity-1")}
    assert all(r["extracted"] == 3 for r in records.values())
    quiet = _scan(tiny_reference, probes=["noise"], extraction_on_probes=False)
    assert {r["probe"] for r in quiet.extraction} == {None}  # type: ignore[attr-defined]
