"""Tests of s2l_scan.extraction.index: FAISS retrieval + exact verification equals brute force."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from s2l_scan.errors import ScanError, UsageError
from s2l_scan.extraction.index import KnownImageIndex, pooled_embedding
from s2l_scan.functional.eidetic import (
    Match,
    eidetic_matches,
    pairs_within,
    rms_distance,
    tiled_rms_distance,
)

SHAPE = (16, 16, 3)
K, DELTA = 10, 0.1
# Perturbation sizes (exact RMS, floored to a whole uint8 squared-error) straddling δ = 0.1.
RADII = (0.02, 0.05, 0.08, 0.0999, 0.1, 0.1001, 0.105, 0.12, 0.15)
# The k rule counts the image itself (Carlini et al.): an image present K times is eidetic,
# one present K + 1 times is not.
REFUSED_CLUSTER = range(0, 11)  # 11 near-copies: each appears 11 times > K
ALLOWED_CLUSTER = range(20, 30)  # 10 near-copies: each appears 10 times = K


def _perturb(image: np.ndarray, rms: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``image`` at RMS distance exactly sqrt(floor(rms² · D · 255²) / (D · 255²))."""
    flat = image.astype(np.int64).ravel()
    remaining = math.floor(rms**2 * flat.size * 255**2)
    # Brighten dark pixels by the largest step that fits: whole squares, so the sum is exact.
    for i in rng.permutation(np.flatnonzero(flat < 128)):
        step = min(127, math.isqrt(remaining))
        flat[i] += step
        remaining -= step * step
    assert remaining == 0
    return flat.reshape(image.shape).astype(np.uint8)


def _scene(seed: int = 2024) -> tuple[np.ndarray, np.ndarray]:
    """10,000 random known images with planted clusters; 200 generations near some of them."""
    rng = np.random.default_rng(seed)
    known = rng.integers(0, 256, (10_000, *SHAPE), dtype=np.uint8)
    for cluster in (REFUSED_CLUSTER, ALLOWED_CLUSTER):
        for i in cluster[1:]:
            known[i] = _perturb(known[cluster[0]], 0.03, rng)
    known[41] = _perturb(known[40], 0.08, rng)  # a near-copy pair: one duplicate each
    targets = [0, 5, 20, 25, 40, 41, *rng.choice(np.arange(50, len(known)), 14, replace=False)]
    near = [_perturb(known[j], r, rng) for j in targets for r in RADII]
    noise = rng.integers(0, 256, (20, *SHAPE), dtype=np.uint8)
    return known, np.concatenate([np.stack(near), noise])


def _build(known: np.ndarray, **options: Any) -> KnownImageIndex:
    return KnownImageIndex.build(((f"known/{i:05d}.png", x) for i, x in enumerate(known)),
                                 **options)


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    return _scene()


@pytest.fixture(scope="module")
def flat(scene: tuple[np.ndarray, np.ndarray]) -> KnownImageIndex:
    return _build(scene[0])


@pytest.fixture(scope="module")
def ivf(scene: tuple[np.ndarray, np.ndarray]) -> KnownImageIndex:
    return _build(scene[0], ivf_threshold=1_000)


@pytest.fixture(scope="module")
def brute(scene: tuple[np.ndarray, np.ndarray]) -> dict[bool, list[Match]]:
    known, generated = scene
    return {tiled: eidetic_matches(generated, known, k=K, delta=DELTA, tiled=tiled)
            for tiled in (False, True)}


# ---------------------------------------------------------------------------------------------
# agreement with brute force


@pytest.mark.parametrize("tiled", [False, True], ids=["plain", "tiled"])
def test_flat_index_equals_brute_force(flat: KnownImageIndex, scene: tuple[np.ndarray, ...],
                                       brute: dict[bool, list[Match]], tiled: bool) -> None:
    assert flat.kind == "flat"
    assert flat.matches(scene[1], k=K, delta=DELTA, tiled=tiled) == brute[tiled]
    assert len(brute[tiled]) > 20


def test_ivf_index_equals_brute_force(ivf: KnownImageIndex, scene: tuple[np.ndarray, ...],
                                      brute: dict[bool, list[Match]]) -> None:
    assert ivf.kind == "ivf"
    for tiled in (False, True):
        assert ivf.matches(scene[1], k=K, delta=DELTA, tiled=tiled) == brute[tiled]


def test_float_generations_equal_brute_force(flat: KnownImageIndex,
                                             scene: tuple[np.ndarray, ...]) -> None:
    generated = scene[1][::9] / 255.0  # one per target, cycling through the radii
    expected = eidetic_matches(generated, scene[0], k=K, delta=DELTA)
    assert flat.matches(generated, k=K, delta=DELTA) == expected
    assert expected


def test_candidates_hold_every_true_neighbour(flat: KnownImageIndex,
                                              scene: tuple[np.ndarray, ...]) -> None:
    known, generated = scene
    candidates = flat.candidates(generated, DELTA)
    for dist in (rms_distance(generated, known), tiled_rms_distance(generated, known)):
        within = [set(np.flatnonzero(row <= DELTA).tolist()) for row in dist]
        assert all(w <= set(c) for w, c in zip(within, candidates, strict=True))
    # Pooling keeps the search selective: far fewer candidates than known images.
    assert sum(map(len, candidates)) < 20 * len(generated)


def test_scene_exercises_the_rule(brute: dict[bool, list[Match]],
                                  scene: tuple[np.ndarray, ...]) -> None:
    hits = {m.known_index for m in brute[False]}
    assert hits.isdisjoint(REFUSED_CLUSTER) and hits & set(ALLOWED_CLUSTER)
    assert {40, 41} <= hits
    refused = eidetic_matches(scene[1], scene[0], k=len(scene[0]), delta=DELTA)
    assert {m.known_index for m in refused} & set(REFUSED_CLUSTER)  # within δ, refused by k
    # The radii straddle δ: 0.0999 matches, 0.1001 does not (generation 9·t + radius index).
    matched_generations = {m.generated_index for m in brute[False] if m.known_index >= 50}
    assert {9 * 10 + 3, 9 * 10 + 4} <= matched_generations
    assert 9 * 10 + 5 not in matched_generations
    assert brute[True] != brute[False]  # the tiled distance changes the answer here


def test_cached_counts_serve_other_k(flat: KnownImageIndex,
                                    scene: tuple[np.ndarray, ...]) -> None:
    generated = scene[1][27:81]  # near the allowed cluster, the pair and random images
    first = flat.matches(generated, k=K, delta=DELTA)
    assert flat.matches(generated, k=K, delta=DELTA) == first
    # k = 1 refuses every image with a near-copy besides itself, and only those.
    unique = [m for m in first if m.known_index not in (*ALLOWED_CLUSTER, 40, 41)]
    assert flat.matches(generated, k=1, delta=DELTA) == unique
    assert unique and len(unique) < len(first)


def test_training_mask_equals_brute_force(flat: KnownImageIndex,
                                         scene: tuple[np.ndarray, ...]) -> None:
    known, generated = scene
    # Half the allowed cluster and one of the pair held out: fewer copies, and no match to them.
    training = np.ones(len(known), dtype=bool)
    training[[20, 22, 24, 26, 28, 41]] = False
    generated = generated[:60]
    for tiled in (False, True):
        expected = eidetic_matches(generated, known, k=K, delta=DELTA, tiled=tiled,
                                   training=training)
        assert flat.matches(generated, k=K, delta=DELTA, tiled=tiled,
                            training=training) == expected
        assert not {m.known_index for m in expected} & {20, 22, 24, 26, 28, 41}
    # k = 5: the allowed cluster appears 10 times in all, but only 5 times as training images.
    kept = flat.matches(generated, k=5, delta=DELTA, training=training)
    assert {m.known_index for m in kept} & {21, 23, 25, 27, 29}
    assert not {m.known_index for m in flat.matches(generated, k=5, delta=DELTA)} & set(
        ALLOWED_CLUSTER)


def test_near_equals_brute_force(flat: KnownImageIndex, scene: tuple[np.ndarray, ...]) -> None:
    known, generated = scene
    for tiled in (False, True):
        expected = pairs_within(generated, known, delta=DELTA, tiled=tiled)
        assert flat.near(generated, delta=DELTA, tiled=tiled) == expected
        # every eidetic match is a near pair, and the refused cluster is near but never matched
        assert set(flat.matches(generated, k=K, delta=DELTA, tiled=tiled)) <= set(expected)
    assert {m.known_index for m in expected} & set(REFUSED_CLUSTER)


# ---------------------------------------------------------------------------------------------
# persistence


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_save_load_round_trip(request: pytest.FixtureRequest, scene: tuple[np.ndarray, ...],
                              brute: dict[bool, list[Match]], tmp_path: Path, kind: str) -> None:
    index: KnownImageIndex = request.getfixturevalue(kind)
    loaded = KnownImageIndex.load(index.save(tmp_path / "index"))
    assert (loaded.kind, loaded.ids, loaded.resolution) == (kind, index.ids, index.resolution)
    assert np.array_equal(loaded.pixels, index.pixels)
    assert loaded.matches(scene[1], k=K, delta=DELTA) == brute[False]
    assert [p.name for p in tmp_path.iterdir()] == ["index"]  # no staging folder left behind


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    known = np.random.default_rng(0).integers(0, 256, (5, *SHAPE), dtype=np.uint8)
    return _build(known).save(tmp_path / "small")


def _edit_meta(folder: Path, **changes: Any) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, **changes}))


@pytest.mark.parametrize(("changes", "message"), [
    ({"format_version": 99}, "format version 99"),
    ({"format_version": None}, "format version None"),
    ({"format": "other"}, "does not describe"),
    ({"count": 6}, "promises 6"),
    ({"resolution": [16, 16]}, "resolution"),
])
def test_load_refuses_mismatched_metadata(saved: Path, changes: dict[str, Any],
                                          message: str) -> None:
    _edit_meta(saved, **changes)
    with pytest.raises(ScanError, match=message):
        KnownImageIndex.load(saved)


def test_load_refuses_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ScanError, match="not a saved known-image index"):
        KnownImageIndex.load(tmp_path / "nowhere")


@pytest.mark.parametrize("existing", ["folder", "file"])
def test_save_refuses_to_overwrite(saved: Path, existing: str) -> None:
    index = KnownImageIndex.load(saved)
    target = saved.parent / existing
    if existing == "folder":
        target.mkdir()
    else:
        target.write_text("keep me")
    with pytest.raises(UsageError, match="already exists"):
        index.save(target)
    with pytest.raises(UsageError, match="already exists"):
        index.save(saved)
    assert sorted(p.name for p in saved.parent.iterdir()) == sorted([existing, "small"])


# ---------------------------------------------------------------------------------------------
# input errors

PIX = np.zeros(SHAPE, np.uint8)
BAD_BUILDS: list[tuple[str, Callable[[], Any], str]] = [
    ("empty", lambda: KnownImageIndex.build([]), "no known images"),
    ("mixed", lambda: KnownImageIndex.build([("a", PIX), ("b", PIX[:8])]), "one resolution"),
    ("duplicate-id", lambda: KnownImageIndex.build([("a", PIX), ("a", PIX)]), "'a'"),
    ("float", lambda: KnownImageIndex.build([("a", PIX / 255)]), "uint8"),
    ("batch", lambda: KnownImageIndex.build([("a", PIX[None])]), r"\(H, W, C\)"),
    ("embed-size", lambda: KnownImageIndex.build([("a", PIX)], embed_size=5), "divide"),
    ("ivf-threshold", lambda: KnownImageIndex.build([("a", PIX)], ivf_threshold=0), "ivf"),
    ("pool", lambda: pooled_embedding(PIX[None], embed_size=0), "embed_size"),
]


@pytest.mark.parametrize(("call", "message"), [c[1:] for c in BAD_BUILDS],
                         ids=[c[0] for c in BAD_BUILDS])
def test_bad_builds_raise_usage_errors(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        call()


@pytest.mark.parametrize(("generated", "options", "message"), [
    (np.zeros((1, 8, 8, 3), np.uint8), {}, r"index holds \(16, 16, 3\)"),
    (np.zeros((1, 16, 16, 1), np.uint8), {}, r"index holds \(16, 16, 3\)"),
    (np.full((1, *SHAPE), 2.0), {}, r"outside \[0, 1\]"),
    (np.zeros((1, *SHAPE), np.uint8), {"tiled": True, "tiles": 3}, "divide"),
    (np.zeros((1, *SHAPE), np.uint8), {"delta": -1.0}, "delta"),
    (np.zeros((1, *SHAPE), np.uint8), {"k": -1}, "k must be"),
])
def test_bad_queries_raise_usage_errors(saved: Path, generated: np.ndarray,
                                        options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        KnownImageIndex.load(saved).matches(generated, **options)
