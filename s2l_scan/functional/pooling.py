"""Area-pooled pixel embeddings (pure maths): the retrieval key of the known-image index.

Each image is block-averaged to ``embed_size × embed_size`` pixels and scaled by
``1/√(embed_size² · C)``, so the Euclidean distance between two embeddings is the RMS
difference of the pooled [0, 1] images. Equal blocks make the pooling non-expansive for RMS
(Jensen inside each block), which is why :mod:`s2l_scan.extraction.index` loses no match.
Bad arguments raise ValueError; callers at the user's boundary wrap the checks with
:func:`s2l_scan.errors.checked`.
"""

from __future__ import annotations

import math
import operator

import numpy as np
import numpy.typing as npt

from s2l_scan.functional.eidetic import as_images

__all__ = ["check_embed_size", "pooled_embedding"]

_CHUNK_BYTES = 64 * 2**20  # float64 working memory per embedding chunk


def check_embed_size(shape: tuple[int, ...], embed_size: int) -> int:
    """``embed_size`` as an int, checked to divide the height and width of ``shape`` (H, W, …).

    >>> check_embed_size((16, 24, 3), 8)
    8
    """
    try:
        size = operator.index(embed_size)
    except TypeError as exc:
        raise ValueError(f"embed_size must be an integer, got {embed_size!r}") from exc
    # Equal blocks are what makes pooling non-expansive; a ragged (adaptive) pooling could put
    # a true match outside the search radius, so refuse instead of approximating.
    if size < 1 or shape[0] % size or shape[1] % size:
        raise ValueError(f"embed_size={size} must be >= 1 and divide the image height and "
                         f"width, got images of {shape[0]}×{shape[1]}; pick a divisor such as "
                         f"{math.gcd(shape[0], shape[1], 8)}")
    return size


def pooled_embedding(images: npt.ArrayLike, embed_size: int = 8) -> npt.NDArray[np.float32]:
    """(N, embed_size² · C) float32 embeddings whose Euclidean distance is the pooled RMS.

    >>> x = np.zeros((2, 16, 16, 3), np.uint8); x[1] = 255
    >>> e = pooled_embedding(x)
    >>> e.shape, round(float(np.linalg.norm(e[0] - e[1])), 6)
    ((2, 192), 1.0)
    """
    batch = as_images(images, "images")
    n, height, width, channels = batch.shape
    size = check_embed_size(batch.shape[1:], embed_size)
    scale = (255.0 if batch.dtype == np.uint8 else 1.0) * math.sqrt(size * size * channels)
    out = np.empty((n, size * size * channels), dtype=np.float32)
    step = max(1, _CHUNK_BYTES // (8 * max(1, batch[0].size)))
    for start in range(0, n, step):
        block = batch[start:start + step].astype(np.float64)
        block = block.reshape(-1, size, height // size, size, width // size, channels)
        out[start:start + step] = (block.mean(axis=(2, 4)) / scale).reshape(len(block), -1)
    return out
