"""Eidetic-memorization maths (README, probes): pixel distances and the (k, ℓ2, δ) rule.

Carlini et al. (2023), *Extracting Training Data from Diffusion Models*, Definitions 1-2: a
training image x is **extracted** when some generation lies within δ of it, and it is
(k, ℓ2, δ)-**eidetic memorized** when, in addition, x appears at most k times in the training
set: ``|{x' ∈ D : ℓ2(x, x') ≤ δ}| ≤ k``. The count includes x itself (ℓ2(x, x) = 0), so an
image with k − 1 near-copies besides itself is still eidetic, and one with k near-copies is not.
Here the known **training** images stand in for D: :func:`copy_counts` counts, for each known
image, the training images within δ of it, itself included; :func:`eidetic_matches` keeps a
(generation, known image) pair when the known image is a training image, the generation lies
within δ of it, and its count is at most k. A known image that is not a training image (a
held-out non-member in the index) is never extracted, however close a generation comes, and
never counts as a copy of anything. The rule keeps heavily duplicated images (logos, stock
backgrounds) from counting as extraction; k >= 1, since every image is one of its own copies.

Images are ``(N, H, W, C)`` arrays, uint8 in [0, 255] or floats in [0, 1]. ℓ2 is the
root-mean-square difference of [0, 1] pixels. The tiled flavour cuts each image into a
``tiles × tiles`` grid and takes the **largest** per-tile RMS. The full mean square is the
average of the tile ones, so the tiled distance is never below the plain one: a pair is within
δ only when *every* tile is. That makes it the stricter criterion — it never adds a match, and
it refuses a pair whose difference sits in one region (a different subject on the same large
background), which the plain RMS would average away over the matching rest of the image and
call a copy. It guards against false matches; it does not find more copies.

Exactness: when both sides are uint8 the squared differences are integers and every partial
sum stays far below 2⁵³, so the float64 matrix products below are exact whatever order BLAS
sums in. A distance therefore never depends on which other images share the batch, and the
indexed search (:mod:`s2l_scan.extraction.index`) agrees with the brute force here bit for bit,
ties at exactly δ included. Float inputs take a direct-difference path instead, summing each
pair's differences in one fixed order.

Pure numpy: no torch, no faiss. Bad arguments raise ValueError; callers passing the user's
input validate it first (:func:`s2l_scan.errors.checked`) so the user gets a UsageError.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "Match",
    "as_images",
    "check_delta",
    "check_k",
    "check_tiles",
    "check_training",
    "copy_counts",
    "eidetic_matches",
    "match_order",
    "pairs_within",
    "rms_distance",
    "tiled_rms_distance",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Images = npt.NDArray[np.uint8] | npt.NDArray[np.floating]
_Scalar = TypeVar("_Scalar", bound=np.generic)

# Every intermediate (distance blocks, float copies, difference cubes) is cut into chunks of
# about this many bytes, so memory stays bounded on a shared machine whatever the set sizes.
_CHUNK_BYTES = 64 * 2**20
_UINT8_SCALE = 255.0**2


@dataclass(frozen=True, slots=True)
class Match:
    """A (generation, known image) pair: ``generated[generated_index]`` lies ``distance``
    (<= δ) from ``known[known_index]``. From :func:`eidetic_matches`, the known image is also
    a training image that appears at most k times; from :func:`pairs_within`, no more."""

    generated_index: int
    known_index: int
    distance: float


# ---------------------------------------------------------------------------------------------
# validation


def as_images(images: npt.ArrayLike, name: str) -> Images:
    """Validate a batch of images: ``(N, H, W, C)``, uint8 or floats in [0, 1].

    >>> as_images(np.zeros((2, 4, 4, 3), np.uint8), "known").shape
    (2, 4, 4, 3)
    """
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise ValueError(f"{name} must be a batch of images shaped (N, H, W, C), got shape "
                         f"{arr.shape}; add a leading axis (x[None]) for a single image")
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} has dtype {arr.dtype}; expected uint8 in [0, 255] or floats "
                         f"in [0, 1]. Convert with x.astype(np.uint8) or x / 255.0")
    if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
        raise ValueError(f"{name} holds float values outside [0, 1] (or NaN/inf); pixels must "
                         f"be in [0, 1]. Map [-1, 1] model outputs with (x + 1) / 2 and clip")
    return arr


def check_tiles(shape: tuple[int, ...], tiles: int) -> int:
    """Validate a tile count for images of ``shape`` (``(H, W, C)``); returns it as an int."""
    try:
        count = operator.index(tiles)
    except TypeError as exc:
        raise ValueError(f"tiles must be an integer, got {tiles!r}") from exc
    height, width = shape[0], shape[1]
    if count < 1 or height % count or width % count:
        raise ValueError(f"tiles={count} must be >= 1 and divide the image height and width, "
                         f"got images of {height}×{width}; pick a divisor such as "
                         f"{math.gcd(height, width)}")
    return count


def _pair(a: npt.ArrayLike, b: npt.ArrayLike, tiles: int) -> tuple[Images, Images, int]:
    left, right = as_images(a, "a"), as_images(b, "b")
    if left.shape[1:] != right.shape[1:]:
        raise ValueError(f"images must share one resolution, got a: {left.shape[1:]} and b: "
                         f"{right.shape[1:]} (H, W, C); resize both to a common resolution")
    return left, right, check_tiles(left.shape[1:], tiles)


def check_delta(delta: float) -> float:
    """Validate a match radius δ: a finite distance >= 0."""
    value = float(delta)
    if not 0.0 <= value < math.inf:  # also rejects NaN
        raise ValueError(f"delta must be a finite distance >= 0 (the paper uses 0.1), "
                         f"got {delta!r}")
    return value


def check_k(k: int) -> int:
    """Validate k, the most times (itself included) an eidetic image may appear: >= 1."""
    try:
        value = operator.index(k)
    except TypeError as exc:
        raise ValueError(f"k must be an integer (the paper uses 10), got {k!r}") from exc
    if value < 1:
        raise ValueError(f"k must be >= 1, got {k}: k is the most times an image may appear in "
                         f"the training set, itself included, so k = {value} would let no "
                         f"image count as extracted; k = 1 allows no near-copy at all")
    return value


def check_training(training: npt.ArrayLike | None, count: int) -> npt.NDArray[np.bool_]:
    """Validate a training mask over ``count`` known images (None: every one is training)."""
    if training is None:
        return np.ones(count, dtype=bool)
    mask = np.asarray(training)
    if mask.dtype != np.bool_ or mask.shape != (count,):
        raise ValueError(f"training must be a boolean mask with one entry per known image "
                         f"({count}), got dtype {mask.dtype} and shape {mask.shape}")
    return mask


# ---------------------------------------------------------------------------------------------
# distances


def _tile_major(images: npt.NDArray[_Scalar], tiles: int) -> npt.NDArray[_Scalar]:
    """(N, H, W, C) → (N, tiles², H·W·C / tiles²): each tile's pixels contiguous."""
    n, h, w, c = images.shape
    grid = images.reshape(n, tiles, h // tiles, tiles, w // tiles, c)
    return grid.transpose(0, 1, 3, 2, 4, 5).reshape(n, tiles * tiles, -1)


def _chunks(total: int, bytes_per_item: int) -> Iterator[slice]:
    step = max(1, _CHUNK_BYTES // max(1, bytes_per_item))
    for start in range(0, total, step):
        yield slice(start, min(start + step, total))


def _uint8_sq(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8], tiles: int) -> FloatArray:
    """Largest per-tile mean squared difference of uint8 images, on the [0, 1] scale, exact."""
    tb = _tiles_first(b, tiles)
    norm_b = np.einsum("tmd,tmd->tm", tb, tb)
    out = np.empty((len(a), len(b)))
    for rows in _chunks(len(a), 8 * (2 * len(b) + a[0].size)):
        ta = _tiles_first(a[rows], tiles)
        out[rows] = _largest_tile_sq(ta, np.einsum("tnd,tnd->tn", ta, ta), tb, norm_b)
    return out / (_UINT8_SCALE * tb.shape[-1])


def _tiles_first(images: npt.NDArray[np.uint8], tiles: int) -> FloatArray:
    """(N, H, W, C) uint8 → contiguous float64 (tiles², N, pixels per tile)."""
    return np.ascontiguousarray(_tile_major(images, tiles).transpose(1, 0, 2), dtype=np.float64)


def _largest_tile_sq(ta: FloatArray, norm_a: FloatArray, tb: FloatArray, norm_b: FloatArray,
                     ) -> FloatArray:
    """max over tiles t of ‖a_t − b_t‖² = ‖a_t‖² + ‖b_t‖² − 2⟨a_t, b_t⟩ for all pairs."""
    best = np.full((ta.shape[1], tb.shape[1]), -np.inf)
    sq = np.empty_like(best)
    for t in range(len(ta)):
        # In place, one tile at a time: a single (rows, M) buffer instead of (tiles², rows, M),
        # and plain 2-D BLAS calls, which run faster here than a batched matmul.
        np.matmul(ta[t], tb[t].T, out=sq)
        sq *= -2.0
        sq += norm_b[t]
        sq += norm_a[t][:, None]
        np.maximum(best, sq, out=best)
    return best


def _float_sq(a: Images, b: Images, tiles: int) -> FloatArray:
    """Largest per-tile mean squared difference of [0, 1] pixels, by direct differences."""
    tb = _tile_major(_unit(b), tiles)
    out = np.empty((len(a), len(b)))
    for rows in _chunks(len(a), 8 * len(b) * a[0].size):
        diff = _tile_major(_unit(a[rows]), tiles)[:, None] - tb[None]
        np.square(diff, out=diff)
        # One reduction over the contiguous last axis: each pair is summed in the same order
        # whatever else shares its batch.
        out[rows] = diff.sum(axis=-1).max(axis=-1) / diff.shape[-1]
    return out


def _unit(images: Images) -> FloatArray:
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    return np.asarray(images, dtype=np.float64) / scale


def _distances(a: Images, b: Images, tiles: int) -> FloatArray:
    if not (len(a) and len(b)):
        return np.zeros((len(a), len(b)))
    if a.dtype == np.uint8 and b.dtype == np.uint8:
        sq = _uint8_sq(a, b, tiles)  # type: ignore[arg-type]  # dtype checked just above
    else:
        sq = _float_sq(a, b, tiles)
    return np.sqrt(sq)


def rms_distance(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """(N, M) root-mean-square difference of [0, 1] pixels between two image batches.

    >>> black, white = np.zeros((1, 4, 4, 3), np.uint8), np.full((1, 4, 4, 3), 255, np.uint8)
    >>> rms_distance(black, np.concatenate([black, white])).tolist()
    [[0.0, 1.0]]
    """
    left, right, _ = _pair(a, b, 1)
    return _distances(left, right, 1)


def tiled_rms_distance(a: npt.ArrayLike, b: npt.ArrayLike, tiles: int = 4) -> FloatArray:
    """(N, M) largest per-tile RMS over a ``tiles × tiles`` grid (Carlini et al.'s tiled ℓ2).

    Never below :func:`rms_distance`: the full mean square is the average of the tile ones.
    So under the same δ it is the stricter test: a pair is within δ only when every tile is,
    and a difference concentrated in one tile (here one white pixel) counts in full there
    instead of being averaged over the whole image.

    >>> a = np.zeros((1, 4, 4, 1), np.uint8)
    >>> b = a.copy(); b[0, 0, 0, 0] = 255  # one white pixel in the top-left 2×2 tile
    >>> float(rms_distance(a, b)[0, 0]), float(tiled_rms_distance(a, b, tiles=2)[0, 0])
    (0.25, 0.5)
    """
    left, right, count = _pair(a, b, tiles)
    return _distances(left, right, count)


# ---------------------------------------------------------------------------------------------
# the eidetic rule


def _within(a: Images, b: Images, delta: float, tiles: int,
            ) -> Iterator[tuple[IntArray, IntArray, FloatArray]]:
    """Row blocks of the (i, j, distance) pairs with distance <= delta."""
    for rows in _chunks(len(a), 8 * len(b)):
        dist = _distances(a[rows], b, tiles)
        i, j = np.nonzero(dist <= delta)
        yield i + rows.start, j, dist[i, j]


def _copies_of(rows: IntArray, known: Images, delta: float, tiles: int,
               training: npt.NDArray[np.bool_]) -> IntArray:
    """Copy count of each ``known[rows]``: training images within delta, itself included."""
    counts = np.zeros(len(rows), dtype=np.int64)
    for i, j, _ in _within(known[rows], known, delta, tiles):
        np.add.at(counts, i[training[j]], 1)
    return counts


def copy_counts(known: npt.ArrayLike, delta: float, tiled: bool = False, tiles: int = 4,
                training: npt.ArrayLike | None = None) -> IntArray:
    """For each known image, how many **training** known images lie within ``delta`` (≤) of
    it, the image itself included when it is one: how often it appears in the training set.

    ``training`` marks which known images are training images (default: all).

    >>> x = np.zeros((1, 4, 4, 3), np.uint8)
    >>> copy_counts(np.concatenate([x, x, x + 200]), delta=0.1).tolist()
    [2, 2, 1]
    >>> copy_counts(np.concatenate([x, x, x + 200]), delta=0.1,
    ...             training=np.array([True, False, True])).tolist()
    [1, 1, 1]
    """
    images = as_images(known, "known")
    count = check_tiles(images.shape[1:], tiles) if tiled else 1
    mask = check_training(training, len(images))
    return _copies_of(np.arange(len(images)), images, check_delta(delta), count, mask)


def pairs_within(generated: npt.ArrayLike, known: npt.ArrayLike, *, delta: float = 0.1,
                 tiled: bool = False, tiles: int = 4) -> list[Match]:
    """Every (generated, known) pair within ``delta``, training image or not, whatever its
    copy count. Sorted by (generated_index, distance, known_index).

    >>> x = np.zeros((1, 4, 4, 3), np.uint8)
    >>> pairs_within(x, np.concatenate([x, x]), delta=0.0)
    [Match(generated_index=0, known_index=0, distance=0.0), \
Match(generated_index=0, known_index=1, distance=0.0)]
    """
    gen, ref, _ = _pair(generated, known, 1)
    count = check_tiles(ref.shape[1:], tiles) if tiled else 1
    radius = check_delta(delta)
    found = [Match(int(g), int(j), float(d)) for i, j_, d_ in _within(gen, ref, radius, count)
             for g, j, d in zip(i, j_, d_, strict=True)]
    return sorted(found, key=match_order)


def eidetic_matches(generated: npt.ArrayLike, known: npt.ArrayLike, *, k: int = 10,
                    delta: float = 0.1, tiled: bool = False, tiles: int = 4,
                    training: npt.ArrayLike | None = None) -> list[Match]:
    """Every (generated, known) pair within ``delta`` whose known image is a training image
    that appears at most ``k`` times in the training set (:func:`copy_counts`, itself counted).

    ``training`` marks which known images are training images (default: all); the others are
    never matched and never counted as copies. Brute force over all pairs (the oracle for the
    indexed search). Sorted by (generated_index, distance, known_index).

    >>> x = np.zeros((1, 4, 4, 3), np.uint8)
    >>> eidetic_matches(x, np.concatenate([x + 1, x + 200]), k=1, delta=0.1)
    [Match(generated_index=0, known_index=0, distance=0.00392156862745098)]
    >>> eidetic_matches(x, np.concatenate([x + 1, x + 2]), k=1, delta=0.1)  # two copies > k
    []
    """
    gen, ref, _ = _pair(generated, known, 1)
    count = check_tiles(ref.shape[1:], tiles) if tiled else 1
    k_max, radius = check_k(k), check_delta(delta)
    mask = check_training(training, len(ref))
    pairs = [np.concatenate(parts) for parts in zip(*_within(gen, ref, radius, count),
                                                    strict=True)]
    if not pairs or not pairs[0].size:
        return []
    hit = np.unique(pairs[1][mask[pairs[1]]])
    allowed = dict(zip(hit.tolist(),
                       (_copies_of(hit, ref, radius, count, mask) <= k_max).tolist(),
                       strict=True))
    found = [Match(int(g), int(j), float(d)) for g, j, d in zip(*pairs, strict=True)
             if allowed.get(int(j), False)]
    return sorted(found, key=match_order)


def match_order(match: Match) -> tuple[int, float, int]:
    """The sort key of match lists: (generated_index, distance, known_index)."""
    return match.generated_index, match.distance, match.known_index
