"""Views of a generation under which a copy of a training image is still a copy (pure numpy).

Training does not show the model its images as the audit index holds them (the centre square
of each, at the model's resolution, :func:`s2l_scan.io.audit_data.prepare_image`). The common
trainers mirror images at random (OneTrainer by default, kohya ``--flip_aug``, diffusers
``--random_flip``), squash a non-square image to the square or crop a random or side square of
it, and jitter crops by a few pixels. A model that learned such a view gives it back, and its
copy then lies beyond δ of the indexed image: mirrored at RMS 0.13–0.30, squashed 4:3 at 0.11,
a side square of a 4:3 image at 0.125, a 2-px shift at 32 px at 0.125 (measured through
:func:`~s2l_scan.functional.eidetic.rms_distance`). Two kinds of view undo that:

* **Whole views** map a generation to an image comparable with the index pixel for pixel:
  ``flip`` (mirrored left–right) and ``squash`` (the generation's centre 1/r of the width, or
  height, stretched back to the square: what a squashed r:1 image's centre square looks like;
  r ∈ :data:`ASPECTS`, landscape and portrait).
* **Shifts** compare a generation with a known image moved by (dy, dx) pixels, over the part
  where they overlap: ``crop`` (the side squares of an r:1 image, an offset of (r − 1)/2 of the
  side, rounded down and up, in each of the four directions) and ``shift`` (1/16 of the side
  in each direction).

Every view is also taken mirrored when ``flip`` is among the families. The RMS over an overlap
is the one of :func:`~s2l_scan.functional.eidetic.rms_distance` restricted to the overlapping
pixels, exact for uint8 inputs as there (integer sums in float64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["ASPECTS", "DEFAULT_FAMILIES", "FAMILIES", "SHIFT_FRACTION", "View",
           "check_families", "clopper_upper", "overlap_lower_bound", "overlap_rms", "pooled",
           "views", "whole_view"]

ASPECTS = (4 / 3, 3 / 2)
"""Aspect ratios (long side / short side) whose squashes and side crops are undone."""
SHIFT_FRACTION = 1 / 16
"""A small shift: 1/16 of the side (2 px at 32 px, 32 px at 512 px)."""

FAMILIES = {
    "flip": "mirrored left-right (every other view is taken mirrored too)",
    "squash": "a 4:3 or 3:2 image learned squashed to the square (landscape and portrait)",
    "crop": "a side square of a 4:3 or 3:2 image (left, right, top, bottom) where the index "
            "holds its centre square",
    "shift": "moved by 1/16 of the side in one of four directions",
}
"""The view families ``extraction_invariances`` can name."""
DEFAULT_FAMILIES = tuple(FAMILIES)


@dataclass(frozen=True)
class View:
    """One view: a whole view (``squash`` 0: none, > 0 landscape, < 0 portrait ratio) or a
    shift of the known image by (``dy``, ``dx``) pixels; mirrored first when ``flip``."""

    name: str
    flip: bool = False
    squash: float = 0.0
    dy: int = 0
    dx: int = 0

    @property
    def shifted(self) -> bool:
        return bool(self.dy or self.dx)


def check_families(families: tuple[str, ...]) -> tuple[str, ...]:
    """``families`` if each names a view family (ValueError naming the first that does not)."""
    for family in families:
        if family not in FAMILIES:
            raise ValueError(f"unknown view family {family!r}; choose among "
                             f"{', '.join(FAMILIES)}")
    return families


def views(families: tuple[str, ...], side: int) -> tuple[View, ...]:
    """The views of ``families`` for images ``side`` pixels square, the identity first."""
    check_families(families)
    base = [View("identity")]
    if "squash" in families:
        base += [View(f"squash-{name}{orient}", squash=sign * ratio)
                 for ratio, name in zip(ASPECTS, ("4:3", "3:2"), strict=True)
                 for sign, orient in ((1, ""), (-1, "-portrait"))]
    offsets: list[tuple[str, int]] = []
    if "crop" in families:  # both roundings: the centre square's offset is floored, so the
        # right square of a 4:3 image at 32 px sits 6 px from it and the left one 5
        offsets += [(f"crop-{name}{'' if step == min(steps) else '+1'}", step)
                    for ratio, name in zip(ASPECTS, ("4:3", "3:2"), strict=True)
                    for steps in [sorted({math.floor((ratio - 1) / 2 * side),
                                          math.ceil((ratio - 1) / 2 * side)})]
                    for step in steps]
    if "shift" in families:
        offsets.append(("shift", max(1, round(SHIFT_FRACTION * side))))
    for name, step in offsets:  # a crop is named by the square taken, a shift by the move
        where = (("left", "right", "top", "bottom") if name.startswith("crop")
                 else ("right", "left", "down", "up"))
        if 0 < step < side:
            base += [View(f"{name}-{label}", dy=dy, dx=dx) for label, (dy, dx) in zip(
                where, ((0, step), (0, -step), (step, 0), (-step, 0)), strict=True)]
    mirrored = [View(f"flip+{v.name}" if v.name != "identity" else "flip", True, v.squash,
                     v.dy, v.dx) for v in base] if "flip" in families else []
    return tuple(base + mirrored)


def _stretch(images: npt.NDArray[np.float64], axis: int, keep: float) -> npt.NDArray[np.float64]:
    """The centre ``keep`` fraction of ``axis`` linearly resampled back to its full length."""
    size = images.shape[axis]
    centre = (np.arange(size) + 0.5) / size  # output pixel centres, in [0, 1]
    source = (0.5 + (centre - 0.5) * keep) * size - 0.5  # their positions in the input
    low = np.clip(np.floor(source).astype(np.int64), 0, size - 1)
    high = np.clip(low + 1, 0, size - 1)
    weight = np.clip(source - low, 0.0, 1.0)
    shape = [1] * images.ndim
    shape[axis] = size
    w = weight.reshape(shape)
    return np.take(images, low, axis=axis) * (1 - w) + np.take(images, high, axis=axis) * w


def whole_view(images: npt.NDArray[np.generic], view: View) -> npt.NDArray[np.generic]:
    """``images`` (N, H, W, C) under a whole ``view``: uint8 stays uint8 for the identity and
    the mirror; a squash gives floats in [0, 1]. ValueError for a shift (see overlap_rms)."""
    if view.shifted:
        raise ValueError(f"view {view.name} is a shift: compare with overlap_rms")
    out: npt.NDArray[np.generic] = images[:, :, ::-1] if view.flip else images
    if view.squash:
        scale = 255.0 if out.dtype == np.uint8 else 1.0
        unit = np.asarray(out, dtype=np.float64) / scale
        axis = 2 if view.squash > 0 else 1  # landscape: the width was squeezed
        out = np.clip(_stretch(unit, axis, 1.0 / abs(view.squash)), 0.0, 1.0)
    return np.ascontiguousarray(out)


def overlap_rms(generated: npt.ArrayLike, known: npt.ArrayLike, dy: int, dx: int
                ) -> npt.NDArray[np.float64]:
    """(G, K) RMS of [0, 1] pixels between generation pixel (y, x) and known pixel
    (y − dy, x − dx), over the pixels where both exist.

    Positive ``dx``: the generation shows the known image moved right (its left part is what a
    left square of a wider image adds). Both arrays (N, H, W, C), the same H, W, C; uint8 read
    as 0–255, floats as [0, 1]; |dy| < H and |dx| < W.
    """
    gen, ref = np.asarray(generated), np.asarray(known)
    if gen.ndim != 4 or gen.shape[1:] != ref.shape[1:] or ref.ndim != 4:
        raise ValueError(f"generated and known must be (N, H, W, C) alike, got {gen.shape} "
                         f"and {ref.shape}")
    height, width = gen.shape[1:3]
    if not (abs(dy) < height and abs(dx) < width):
        raise ValueError(f"shift ({dy}, {dx}) leaves no overlap in {height}×{width} images")
    g = gen[:, max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)]
    k = ref[:, max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    a = g.reshape(len(g), -1).astype(np.float64) / (255.0 if gen.dtype == np.uint8 else 1.0)
    b = k.reshape(len(k), -1).astype(np.float64) / (255.0 if ref.dtype == np.uint8 else 1.0)
    if not (len(a) and len(b)):
        return np.zeros((len(a), len(b)))
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0) / a.shape[1])


def pooled(images: npt.ArrayLike, factor: int) -> npt.NDArray[np.float64]:
    """Block means of [0, 1] pixels over ``factor`` × ``factor`` blocks, (N, H//f, W//f, C)
    (a remainder row or column of pixels is left out)."""
    arr = np.asarray(images)
    unit = arr.astype(np.float64) / (255.0 if arr.dtype == np.uint8 else 1.0)
    n, height, width, channels = unit.shape
    rows, cols = height // factor, width // factor
    blocks = unit[:, :rows * factor, :cols * factor].reshape(n, rows, factor, cols, factor,
                                                             channels)
    result: npt.NDArray[np.float64] = blocks.mean((2, 4))
    return result


def _block_span(shift: int, size: int, factor: int) -> tuple[int, int]:
    """Known-image blocks [b0, b1) of the base grid lying wholly inside the overlap."""
    start, stop = max(-shift, 0), size + min(-shift, 0)
    return -(-start // factor), stop // factor


def overlap_lower_bound(generated: npt.ArrayLike, known_blocks: npt.NDArray[np.float64],
                        dy: int, dx: int, factor: int) -> npt.NDArray[np.float64]:
    """(G, K) lower bound of :func:`overlap_rms`, from the known images' ``pooled(known,
    factor)`` and the generations pooled on the matching grid: by Jensen's inequality each
    block's squared mean difference, times its f² pixels, is at most its pixels' sum of
    squares, and the blocks cover part of the overlap. Verifying only the pairs whose bound is
    within δ therefore misses none."""
    gen = np.asarray(generated)
    height, width = gen.shape[1:3]
    (r0, r1), (c0, c1) = _block_span(dy, height, factor), _block_span(dx, width, factor)
    overlap = (height - abs(dy)) * (width - abs(dx)) * gen.shape[3]
    if r1 <= r0 or c1 <= c0:
        return np.zeros((len(gen), len(known_blocks)))
    region = gen[:, r0 * factor + dy:r1 * factor + dy, c0 * factor + dx:c1 * factor + dx]
    a = pooled(region, factor).reshape(len(gen), -1)
    b = known_blocks[:, r0:r1, c0:c1].reshape(len(known_blocks), -1)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0) * factor * factor / overlap)


def clopper_upper(successes: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper–Pearson upper bound of a binomial rate: the p where P(X ≤ successes)
    = 1 − confidence (1.0 when every trial succeeded). 0 of 32 at 95%: 1 − 0.05^(1/32) ≈ 8.9%.

    Bisection on the exact binomial CDF (no scipy at run time).
    """
    if isinstance(trials, bool) or not isinstance(trials, int | np.integer) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    if isinstance(successes, bool) or not isinstance(successes, int | np.integer) \
            or not 0 <= successes <= trials:
        raise ValueError(f"successes must be an integer in [0, {trials}], got {successes!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if successes == trials:
        return 1.0
    n, ks = int(trials), np.arange(int(successes) + 1)
    log_comb = np.array([math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                         for k in ks.tolist()])

    def cdf(p: float) -> float:  # P(X <= successes), decreasing in p; p never 0 or 1 here
        return float(np.exp(log_comb + ks * math.log(p) + (n - ks) * math.log1p(-p)).sum())

    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) > 1.0 - confidence else (low, middle)
    return (low + high) / 2
