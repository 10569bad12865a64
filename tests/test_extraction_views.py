"""Extraction sees the copies training makes (functional/views.py, probes/extraction.py):
mirrored, squashed, side-cropped and shifted planted copies are counted, one test per kind;
the maths of each view against an independent oracle; the copy-rate bound."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from s2l_scan.extraction.index import KnownImageIndex
from s2l_scan.functional import views as V
from s2l_scan.functional.eidetic import rms_distance
from s2l_scan.io.audit_data import prepare_image
from s2l_scan.probes.extraction import ExtractionSettings, run_extraction

S = 32
DELTA = 0.1


def one_over_f(seed: int, height: int, width: int) -> np.ndarray:
    """A 1/f (natural-image-like) colour image, uint8."""
    rng = np.random.default_rng(seed)
    f = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :])
    f[0, 0] = 1.0
    planes = []
    for _ in range(3):
        spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f
        spectrum[0, 0] = 0.0
        planes.append(np.fft.ifft2(spectrum).real)
    image = np.stack(planes, -1)
    image = (image - image.mean()) / image.std() * 0.2 + 0.5
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def _originals() -> list[np.ndarray]:
    """Eight training images, 4:3 landscape (as photographs come), the first a portrait."""
    wide = round(S * 4 / 3)
    return [one_over_f(0, wide, S)] + [one_over_f(seed, S, wide) for seed in range(1, 8)]


def _index() -> tuple[KnownImageIndex, list[np.ndarray]]:
    originals = _originals()
    known = [(f"d/members/{i}.png", prepare_image(Image.fromarray(o), S))
             for i, o in enumerate(originals)]
    known += [(f"d/nonmembers/{i}.png", prepare_image(Image.fromarray(one_over_f(100 + i, S,
                                                                               S)), S))
              for i in range(4)]
    return KnownImageIndex.build(known), originals


def _planted(kind: str, originals: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """A generation that copies training image 3 as training showed it, and its number."""
    image, indexed = originals[3], prepare_image(Image.fromarray(originals[3]), S)
    copy = {"flip": lambda: indexed[:, ::-1],
            "squash": lambda: np.asarray(Image.fromarray(image).resize(
                (S, S), Image.Resampling.BICUBIC)),
            "crop-left": lambda: image[:, :S], "crop-right": lambda: image[:, -S:],
            "shift": lambda: np.roll(indexed, 2, axis=1),  # 2 px at 32 px
            "flip+squash": lambda: np.asarray(Image.fromarray(image[:, ::-1]).resize(
                (S, S), Image.Resampling.BICUBIC))}[kind]()
    noise = np.random.default_rng(5).integers(-3, 4, copy.shape)  # the model's own grain
    return np.clip(copy.astype(int) + noise, 0, 255).astype(np.uint8), 3


def _extract(generated: np.ndarray, index: KnownImageIndex, invariances: tuple[str, ...]
             ) -> object:
    settings = ExtractionSettings(samples=len(generated), delta=DELTA, known_images="all",
                                  invariances=invariances)
    domain = SimpleNamespace(name="d", prompt="p")
    return run_extraction(None, [domain], index, settings, seed=0, probe=None,
                          evidence_dir=None, generate=lambda prompt, key: generated)[0]


@pytest.mark.parametrize(("kind", "family"), [
    ("flip", "flip"), ("squash", "squash"), ("crop-left", "crop"), ("crop-right", "crop"),
    ("shift", "shift"), ("flip+squash", "squash")])
def test_a_planted_copy_of_each_kind_is_counted(kind: str, family: str) -> None:
    index, originals = _index()
    copy, number = _planted(kind, originals)
    others = np.stack([one_over_f(200 + i, S, S) for i in range(3)])
    generated = np.concatenate([others, copy[None]])
    # the oracle: as generated, the copy is beyond δ of every known image (today's count: 0)
    assert rms_distance(copy[None], index.pixels).min() > DELTA
    plain = _extract(generated, index, ())
    assert plain.extracted == 0  # type: ignore[attr-defined]
    record = _extract(generated, index, V.DEFAULT_FAMILIES)
    assert record.extracted == 1 and record.matched_generations == 1  # type: ignore[attr-defined]
    (match,) = record.matches  # type: ignore[attr-defined]
    assert match["known"] == f"d/members/{number}.png" and match["generated_index"] == 3
    assert family in match["view"] and match["distance"] <= DELTA
    assert record.nonmember_matches == 0  # type: ignore[attr-defined]
    assert record.settings["invariances"] == list(V.DEFAULT_FAMILIES)  # type: ignore[attr-defined]
    # the family alone finds it too (the flipped squash needs flip as well)
    alone = _extract(generated, index, ("flip", family) if "flip+" in kind else (family,))
    assert alone.extracted == 1  # type: ignore[attr-defined]


def test_a_mirrored_copy_of_a_nonmember_is_a_nonmember_match_never_extraction() -> None:
    index, _ = _index()
    mirrored = index.pixels[len(index) - 1][:, ::-1][None]
    record = _extract(np.ascontiguousarray(mirrored), index, V.DEFAULT_FAMILIES)
    assert record.extracted == 0 and record.nonmember_matches == 1  # type: ignore[attr-defined]
    assert record.settings["nonmember_matches_plain"] == 0  # type: ignore[attr-defined]


def test_the_copy_rate_bound_is_printed_beside_none_extracted() -> None:
    index, _ = _index()
    record = _extract(np.stack([one_over_f(300 + i, S, S) for i in range(32)]), index,
                      V.DEFAULT_FAMILIES)
    assert record.extracted == 0  # type: ignore[attr-defined]
    assert record.settings["copy_rate_upper_95"] == pytest.approx(  # type: ignore[attr-defined]
        1 - 0.05 ** (1 / 32), abs=1e-6)


# ---- the maths against independent oracles


def _naive_overlap(a: np.ndarray, b: np.ndarray, dy: int, dx: int) -> float:
    total, count = 0.0, 0
    for y in range(a.shape[0]):
        for x in range(a.shape[1]):
            if 0 <= y - dy < b.shape[0] and 0 <= x - dx < b.shape[1]:
                diff = a[y, x] / 255.0 - b[y - dy, x - dx] / 255.0
                total += float((diff ** 2).sum())
                count += a.shape[2]
    return (total / count) ** 0.5


@pytest.mark.parametrize(("dy", "dx"), [(0, 0), (0, 3), (0, -5), (2, 0), (-3, 4)])
def test_overlap_rms_and_its_screen_against_a_loop(dy: int, dx: int) -> None:
    rng = np.random.default_rng(abs(dy * 10 + dx))
    a = rng.integers(0, 256, (3, 12, 12, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    exact = V.overlap_rms(a, b, dy, dx)
    for i in range(3):
        for j in range(3):
            assert exact[i, j] == pytest.approx(_naive_overlap(a[i], b[j], dy, dx), abs=1e-12)
    for factor in (1, 2, 4):
        bound = V.overlap_lower_bound(a, V.pooled(b, factor), dy, dx, factor)
        assert (bound <= exact + 1e-12).all()
    assert V.overlap_lower_bound(a, V.pooled(b, 1), dy, dx, 1) == pytest.approx(exact)


def test_squash_view_undoes_a_squash_and_flip_mirrors() -> None:
    original = one_over_f(9, S, round(S * 4 / 3))
    squashed = np.asarray(Image.fromarray(original).resize((S, S), Image.Resampling.BICUBIC))
    indexed = prepare_image(Image.fromarray(original), S)
    view = next(v for v in V.views(("squash",), S) if v.name == "squash-4:3")
    assert rms_distance(V.whole_view(squashed[None], view), indexed[None])[0, 0] < DELTA
    mirror = next(v for v in V.views(("flip",), S) if v.name == "flip")
    np.testing.assert_array_equal(V.whole_view(indexed[None], mirror)[0], indexed[:, ::-1])
    with pytest.raises(ValueError, match="shift"):
        V.whole_view(indexed[None], V.View("s", dx=2))


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 32), (1, 32), (5, 100), (0, 2000),
                                      (7, 7)])
def test_clopper_upper_against_the_binomial_tail(k: int, n: int) -> None:
    from scipy.stats import binom

    upper = V.clopper_upper(k, n)
    if k == n:
        assert upper == 1.0
    else:  # the bound is where P(X <= k) falls to 5%
        assert binom.cdf(k, n, upper) == pytest.approx(0.05, abs=1e-9)


@pytest.mark.parametrize("call", [lambda: V.clopper_upper(3, 2), lambda: V.clopper_upper(0, 0),
                                  lambda: V.clopper_upper(0, 5, 1.0),
                                  lambda: V.overlap_rms(np.zeros((1, 4, 4, 3)),
                                                        np.zeros((1, 4, 4, 3)), 0, 4),
                                  lambda: V.views(("mirror",), 32)])
def test_bad_arguments_raise_value_errors(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]
