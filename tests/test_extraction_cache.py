"""The known-image index cache: built once per content, reused, and never trusted when bad."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from s2l_scan.extraction.cache import IndexCacheWarning, cached_index, index_key
from s2l_scan.extraction.embedders import PixelEmbedder
from s2l_scan.extraction.index import KnownImageIndex

SHAPE = (16, 16, 3)


@pytest.fixture
def images() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    return [(f"img{i}.png", x) for i, x in
            enumerate(rng.integers(0, 256, (30, *SHAPE), dtype=np.uint8))]


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of KnownImageIndex.build (the builder the cache must skip on a hit)."""
    calls: list[int] = []
    real = KnownImageIndex.build.__func__  # type: ignore[attr-defined]

    def spy(cls: type[KnownImageIndex], *args: object, **kwargs: object) -> KnownImageIndex:
        calls.append(1)
        return real(cls, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(KnownImageIndex, "build", classmethod(spy))
    return calls


def test_second_lookup_loads_instead_of_building(images: list[tuple[str, np.ndarray]],
                                                 builds: list[int], tmp_path: Path) -> None:
    first, status = cached_index(images, PixelEmbedder(), root=tmp_path)
    again, status_again = cached_index(images, PixelEmbedder(), root=tmp_path)
    assert (status, status_again, len(builds)) == ("built", "reused", 1)
    generated = np.stack([images[4][1], images[9][1]])
    assert again.matches(generated) == first.matches(generated) != []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("change", ["pixels", "ids", "embedder", "ivf"])
def test_key_follows_content_embedder_and_settings(images: list[tuple[str, np.ndarray]],
                                                   change: str) -> None:
    base = index_key(images, PixelEmbedder(), ivf_threshold=100)
    other = list(images)
    embedder, ivf = PixelEmbedder(), 100
    if change == "pixels":
        pixels = other[0][1].copy()
        pixels[0, 0, 0] ^= 1
        other[0] = (other[0][0], pixels)
    elif change == "ids":
        other[0] = ("renamed.png", other[0][1])
    elif change == "embedder":
        embedder = PixelEmbedder(4)
    else:
        ivf = 10
    assert index_key(other, embedder, ivf_threshold=ivf) != base


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _stale_pixels(folder: Path) -> None:
    """A consistent entry (checksums updated) whose pixels are not the scan's."""
    meta = json.loads((folder / "meta.json").read_text())
    index = KnownImageIndex.load(folder)
    pixels = index.pixels.copy()
    pixels[0] ^= 1
    stale = KnownImageIndex.build(zip(index.ids, pixels, strict=True))
    fresh = stale.save(folder.parent / "stale")
    for name in ("index.faiss", "known.npz", "meta.json"):
        (folder / name).write_bytes((fresh / name).read_bytes())
    assert json.loads((folder / "meta.json").read_text())["count"] == meta["count"]


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "truncated-faiss": lambda f: _truncate(f / "index.faiss"),
    "flipped-faiss": lambda f: _flip(f / "index.faiss"),
    "truncated-arrays": lambda f: _truncate(f / "known.npz"),
    "flipped-arrays": lambda f: _flip(f / "known.npz"),
    "garbage-meta": lambda f: (f / "meta.json").write_text("{not json"),
    "missing-meta": lambda f: (f / "meta.json").unlink(),
    "missing-faiss": lambda f: (f / "index.faiss").unlink(),
    "stale-pixels": _stale_pixels,
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_bad_entry_is_rebuilt_with_a_warning(images: list[tuple[str, np.ndarray]],
                                             corrupt: Callable[[Path], None], tmp_path: Path,
                                             builds: list[int]) -> None:
    good, _ = cached_index(images, PixelEmbedder(), root=tmp_path / "cache")
    (entry,) = (tmp_path / "cache").iterdir()
    corrupt(entry)
    with pytest.warns(IndexCacheWarning, match="rebuilding"):
        index, status = cached_index(images, PixelEmbedder(), root=tmp_path / "cache")
    assert status == "rebuilt" and len(builds) == 2 + (corrupt is _stale_pixels)
    assert index.ids == good.ids and np.array_equal(index.pixels, good.pixels)
    generated = np.stack([images[1][1], images[2][1]])
    assert index.matches(generated) == good.matches(generated)
    assert cached_index(images, PixelEmbedder(), root=tmp_path / "cache")[1] == "reused"


def test_unwritable_cache_still_gives_the_index(images: list[tuple[str, np.ndarray]],
                                                tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(IndexCacheWarning, match="could not cache"):
        index, status = cached_index(images, PixelEmbedder(), root=blocker)
    assert status == "built" and len(index) == len(images)
