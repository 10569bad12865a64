"""Tests of s2l_scan.functional.eidetic: a brute-force double loop in plain numpy as oracle."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from s2l_scan.functional import eidetic as E

SHAPES = [(4, 4, 1), (4, 4, 3), (4, 8, 3), (8, 4, 1), (8, 8, 3)]
PROPERTY = settings(max_examples=60, deadline=None)


# ---------------------------------------------------------------------------------------------
# the oracle


def _unit(image: np.ndarray) -> np.ndarray:
    return image / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)


def loop_rms(x: np.ndarray, y: np.ndarray, tiles: int = 1) -> float:
    """RMS of [0, 1] pixels, the largest over a tiles × tiles grid; one pair at a time."""
    x, y = _unit(x), _unit(y)
    h, w = x.shape[0] // tiles, x.shape[1] // tiles
    return max(math.sqrt(np.mean((x[r * h:(r + 1) * h, c * w:(c + 1) * w]
                                  - y[r * h:(r + 1) * h, c * w:(c + 1) * w]) ** 2))
               for r in range(tiles) for c in range(tiles))


def loop_copies(known: np.ndarray, delta: float, tiles: int,
                training: list[bool] | None = None) -> list[int]:
    """Carlini et al.'s |{x' ∈ D : ℓ(x, x') ≤ δ}| with D the training images: x itself is in
    D (when it is a training image) and at distance 0, so it counts."""
    train = [True] * len(known) if training is None else training
    return [sum(1 for j in range(len(known)) if train[j] and loop_rms(known[i], known[j], tiles)
                <= delta) for i in range(len(known))]


def loop_matches(gen: np.ndarray, known: np.ndarray, k: int, delta: float, tiles: int,
                 training: list[bool] | None = None) -> set[tuple[int, int]]:
    train = [True] * len(known) if training is None else training
    copies = loop_copies(known, delta, tiles, training)
    return {(g, j) for g in range(len(gen)) for j in range(len(known))
            if train[j] and loop_rms(gen[g], known[j], tiles) <= delta and copies[j] <= k}


# ---------------------------------------------------------------------------------------------
# strategies


def image_batches(dtype: str, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    elements = st.floats(0.0, 1.0) if dtype == "float" else st.integers(0, 255)
    return st.integers(1, 6).flatmap(lambda n: arrays(
        np.float64 if dtype == "float" else np.uint8, (n, *shape), elements=elements))


@st.composite
def batch_pairs(draw: st.DrawFn, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    shape = draw(st.sampled_from(SHAPES))
    return draw(image_batches(dtype, shape)), draw(image_batches(dtype, shape))


any_pairs = st.sampled_from(["uint8", "float"]).flatmap(batch_pairs)


@dataclass(frozen=True)
class Scene:
    """Known images with near-duplicate clusters and generations near some of them."""

    known: np.ndarray
    generated: np.ndarray
    k: int
    delta: float
    tiles: int
    training: list[bool]


def _jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    amplitude = int(rng.choice([0, 4, 16, 40]))
    noise = rng.integers(-amplitude, amplitude + 1, image.shape)
    return np.clip(image.astype(np.int64) + noise, 0, 255).astype(np.uint8)


@st.composite
def scenes(draw: st.DrawFn) -> Scene:
    shape = draw(st.sampled_from(SHAPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    known = rng.integers(0, 256, (draw(st.integers(1, 6)), *shape), dtype=np.uint8)
    for i in range(1, len(known)):  # clusters: most images jitter an earlier one
        if rng.random() < 0.7:
            known[i] = _jitter(known[rng.integers(i)], rng)
    generated = rng.integers(0, 256, (draw(st.integers(1, 6)), *shape), dtype=np.uint8)
    for g in range(len(generated)):
        if rng.random() < 0.7:
            generated[g] = _jitter(known[rng.integers(len(known))], rng)
    # δ = (2j + 1)/194 cannot equal an RMS of uint8 images this small (97² would have to divide
    # the tile's pixel count), so the oracle and the code never disagree on a rounding tie.
    delta = (2 * draw(st.integers(0, 47)) + 1) / 194
    training = [bool(t) for t in rng.random(len(known)) < 0.7]
    return Scene(known, generated, draw(st.integers(1, 4)), delta,
                 draw(st.sampled_from([1, 2, 4])), training)


# ---------------------------------------------------------------------------------------------
# distances


@PROPERTY
@given(any_pairs)
def test_rms_agrees_with_loop(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    expected = [[loop_rms(x, y) for y in b] for x in a]
    np.testing.assert_allclose(E.rms_distance(a, b), expected, rtol=1e-12, atol=1e-15)


@PROPERTY
@given(any_pairs, st.sampled_from([1, 2, 4]))
def test_tiled_agrees_with_loop(pair: tuple[np.ndarray, np.ndarray], tiles: int) -> None:
    a, b = pair
    expected = [[loop_rms(x, y, tiles) for y in b] for x in a]
    np.testing.assert_allclose(E.tiled_rms_distance(a, b, tiles), expected, rtol=1e-12,
                               atol=1e-15)


@PROPERTY
@given(any_pairs)
def test_rms_symmetric_zero_on_self_and_bounded(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    d = E.rms_distance(a, b)
    assert np.array_equal(d, E.rms_distance(b, a).T)
    assert np.all(np.diag(E.rms_distance(a, a)) == 0.0)
    assert np.all((d >= 0.0) & (d <= 1.0))


@PROPERTY
@given(any_pairs, st.sampled_from([2, 4]))
def test_tiled_never_below_plain(pair: tuple[np.ndarray, np.ndarray], tiles: int) -> None:
    a, b = pair
    tiled, plain = E.tiled_rms_distance(a, b, tiles), E.rms_distance(a, b)
    # uint8 distances are exact; float ones may round differently by an ulp or so.
    slack = 0.0 if a.dtype == np.uint8 else 1e-12
    assert np.all(tiled >= plain - slack)
    assert np.all(tiled <= 1.0)


@PROPERTY
@given(batch_pairs("uint8"))
def test_uint8_equals_float_and_one_tile_equals_plain(pair: tuple[np.ndarray, np.ndarray],
                                                      ) -> None:
    a, b = pair
    plain = E.rms_distance(a, b)
    assert np.array_equal(E.tiled_rms_distance(a, b, tiles=1), plain)
    np.testing.assert_allclose(E.rms_distance(a / 255.0, b / 255.0), plain, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# the eidetic rule


@PROPERTY
@given(scenes())
def test_copy_counts_agree_with_loop(scene: Scene) -> None:
    counts = E.copy_counts(scene.known, scene.delta, tiled=True, tiles=scene.tiles)
    assert counts.tolist() == loop_copies(scene.known, scene.delta, scene.tiles)
    plain = E.copy_counts(scene.known, scene.delta, training=np.array(scene.training))
    assert plain.tolist() == loop_copies(scene.known, scene.delta, 1, scene.training)


@PROPERTY
@given(scenes(), st.booleans())
def test_matches_agree_with_brute_force(scene: Scene, tiled: bool) -> None:
    tiles = scene.tiles if tiled else 1
    for training in (None, scene.training):
        found = E.eidetic_matches(scene.generated, scene.known, k=scene.k, delta=scene.delta,
                                  tiled=tiled, tiles=scene.tiles,
                                  training=None if training is None else np.array(training))
        assert {(m.generated_index, m.known_index) for m in found} == loop_matches(
            scene.generated, scene.known, scene.k, scene.delta, tiles, training)
        for m in found:
            expected = loop_rms(scene.generated[m.generated_index], scene.known[m.known_index],
                                tiles)
            assert m.distance == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert found == sorted(found, key=E.match_order)


@PROPERTY
@given(scenes(), st.booleans())
def test_pairs_within_agree_with_loop(scene: Scene, tiled: bool) -> None:
    tiles = scene.tiles if tiled else 1
    found = E.pairs_within(scene.generated, scene.known, delta=scene.delta, tiled=tiled,
                           tiles=scene.tiles)
    assert [(m.generated_index, m.known_index) for m in found] == [
        (m.generated_index, m.known_index) for m in sorted(found, key=E.match_order)]
    assert {(m.generated_index, m.known_index) for m in found} == {
        (g, j) for g in range(len(scene.generated)) for j in range(len(scene.known))
        if loop_rms(scene.generated[g], scene.known[j], tiles) <= scene.delta}


@PROPERTY
@given(scenes())
def test_an_image_appearing_more_than_k_times_never_matches(scene: Scene) -> None:
    copies = loop_copies(scene.known, scene.delta, 1)
    found = E.eidetic_matches(scene.generated, scene.known, k=scene.k, delta=scene.delta)
    assert all(copies[m.known_index] <= scene.k for m in found)


@pytest.mark.parametrize("k", [1, 2, 10])
@pytest.mark.parametrize(("appearances", "eidetic"), [("k", True), ("k+1", False)])
def test_k_boundary_counts_the_image_itself(k: int, appearances: str, eidetic: bool) -> None:
    """Carlini et al.: x is (k, ℓ2, δ)-eidetic when at most k training examples lie within δ
    of it, x itself included. An image present k times in the known set (itself and k − 1
    identical copies) is eidetic; present k + 1 times (itself and k copies), it is not."""
    rng = np.random.default_rng(k)
    image = rng.integers(0, 256, (1, 4, 4, 3), dtype=np.uint8)
    others = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    times = k if appearances == "k" else k + 1
    known = np.concatenate([np.repeat(image, times, axis=0), others])
    assert E.copy_counts(known, delta=0.01)[:times].tolist() == [times] * times
    found = E.eidetic_matches(image, known, k=k, delta=0.01)
    assert [m.known_index for m in found] == (list(range(times)) if eidetic else [])


def test_a_nonmember_is_never_matched_nor_counted_as_a_copy() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (1, 4, 4, 3), dtype=np.uint8)
    known = np.repeat(image, 3, axis=0)  # a member, then two identical held-out non-members
    training = np.array([True, False, False])
    # With k = 1 the member is eidetic: the non-member copies are not training examples.
    found = E.eidetic_matches(image, known, k=1, delta=0.01, training=training)
    assert [(m.known_index, m.distance) for m in found] == [(0, 0.0)]
    assert E.eidetic_matches(image, known, k=10, delta=0.01, training=~training) == [
        E.Match(0, 1, 0.0), E.Match(0, 2, 0.0)]
    assert E.eidetic_matches(image, known, k=10, delta=0.01,
                             training=np.zeros(3, dtype=bool)) == []
    assert len(E.pairs_within(image, known, delta=0.01)) == 3  # all within δ nonetheless


def test_tiled_distance_refuses_a_difference_the_plain_rms_averages_away() -> None:
    """The max over tiles is the stricter test: one region that differs (a white 2×2 patch at
    0.2 in one of 16 tiles) leaves the plain RMS at 0.05 < δ = 0.1, while that tile's RMS is
    0.2 > δ. The plain rule calls the pair a copy; the tiled rule does not."""
    known = np.zeros((1, 8, 8, 1), np.uint8)
    generated = known.copy()
    generated[0, :2, :2, 0] = 51  # 51/255 = 0.2 over 4 of 64 pixels
    assert E.rms_distance(generated, known)[0, 0] == pytest.approx(0.05, abs=1e-15)
    assert E.tiled_rms_distance(generated, known, tiles=4)[0, 0] == pytest.approx(0.2,
                                                                                abs=1e-15)
    assert loop_rms(generated[0], known[0]) < 0.1 < loop_rms(generated[0], known[0], tiles=4)
    assert [m.known_index for m in E.eidetic_matches(generated, known, k=1, delta=0.1)] == [0]
    assert E.eidetic_matches(generated, known, k=1, delta=0.1, tiled=True, tiles=4) == []


def test_distance_exactly_delta_matches() -> None:
    rng = np.random.default_rng(7)
    known = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    generated = _jitter(known[:1], rng)
    delta = float(E.rms_distance(generated, known[:1])[0, 0])
    assert [m.known_index for m in E.eidetic_matches(generated, known, delta=delta)] == [0]
    assert E.eidetic_matches(generated, known, delta=np.nextafter(delta, 0.0)) == []


def test_every_qualifying_pair_is_returned_in_order() -> None:
    base = np.zeros((1, 4, 4, 1), np.uint8)
    known = np.concatenate([base + 10, base + 5, base + 200])
    found = E.eidetic_matches(base, known, k=2, delta=0.05)  # 0 and 1 appear twice each
    assert [(m.known_index, round(m.distance * 255)) for m in found] == [(1, 5), (0, 10)]


def test_empty_batches() -> None:
    empty, one = np.zeros((0, 4, 4, 3), np.uint8), np.zeros((1, 4, 4, 3), np.uint8)
    assert E.rms_distance(empty, one).shape == (0, 1)
    assert E.eidetic_matches(empty, one) == []
    assert E.eidetic_matches(one, empty) == []
    assert E.copy_counts(empty, 0.1).tolist() == []
    assert E.pairs_within(empty, one) == []


# ---------------------------------------------------------------------------------------------
# errors

IMG = np.zeros((2, 4, 4, 3), np.uint8)
BAD_CALLS: list[tuple[str, Any, str]] = [
    ("resolution", lambda: E.rms_distance(IMG, np.zeros((1, 8, 8, 3), np.uint8)), "resolution"),
    ("channels", lambda: E.rms_distance(IMG, np.zeros((1, 4, 4, 1), np.uint8)), "resolution"),
    ("ndim", lambda: E.rms_distance(IMG[0], IMG), r"\(N, H, W, C\)"),
    ("int64", lambda: E.rms_distance(IMG.astype(np.int64), IMG), "dtype int64"),
    ("above-one", lambda: E.rms_distance(IMG + 2.0, IMG), r"outside \[0, 1\]"),
    ("nan", lambda: E.rms_distance(IMG * np.nan, IMG), r"outside \[0, 1\]"),
    ("tiles", lambda: E.tiled_rms_distance(IMG, IMG, tiles=3), "divide"),
    ("tiles-zero", lambda: E.tiled_rms_distance(IMG, IMG, tiles=0), "divide"),
    ("delta", lambda: E.eidetic_matches(IMG, IMG, delta=-0.1), "delta"),
    ("delta-nan", lambda: E.copy_counts(IMG, math.nan), "delta"),
    ("k", lambda: E.eidetic_matches(IMG, IMG, k=-1), "k must be >= 1"),
    ("k-zero", lambda: E.eidetic_matches(IMG, IMG, k=0), "itself included"),
    ("training-shape", lambda: E.eidetic_matches(IMG, IMG, training=np.ones(3, bool)),
     "one entry per known image"),
    ("training-dtype", lambda: E.copy_counts(IMG, 0.1, training=np.ones(2)),
     "boolean mask"),
    ("k-float", lambda: E.eidetic_matches(IMG, IMG, k=1.5),  # type: ignore[arg-type]  # on purpose
     "k must be an integer"),
    ("tiled", lambda: E.eidetic_matches(IMG, IMG, tiled=True, tiles=3), "divide"),
]


@pytest.mark.parametrize(("call", "message"), [c[1:] for c in BAD_CALLS],
                         ids=[c[0] for c in BAD_CALLS])
def test_bad_inputs_raise_usage_errors(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
