"""The extraction probe in a scan: generation, matching, evidence PNGs and the gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2l_scan.config import make_config
from s2l_scan.errors import UsageError
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
    assert [r.domain for r in records] == ["identity-0", "identity-1"]
    for record in records:
        # δ = 1 puts every generation within δ of every known image: all of them (the members
        # of both domains) are extracted, by all 3 generations; no non-member is indexed.
        members = len(list((tiny_reference / "data").glob("identity-*/members/*.png")))
        assert record.settings["n_known"] == members
        assert (record.extracted, record.matched_generations, record.nonmember_matches) == (
            members, 3, 0)
        assert len(record.matches) == 3 * members and not record.passed
        assert record.reasons[0].kind == "extraction"
        assert (record.reasons[0].observed, record.reasons[0].threshold) == (members, 0)
        assert f"{members} distinct training image(s) extracted" in record.reasons[0].text
        assert "matched by 3 of 3 generations" in record.reasons[0].text
        assert "max_extracted 0" in record.reasons[0].text
        for match in record.matches:
            assert match["known"].startswith("identity-") and "/members/" in match["known"]
            png = Image.open(match["evidence"])
            assert png.width == 3 * png.height  # generated | known | difference
    assert not report.passed  # type: ignore[attr-defined]


def test_more_guidance_scales_add_their_generations_to_the_search(tiny_reference: Path
                                                                  ) -> None:
    # extraction_samples images at each scale, searched together: δ = 1 matches all 6, and
    # every match and the settings say at which scale it came back
    report = _scan(tiny_reference, extraction_delta=1.0, extraction_k=1000,
                   extraction_extra_guidance=[3.0], max_auc=1.0, max_tpr=1.0)
    for record in report.extraction:  # type: ignore[attr-defined]
        assert (record.n_generated, record.matched_generations) == (6, 6)
        assert record.settings["guidance"] == [1.0, 3.0]
        assert record.settings["matched_generations_by_guidance"] == {"1.0": 3, "3.0": 3}
        assert {m["guidance"] for m in record.matches if m["generated_index"] < 3} == {1.0}
        assert {m["guidance"] for m in record.matches if m["generated_index"] >= 3} == {3.0}
    with pytest.raises(UsageError, match="extraction_extra_guidance"):
        make_config(extraction_extra_guidance=[float("inf")])


def test_nothing_matches_when_delta_is_tight(tiny_reference: Path) -> None:
    report = _scan(tiny_reference, extraction_delta=1e-4, max_extracted=0, max_auc=1.0,
                   max_tpr=1.0)
    assert all(r.extracted == r.matched_generations == r.nonmember_matches == 0 and r.passed
               for r in report.extraction)  # type: ignore[attr-defined]
    assert all(r.nearest_distance > 1e-4 for r in report.extraction)  # type: ignore[attr-defined]
    # nothing failed; the membership rows (6 per class) cannot show safety: inconclusive
    assert report.outcome == "inconclusive"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("key", "value"), [("extraction_delta", 0.0),
                                            ("extraction_samples", -1),
                                            ("extraction_guidance", float("nan"))])
def test_bad_extraction_settings_are_usage_errors(key: str, value: object) -> None:
    from s2l_scan.errors import UsageError

    with pytest.raises(UsageError, match=key):
        make_config(**{key: value})


def test_extraction_runs_on_each_probe_copy(tiny_reference: Path) -> None:
    report = _scan(tiny_reference, probes=["noise"], extraction_delta=1.0, extraction_k=1000)
    records = {(r.probe, r.domain): r for r in report.extraction}  # type: ignore[attr-defined]
    assert set(records) == {(p, d) for p in (None, "noise")
                            for d in ("identity-0", "identity-1")}
    members = len(list((tiny_reference / "data").glob("identity-*/members/*.png")))
    assert all(r.matched_generations == 3 and r.extracted == members for r in records.values())
    quiet = _scan(tiny_reference, probes=["noise"], extraction_on_probes=False)
    assert {r.probe for r in quiet.extraction} == {None}  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# which images are known, and the index cache across scans


def _first_image(reference: Path, split: str) -> np.ndarray:
    path = sorted((reference / "data" / "identity-0" / split).iterdir())[0]
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(params=["members"])
def planted(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
            tiny_reference: Path) -> np.ndarray:
    """Generation 0 of every domain is replaced by the first image of identity-0's split
    ``request.param`` (default: members).

    Scans using it must run with ``cache="off"``: the unit store would hand back the
    generations of an earlier scan of the same model instead of sampling (and planting)."""
    import s2l_scan.generation
    import s2l_scan.probes.extraction as probe

    image = _first_image(tiny_reference, request.param)
    real = s2l_scan.generation.generate_images

    def generate(*args: object, **kwargs: object) -> np.ndarray:
        images = real(*args, **kwargs)  # type: ignore[arg-type]
        images[0] = image
        return images

    # The scan samples through the unit store (s2l_scan.generation), the probe module directly.
    monkeypatch.setattr(s2l_scan.generation, "generate_images", generate)
    monkeypatch.setattr(probe, "generate_images", generate)
    return image


@pytest.mark.parametrize(("known", "extracted"), [("members", 1), ("all", 1),
                                                  ("nonmembers", 0)])
def test_control_index_of_nonmembers_finds_no_member_copy(
        planted: np.ndarray, tiny_reference: Path, tmp_path: Path, known: str,
        extracted: int) -> None:
    # cache off: the unit store would otherwise hand back generations of an earlier scan
    report = _scan(tiny_reference, known_images=known, index_cache_dir=str(tmp_path),
                   domains=["identity-0"], cache="off")
    (record,) = report.extraction  # type: ignore[attr-defined]
    assert (record.extracted, record.matched_generations) == (extracted, extracted)
    assert record.nonmember_matches == 0  # the planted image is a member
    assert record.settings["known_images"] == known
    if extracted:
        assert record.matches[0]["generated_index"] == 0
        assert record.matches[0]["distance"] == 0.0
        assert "/members/" in record.matches[0]["known"]
        assert "stand in for the training set" in record.settings["training_set"]
    else:
        assert record.nearest_distance > record.settings["delta"]
        assert "no training image" in record.settings["training_set"]


@pytest.mark.parametrize("planted", ["nonmembers"], indirect=True)
@pytest.mark.parametrize("known", ["all", "nonmembers"])
def test_a_generation_copying_a_nonmember_is_never_extraction(
        planted: np.ndarray, tiny_reference: Path, tmp_path: Path, known: str) -> None:
    report = _scan(tiny_reference, known_images=known, index_cache_dir=str(tmp_path),
                   domains=["identity-0"], cache="off")
    (record,) = report.extraction  # type: ignore[attr-defined]
    assert record.nearest_distance == 0.0  # generation 0 is a held-out image, exactly
    assert (record.extracted, record.matched_generations, record.matches) == (0, 0, [])
    assert record.nonmember_matches == 1
    assert record.passed


def test_training_mask_marks_exactly_the_audit_nonmembers(tiny_reference: Path) -> None:
    from s2l_scan.io.audit_data import load_audit_data
    from s2l_scan.probes.extraction import (
        UNLABELLED_TRAINING_SET,
        ExtractionSettings,
        known_images,
        training_mask,
        training_set,
    )

    data = load_audit_data(tiny_reference / "data", 32)
    ids = [key for key, _ in known_images(data, "all")]
    nonmembers = {key for key, _ in known_images(data, "nonmembers")}
    members = {key for key, _ in known_images(data, "members")}
    assert nonmembers and members and set(ids) == nonmembers | members
    mask = training_mask(ids, ExtractionSettings(known_images="all"))
    assert mask is not None
    assert {key for key, train in zip(ids, mask.tolist(), strict=True) if not train} == nonmembers
    unlabelled = [ExtractionSettings(known_images=str(tiny_reference)),
                  ExtractionSettings(known_index=str(tiny_reference))]
    for settings in unlabelled:  # a user folder or a prebuilt index: every image is training
        assert training_mask(ids, settings) is None
        assert training_set(settings) == UNLABELLED_TRAINING_SET


def test_known_images_from_a_folder(planted: np.ndarray, tiny_reference: Path,
                                    tmp_path: Path) -> None:
    folder = tmp_path / "extra" / "nested"
    folder.mkdir(parents=True)
    Image.fromarray(planted).save(folder / "copy.png")
    Image.fromarray(255 - planted).save(folder / "other.png")
    report = _scan(tiny_reference, known_images=str(tmp_path / "extra"),
                   index_cache_dir=str(tmp_path / "cache"), domains=["identity-0"],
                   cache="off")  # planted generations: never the unit store's earlier ones
    (record,) = report.extraction  # type: ignore[attr-defined]
    assert record.settings["n_known"] == 2
    assert [m["known"] for m in record.matches] == [str(tmp_path / "extra/nested/copy.png")]
    assert (record.extracted, record.matched_generations, record.nonmember_matches) == (1, 1, 0)
    assert "every image of the known set is taken as a training image" in (
        record.settings["training_set"])


def test_known_index_gives_the_matches_of_the_same_folder_in_memory(
        planted: np.ndarray, tiny_reference: Path, tmp_path: Path) -> None:
    from s2l_scan.cli import main

    folder = tmp_path / "known"  # 24 audit images (one is the planted copy) and 16 others
    for path in sorted((tiny_reference / "data").glob("identity-*/*members/*.png")):
        target = folder / path.relative_to(tiny_reference / "data")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    rng = np.random.default_rng(0)
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(folder / f"{i}.png")
    assert main(["index", "build", "--images", str(folder), "--out", str(tmp_path / "idx"),
                 "--resolution", "32", "--shard-size", "7"]) == 0
    # loose δ and k: every generation matches, so whole match lists are compared
    options = {"extraction_delta": 0.5, "extraction_k": 1000, "domains": ["identity-0"],
               "cache": "off", "index_cache_dir": str(tmp_path / "cache")}
    memory = _scan(tiny_reference, known_images=str(folder), **options)
    disk = _scan(tiny_reference, known_index=str(tmp_path / "idx"), **options)
    (expected,), (record,) = memory.extraction, disk.extraction  # type: ignore[attr-defined]
    # δ = 0.5: each generation lies within δ of some of the 40 images, which are all taken as
    # training images (a folder and an index carry no membership), non-members included.
    assert expected.matched_generations == record.matched_generations == 3
    assert record.extracted == expected.extracted == len({m["known"] for m in record.matches})
    assert record.nonmember_matches == expected.nonmember_matches == 0
    assert record.settings["known_index"] == str(tmp_path / "idx")
    assert record.settings["n_known"] == expected.settings["n_known"] == 40
    assert "known_images" not in record.settings
    for match in expected.matches:  # in-memory ids carry the folder; the index's are relative
        match["known"] = str(Path(match["known"]).relative_to(folder))
    assert record.matches == expected.matches
    assert record.matches[0]["distance"] == 0.0  # the planted member
    assert record.nearest_distance == expected.nearest_distance


@pytest.mark.parametrize(("value", "message"), [
    ("memebrs", "neither one of members, nonmembers, all nor an existing folder"),
    ("", "must be one of members"),
])
def test_bad_known_images_are_usage_errors(value: str, message: str) -> None:
    from s2l_scan.errors import UsageError

    with pytest.raises(UsageError, match=message):
        make_config(known_images=value)


def test_empty_known_folder_is_a_usage_error(tiny_reference: Path, tmp_path: Path) -> None:
    from s2l_scan.errors import UsageError

    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no image"):
        _scan(tiny_reference, known_images=str(tmp_path / "empty"))


def test_known_image_sets_match_the_config_names() -> None:
    from s2l_scan.config import KNOWN_IMAGE_SETS as NAMES
    from s2l_scan.probes.extraction import KNOWN_IMAGE_SETS

    assert tuple(KNOWN_IMAGE_SETS) == NAMES


def test_second_scan_reuses_the_cached_index(tiny_reference: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from s2l_scan.extraction.index import KnownImageIndex

    options = {"extraction_delta": 1.0, "extraction_k": 1000, "index_cache_dir": str(tmp_path)}
    first = _scan(tiny_reference, **options)
    calls: list[object] = []
    monkeypatch.setattr(KnownImageIndex, "build", classmethod(
        lambda cls, *a, **k: calls.append(a) or pytest.fail("the index was rebuilt")))
    again = _scan(tiny_reference, **options)
    assert calls == []
    assert again.extraction == first.extraction  # type: ignore[attr-defined]
    assert len(list(tmp_path.iterdir())) == 1
