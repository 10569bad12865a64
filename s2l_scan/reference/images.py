"""Synthetic "identities": seeded 32×32 images for the offline reference model.

Each identity is a visual style (a palette, a background gradient, a favourite shape); each
image of it is a fresh random composition in that style. Members and non-members of an
identity are drawn from the same distribution, so a model-free classifier cannot tell them
apart (the blind baseline stays near chance) and any membership signal comes from training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SHAPES = ("disc", "box", "ring", "bars")
_EDGE = 0.6  # edge softness in pixels (logistic scale)


@dataclass(frozen=True)
class IdentityStyle:
    """What all images of one identity share."""

    palette: np.ndarray  # (4, 3) float in [0, 1]: two background colours, two ink colours
    shape: str  # the identity's favourite shape, drawn most often


def identity_style(rng: np.random.Generator) -> IdentityStyle:
    """Draw a style: well-separated colours so identities differ at a glance."""
    palette = rng.uniform(0.05, 0.95, size=(4, 3))
    return IdentityStyle(palette=palette, shape=str(rng.choice(_SHAPES)))


def _shape_mask(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Coverage in [0, 1] of one shape, anti-aliased over about a pixel.

    Soft edges make the images photo-like at 32×32 and let a small VAE reconstruct them
    closely, which pixel-space extraction depends on.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    cy, cx = rng.uniform(0.2 * size, 0.8 * size, size=2)
    radius = rng.uniform(0.12 * size, 0.3 * size)

    def inside(signed_distance: np.ndarray) -> np.ndarray:  # > 0 inside, in pixels
        return 1.0 / (1.0 + np.exp(-signed_distance / _EDGE))

    if kind == "disc":
        return inside(radius - np.hypot(yy - cy, xx - cx))
    if kind == "ring":
        dist = np.hypot(yy - cy, xx - cx)
        return inside(np.minimum(radius - dist, dist - 0.55 * radius))
    if kind == "box":
        half_h, half_w = radius * rng.uniform(0.6, 1.2, size=2)
        return inside(np.minimum(half_h - np.abs(yy - cy), half_w - np.abs(xx - cx)))
    period = rng.uniform(0.25 * size, 0.45 * size)
    angle = rng.uniform(0, np.pi)
    phase = np.mod(np.cos(angle) * xx + np.sin(angle) * yy, period)
    stripe = np.minimum(phase, period / 2 - phase)
    return inside(np.minimum(stripe, radius * 1.5 - np.abs(yy - cy)))


def _compose(palette: np.ndarray, shapes: list[str], size: int,
             rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / (size - 1)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.clip(0.5 + 0.5 * (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) * 2, 0, 1)
    image = palette[0] * (1 - ramp[..., None]) + palette[1] * ramp[..., None]
    for index, kind in enumerate(shapes):
        ink = palette[2 + index % 2] * rng.uniform(0.8, 1.2, size=3)
        coverage = _shape_mask(kind, size, rng)[..., None]
        image = image * (1.0 - coverage) + ink * coverage
    return np.clip(image, 0.0, 1.0)


def identity_image(style: IdentityStyle, size: int, rng: np.random.Generator) -> np.ndarray:
    """One image of an identity as float32 HWC in [0, 1]."""
    n_shapes = int(rng.integers(2, 4))
    shapes = [style.shape if rng.random() < 0.7 else str(rng.choice(_SHAPES))
              for _ in range(n_shapes)]
    return _compose(style.palette, shapes, size, rng).astype(np.float32)


def public_image(size: int, rng: np.random.Generator) -> np.ndarray:
    """An image from the "public" distribution used to train the VAE (any palette, any shapes)."""
    palette = rng.uniform(0.0, 1.0, size=(4, 3))
    shapes = [str(rng.choice(_SHAPES)) for _ in range(int(rng.integers(1, 4)))]
    return _compose(palette, shapes, size, rng).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] HWC to uint8, rounding (not truncating) so PNG round trips are exact."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
