"""functional/pooling.py (moved from extraction/index.py): pure, ValueError on bad input, equal
to a per-pixel loop oracle, and what extraction.index.pooled_embedding still returns."""

from __future__ import annotations

import math

import numpy as np
import pytest

from s2l_scan.errors import UsageError
from s2l_scan.extraction.index import pooled_embedding as index_pooled
from s2l_scan.functional.pooling import check_embed_size, pooled_embedding


def _oracle(images: np.ndarray, size: int) -> np.ndarray:
    """Block means by explicit loops over blocks, scaled to the RMS of [0, 1] images."""
    n, h, w, c = images.shape
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    bh, bw = h // size, w // size
    out = np.zeros((n, size, size, c))
    for i in range(n):
        for y in range(size):
            for x in range(size):
                block = images[i, y * bh:(y + 1) * bh, x * bw:(x + 1) * bw].astype(np.float64)
                out[i, y, x] = block.reshape(-1, c).sum(axis=0) / (bh * bw)
    return (out / scale / math.sqrt(size * size * c)).reshape(n, -1)


@pytest.mark.parametrize(("shape", "size", "dtype"), [
    ((3, 16, 16, 3), 8, np.uint8), ((2, 12, 8, 1), 4, np.uint8), ((2, 6, 9, 3), 3, np.float64)])
def test_pooled_embedding_equals_the_loop_oracle(shape: tuple[int, ...], size: int,
                                                 dtype: type) -> None:
    rng = np.random.default_rng(0)
    images = (rng.integers(0, 256, shape).astype(np.uint8) if dtype is np.uint8
              else rng.random(shape))
    got = pooled_embedding(images, size)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _oracle(images, size), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got, index_pooled(images, size))


@pytest.mark.parametrize(("size", "message"), [(5, "divide"), (0, ">= 1"), (2.5, "integer")])
def test_bad_embed_sizes_are_value_errors_here_and_usage_errors_in_the_index(
        size: object, message: str) -> None:
    images = np.zeros((1, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match=message):
        pooled_embedding(images, size)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        check_embed_size((16, 16, 3), size)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=message):
        index_pooled(images, size)  # type: ignore[arg-type]
