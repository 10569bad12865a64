"""The open_clip embedder: local weights only, safe loading, k-NN retrieval + exact verification.

A randomly initialised tiny open_clip model (registered from a config written here) stands in
for real CLIP weights, which cannot be downloaded: what is tested is the plumbing — a planted
copy is retrieved, and with candidates ≥ the known set the answer is brute force.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from s2l_scan.errors import ScanError, UsageError
from s2l_scan.extraction.embedders import check_embedder_spec, make_embedder
from s2l_scan.extraction.index import KnownImageIndex
from s2l_scan.functional.eidetic import eidetic_matches

open_clip = pytest.importorskip("open_clip")

ARCH, OTHER = "s2l-test-tiny-clip", "s2l-test-tiny-clip-wide"
SHAPE = (32, 32, 3)


def _config(width: int) -> dict[str, object]:
    return {"embed_dim": 16,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": width, "head_width": 16,
                           "patch_size": 8},
            "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2,
                         "layers": 1}}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random tiny open_clip models of two architectures, saved as safetensors and as .pt."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("open_clip")
    out = {}
    for name, width in ((ARCH, 32), (OTHER, 48)):
        (folder / f"{name}.json").write_text(json.dumps(_config(width)))
        open_clip.add_model_config(folder / f"{name}.json")
        torch.manual_seed(0)
        state = open_clip.create_model(name).state_dict()
        save_file({k: v.contiguous() for k, v in state.items()}, folder / f"{name}.safetensors")
        torch.save(state, folder / f"{name}.pt")
        out[name] = folder / f"{name}.safetensors"
    return out


def _spec(path: Path, arch: str = ARCH) -> str:
    return f"open_clip:{arch}:{path}"


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    """40 known images (a few near-copies among them) and 12 generations near some of them."""
    rng = np.random.default_rng(7)
    known = rng.integers(0, 256, (40, *SHAPE), dtype=np.uint8)
    known[30:33] = np.clip(known[5].astype(int) + rng.integers(-6, 7, (3, *SHAPE)), 0, 255)
    generated = rng.integers(0, 256, (12, *SHAPE), dtype=np.uint8)
    generated[3] = known[17]  # an exact copy
    generated[8] = np.clip(known[5].astype(int) + rng.integers(-20, 21, SHAPE), 0, 255)
    return known, generated


def _index(known: np.ndarray, spec: str) -> KnownImageIndex:
    return KnownImageIndex.build([(f"k{i}", x) for i, x in enumerate(known)],
                                 embedder=make_embedder(spec))


def test_planted_copy_is_found_through_open_clip(weights: dict[str, Path],
                                                 scene: tuple[np.ndarray, np.ndarray]) -> None:
    known, generated = scene
    index = _index(known, _spec(weights[ARCH]))
    assert not index.exact and index.embedder.metric == "ip"
    found = index.matches(generated, k=10, delta=0.01, candidates=2)
    assert [(m.generated_index, m.known_index, m.distance) for m in found] == [(3, 17, 0.0)]
    assert 17 in index.candidates(generated[3:4], 0.05, candidates=1)[0]


@pytest.mark.parametrize(("tiled", "delta"), [(False, 0.1), (False, 0.2), (True, 0.15)])
def test_all_candidates_equal_brute_force(weights: dict[str, Path], tiled: bool, delta: float,
                                          scene: tuple[np.ndarray, np.ndarray]) -> None:
    known, generated = scene
    index = _index(known, _spec(weights[ARCH]))
    for k in (1, 2, 10):
        expected = eidetic_matches(generated, known, k=k, delta=delta, tiled=tiled)
        got = index.matches(generated, k=k, delta=delta, tiled=tiled, candidates=len(known))
        assert got == expected
    assert index.matches(generated, k=10, delta=0.2, candidates=len(known))  # not vacuous


def test_features_are_normalised_and_deterministic(weights: dict[str, Path],
                                                   scene: tuple[np.ndarray, np.ndarray]) -> None:
    embedder = make_embedder(_spec(weights[ARCH]))
    first = embedder.embed(scene[0][:5])
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(first, make_embedder(_spec(weights[ARCH])).embed(scene[0][:5]))


def test_saved_open_clip_index_needs_the_same_weights(weights: dict[str, Path], tmp_path: Path,
                                                      scene: tuple[np.ndarray, ...]) -> None:
    index = _index(scene[0], _spec(weights[ARCH]))
    folder = index.save(tmp_path / "index")
    loaded = KnownImageIndex.load(folder, make_embedder(_spec(weights[ARCH])))
    assert loaded.matches(scene[1], candidates=3) == index.matches(scene[1], candidates=3)
    with pytest.raises(ScanError, match="pass that embedder"):
        KnownImageIndex.load(folder)
    with pytest.raises(ScanError, match="was built with embedder"):
        KnownImageIndex.load(folder, make_embedder("pixels"))


def test_pickled_weights_need_the_opt_in(weights: dict[str, Path]) -> None:
    pickled = weights[ARCH].with_suffix(".pt")
    with pytest.raises(UsageError, match="allow-pickle"):
        make_embedder(_spec(pickled))
    embedder = make_embedder(_spec(pickled), allow_pickle=True)  # read with weights_only=True
    image = np.zeros((1, *SHAPE), np.uint8)
    np.testing.assert_allclose(embedder.embed(image),
                               make_embedder(_spec(weights[ARCH])).embed(image), atol=1e-6)


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pickle code ran",))


def test_code_in_a_pickle_is_refused_even_with_the_opt_in(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"x": _Payload()}, path)
    with pytest.raises(ScanError, match="could not load"):
        make_embedder(_spec(path), allow_pickle=True)


def test_weights_of_another_architecture_are_a_scan_error(weights: dict[str, Path]) -> None:
    with pytest.raises(ScanError, match=f"{OTHER}.safetensors.*{ARCH}"):
        make_embedder(_spec(weights[OTHER], ARCH))


@pytest.mark.parametrize(("spec", "error", "message"), [
    ("open_clip:{ARCH}:{missing}", UsageError, "missing.safetensors' is not an existing local"),
    ("open_clip:{ARCH}:openai", UsageError, "'openai' is not an existing local file"),
    ("open_clip:no-such-arch:{weights}", UsageError, "list_models"),
    ("open_clip:{ARCH}:{text}", UsageError, "unknown file type '.txt'"),
    ("open_clip:{ARCH}", UsageError, "open_clip:ARCH:PATH"),
    ("clip", UsageError, "unknown embedder 'clip'; known: pixels, open_clip:ARCH:PATH"),
    ("pixels:8", UsageError, "takes no argument"),
    ("", UsageError, "non-empty"),
])
def test_bad_specs_name_the_culprit(weights: dict[str, Path], tmp_path: Path, spec: str,
                                    error: type[Exception], message: str) -> None:
    (tmp_path / "w.txt").write_text("not weights")
    spec = spec.format(ARCH=ARCH, missing=tmp_path / "missing.safetensors",
                       weights=weights[ARCH], text=tmp_path / "w.txt")
    with pytest.raises(error, match=message):
        make_embedder(spec)


def test_spec_syntax_is_checked_without_loading() -> None:
    check_embedder_spec("open_clip:ViT-B-32:/nowhere/weights.safetensors")  # loads nothing
    with pytest.raises(UsageError, match="unknown embedder"):
        check_embedder_spec("dino:vits16")


def test_scan_with_the_open_clip_embedder(weights: dict[str, Path], tiny_reference: Path,
                                          tmp_path: Path) -> None:
    from s2l_scan.config import make_config
    from s2l_scan.session import ScanInputs, run_scan

    config = make_config(attacks=["loss"], probes=[], extraction_samples=3, extraction_steps=2,
                         extraction_guidance=1.0, extraction_delta=1.0, extraction_k=1000,
                         extraction_candidates=2, embedder=_spec(weights[ARCH]),
                         index_cache_dir=str(tmp_path),
                         # as generated only: each view retrieves its own candidates and the
                         # shifts compare every known image (tests/test_extraction_views.py)
                         extraction_invariances="none")
    report = run_scan(ScanInputs(model=str(tiny_reference / "model"),
                                 data=str(tiny_reference / "data")), config)
    assert len(report.extraction) == 2  # one per domain: the loop below is not vacuous
    for record in report.extraction:
        # δ = 1: every retrieved candidate verifies, two per generation
        assert record.matched_generations == 3 and len(record.matches) == 3 * 2
        assert record.extracted == len({m["known"] for m in record.matches})
        assert record.settings["embedder"] == _spec(weights[ARCH])
        assert record.settings["exact_retrieval"] is False
        assert record.settings["candidates"] == 2


@pytest.mark.parametrize(("option", "message"), [
    ("open_clip:s2l-test-tiny-clip:/nowhere/w.safetensors", "/nowhere/w.safetensors"),
    ("clip", "unknown embedder 'clip'"),
])
def test_cli_bad_embedder_is_a_usage_error(tiny_reference: Path, tmp_path: Path, option: str,
                                           message: str, capsys: pytest.CaptureFixture[str],
                                           weights: dict[str, Path]) -> None:
    from s2l_scan.cli import main

    code = main(["scan", str(tiny_reference / "model"), "--data", str(tiny_reference / "data"),
                 "--probes", "", "--attacks", "loss", "--extraction-samples", "1",
                 "--extraction-steps", "1", "--embedder", option,
                 "--index-cache-dir", str(tmp_path)])
    assert code == 4
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
