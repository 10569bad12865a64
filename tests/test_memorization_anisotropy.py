"""Asthana & Belagiannis's anisotropy detector against independent oracles: a per-pixel loop of
cosines written out in numpy, Wen's step-1 magnitude, and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s2l_scan.functional.memorization import (
    anisotropy_score,
    guidance_anisotropy,
    text_guidance_magnitude,
)

MIX = torch.tensor(np.random.default_rng(3).normal(size=(4, 4)), dtype=torch.float32)


def _eps(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """A stand-in ε that mixes channels, depends on t and on the conditioning nonlinearly."""
    scale = (t.float() / 1000).view(-1, 1, 1, 1)
    mixed = torch.einsum("ij,njhw->nihw", MIX, x)
    text = c.mean(dim=(1, 2)).view(-1, 1, 1, 1)
    return torch.tanh(scale * mixed + text * x.roll(1, dims=1)) + 0.1 * text


def _oracle(x: np.ndarray, cond: np.ndarray, uncond: np.ndarray, t1: int, t2: int
            ) -> tuple[list[float], list[float]]:
    """Both terms by loops: the ℓ2 norm over all elements, the cosine pixel by pixel."""
    def eps(c: np.ndarray, t: int) -> np.ndarray:
        xt, ct = torch.tensor(x), torch.tensor(c).expand(len(x), -1, -1)
        return _eps(xt, torch.full((len(x),), t), ct).double().numpy()

    norms, aligns = [], []
    g1 = eps(cond, t1) - eps(uncond, t1)
    u2 = eps(uncond, t2)
    g2 = eps(cond, t2) - u2
    for n in range(len(x)):
        norms.append(float(np.sqrt((g1[n] ** 2).sum())))
        cosines = [float(u2[n, :, i, j] @ g2[n, :, i, j]
                         / (np.linalg.norm(u2[n, :, i, j]) * np.linalg.norm(g2[n, :, i, j])))
                   for i in range(x.shape[2]) for j in range(x.shape[3])]
        aligns.append(float(np.mean(cosines)))
    return norms, aligns


@pytest.mark.parametrize("seed", range(4))
def test_guidance_anisotropy_matches_a_per_pixel_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    cond, uncond = (rng.normal(size=(1, 7, 8)).astype(np.float32) for _ in range(2))
    norm, align = guidance_anisotropy(_eps, torch.tensor(x), torch.tensor(cond),
                                      torch.tensor(uncond), 981, 41)
    want_norm, want_align = _oracle(x, cond, uncond, 981, 41)
    np.testing.assert_allclose(norm.numpy(), want_norm, rtol=1e-5)
    np.testing.assert_allclose(align.numpy(), want_align, rtol=1e-4, atol=1e-6)
    assert norm.dtype == align.dtype == torch.float64


def test_the_norm_term_is_wens_step_one_magnitude() -> None:
    x = torch.randn(5, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    cond, uncond = torch.randn(1, 3, 8), torch.randn(1, 3, 8)
    norm, _ = guidance_anisotropy(_eps, x, cond, uncond, 981, 41)
    wen = text_guidance_magnitude(_eps, x, cond, uncond, torch.linspace(0.99, 0.01, 1000),
                                  [981], 7.5)
    torch.testing.assert_close(norm, wen)


def test_alignment_is_one_when_guidance_points_along_the_unconditional_eps() -> None:
    # ε(x, t, c) = (1 + mean c)·x: the guidance is (mean c − mean ∅)·x, parallel to ε(∅)
    def eps(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return (1 + c.mean(dim=(1, 2))).view(-1, 1, 1, 1) * x

    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    up, down = torch.full((1, 2, 2), 1.0), torch.full((1, 2, 2), -0.5)
    _, along = guidance_anisotropy(eps, x, up, torch.zeros(1, 2, 2), 900, 40)
    _, against = guidance_anisotropy(eps, x, down, torch.zeros(1, 2, 2), 900, 40)
    torch.testing.assert_close(along, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(against, -torch.ones(2, dtype=torch.float64))


def test_anisotropy_score_weights_and_bad_input() -> None:
    np.testing.assert_allclose(anisotropy_score([1.0, 2.0], [0.5, -0.5], 1.0, 2.0), [2.0, 1.0])
    with pytest.raises(ValueError, match="shape"):
        anisotropy_score([1.0, 2.0], [0.5], 1.0, 2.0)
    with pytest.raises(ValueError, match="finite"):
        anisotropy_score([1.0], [0.5], float("nan"), 2.0)
    with pytest.raises(ValueError, match="x_T"):
        guidance_anisotropy(_eps, torch.zeros(4, 4), torch.zeros(1, 2, 2),
                            torch.zeros(1, 2, 2), 900, 40)
