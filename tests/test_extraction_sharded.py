"""The on-disk sharded known-image index gives exactly the in-memory index's answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from s2l_scan.errors import UsageError
from s2l_scan.extraction.index import KnownImageIndex
from s2l_scan.extraction.sharded import build_sharded, open_sharded
from tests.test_extraction_index import _scene


def _pairs(known: np.ndarray) -> list[tuple[str, np.ndarray]]:
    return [(f"known/{i:05d}.png", x) for i, x in enumerate(known)]


@pytest.fixture(scope="module")
def small_scene() -> tuple[np.ndarray, np.ndarray]:
    known, generated = _scene()
    return known[:600], generated


@pytest.mark.parametrize(("shard_size", "ivf_threshold"), [(97, 100_000), (250, 50), (600, 10)])
@pytest.mark.parametrize("tiled", [False, True])
def test_sharded_matches_equal_in_memory(small_scene: tuple[np.ndarray, np.ndarray],
                                         tmp_path: Path, shard_size: int, ivf_threshold: int,
                                         tiled: bool) -> None:
    known, generated = small_scene
    memory = KnownImageIndex.build(_pairs(known))
    folder = build_sharded(_pairs(known), tmp_path / "idx", shard_size=shard_size,
                           ivf_threshold=ivf_threshold)
    disk = open_sharded(folder)
    expected = memory.matches(generated, k=10, delta=0.1, tiled=tiled)
    assert expected  # the scene plants matches
    assert disk.matches(generated, k=10, delta=0.1, tiled=tiled) == expected
    assert disk.candidates(generated, 0.1) == memory.candidates(generated, 0.1)
    assert [disk.ids[m.known_index] for m in expected] == [
        memory.ids[m.known_index] for m in expected]
    assert np.array_equal(disk.pixels[[5, 599, 0]], known[[5, 599, 0]])
    assert len(disk) == len(known) and disk.kind == "sharded"


def test_duplicate_ids_across_shards_are_refused(tmp_path: Path) -> None:
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(UsageError, match="more than once"):
        build_sharded([("a", image), ("b", image), ("a", image)], tmp_path / "idx", shard_size=2)
    assert not (tmp_path / "idx").exists()
