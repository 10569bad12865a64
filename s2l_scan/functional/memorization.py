"""Memorization without known images: pure maths of two prompt-level detectors.

* Wen et al. (ICLR 2024, "Detecting, Explaining, and Mitigating Memorization in Diffusion
  Models"): a memorized prompt steers the sampler hard from the first steps, so the magnitude
  of the text-conditional noise prediction, ‖ε_θ(x_t, c) − ε_θ(x_t, ∅)‖₂, averaged over the
  first few sampling steps and several seeded starts, is large. Computed along the sampler's
  own classifier-free-guided DDIM trajectory (η = 0), as the authors' code does
  (``local_sd_pipeline.py``, ``track_noise_norm``: ``(noise_pred_text − noise_pred_uncond)
  .norm(p=2)`` per generation and step, the latents moved by the guided prediction); the
  detection reads the mean over the first steps.
* Asthana & Belagiannis (ICLR 2026, "Detecting and Mitigating Memorization in Diffusion
  Models through Anisotropy of the Log-Probability"): at low noise the log-probability is
  anisotropic and a norm alone misleads; a memorized prompt's guidance vector ε(c) − ε(∅)
  aligns with the unconditional score. Their metric, on pure noise x_T with no sampling step:
  γ₁·‖ε(x_T, t₁, c) − ε(x_T, t₁, ∅)‖₂ (t₁ the DDIM grid's first step, Wen's step-1 magnitude)
  + γ₂·mean over pixels of cos(ε(x_T, t₂, ∅), ε(x_T, t₂, c) − ε(x_T, t₂, ∅)), the cosine over
  the latent's channels at each pixel, t₂ a low-noise step of the grid (its third-last). As
  the authors' code does (``local_model/pipe.py``, ``exp_type == 'det'``, mode ``x,c|x``).
* Carlini et al. (USENIX Security 2023, "Extracting Training Data from Diffusion Models"): a
  prompt whose many generations contain a *clique* of near-copies of one another (every pair
  within δ) is likely regenerating a training image, with no index of training images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from s2l_scan.functional.diffusion import Cond, EpsFn, ddim_step


def text_guidance_magnitude(eps_fn: EpsFn, x_T: torch.Tensor, cond: Cond,
                            uncond: Cond, alphas: torch.Tensor, steps: Sequence[int],
                            guidance: float) -> torch.Tensor:
    """Wen et al.'s detection metric per start: mean over the sampler's first steps of
    ‖ε(x_t, c) − ε(x_t, ∅)‖₂ (the ℓ2 norm over all of a sample's elements).

    ``x_T`` are seeded starting noises (N, C, h, w); ``steps`` the sampler's first timesteps,
    descending (e.g. the first 1–10 of a 50-step DDIM grid); between two steps the sampler moves
    with the guided ε̂ = ε(∅) + guidance·(ε(c) − ε(∅)), as generation does. ``cond`` and
    ``uncond`` are one row each (1, L, D), broadcast over the starts.
    """
    if not steps:
        raise ValueError("text_guidance_magnitude needs at least one step")
    n = len(x_T)
    rows = torch.zeros(n, dtype=torch.long)  # one row (tensor or Conditioning) per start
    c, u = cond[rows], uncond[rows]
    x = x_T
    total = torch.zeros(n, dtype=torch.float64)
    for i, step in enumerate(steps):
        t = torch.full((n,), int(step), dtype=torch.long, device=x.device)
        eps_c, eps_u = eps_fn(x, t, c), eps_fn(x, t, u)
        total += (eps_c - eps_u).flatten(1).norm(dim=1).double().cpu()
        if i + 1 < len(steps):
            guided = eps_u + guidance * (eps_c - eps_u)
            x = ddim_step(x, guided, alphas[step].expand(n), alphas[steps[i + 1]].expand(n))
    return total / len(steps)


def guidance_anisotropy(eps_fn: EpsFn, x_T: torch.Tensor, cond: Cond, uncond: Cond,
                        norm_step: int, align_step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Asthana & Belagiannis's two terms per start, both read on the pure noise ``x_T``:

    * ``norm``: ‖ε(x_T, norm_step, c) − ε(x_T, norm_step, ∅)‖₂ over all of a start's elements
      (the isotropic term; with ``norm_step`` the grid's first step it is Wen's step-1 value);
    * ``alignment``: the mean over pixels of the cosine, over the latent's channels (dim 1),
      between ε(x_T, align_step, ∅) and the guidance ε(x_T, align_step, c) − ε(x_T, align_step, ∅)
      (the anisotropic term; the score is −ε/σ_t, so the cosine of scores is the cosine of ε's).

    Two conditional and two unconditional forwards per start, no sampling step. ``x_T`` (N, C,
    h, w); ``cond`` / ``uncond`` one row each (1, L, D), broadcast over the starts. Returns two
    float64 tensors of N values.
    """
    if x_T.ndim != 4:
        raise ValueError(f"x_T must be (N, C, h, w), got shape {tuple(x_T.shape)}")
    n = len(x_T)
    rows = torch.zeros(n, dtype=torch.long)  # one row (tensor or Conditioning) per start
    c, u = cond[rows], uncond[rows]

    def at(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.full((n,), int(step), dtype=torch.long, device=x_T.device)
        eps_u = eps_fn(x_T, t, u)
        return eps_u, eps_fn(x_T, t, c) - eps_u

    _, guidance = at(norm_step)
    norm = guidance.flatten(1).norm(dim=1).double().cpu()
    eps_u, guidance = at(align_step)
    cosine = torch.nn.functional.cosine_similarity(eps_u, guidance, dim=1)  # (N, h, w)
    return norm, cosine.flatten(1).mean(dim=1).double().cpu()


def anisotropy_score(norm: torch.Tensor | np.ndarray, alignment: torch.Tensor | np.ndarray,
                     norm_weight: float, alignment_weight: float) -> np.ndarray:
    """The detection score γ₁·norm + γ₂·alignment (higher: more likely memorized). The
    authors' weights (``detect_eval.py``): γ₁ = 1 and γ₂ = 2 on SD-1.4, γ₂ = 0.1 on SD-2."""
    norm_a, align_a = np.asarray(norm, dtype=np.float64), np.asarray(alignment, np.float64)
    if norm_a.shape != align_a.shape:
        raise ValueError(f"norm and alignment differ in shape: {norm_a.shape} vs "
                         f"{align_a.shape}")
    if not (np.isfinite(norm_weight) and np.isfinite(alignment_weight)):
        raise ValueError(f"weights must be finite, got {norm_weight!r}, {alignment_weight!r}")
    return norm_weight * norm_a + alignment_weight * align_a


def largest_clique(adjacent: np.ndarray) -> list[int]:
    """The members of a largest clique of an undirected graph (boolean adjacency matrix).

    Bron–Kerbosch with pivoting: exact, and fast for the sparse "near-copy" graphs of a few
    hundred generations (a prompt that is not memorized has almost no edges).
    """
    adjacency = np.asarray(adjacent, dtype=bool)
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise ValueError(f"adjacency must be square, got shape {adjacency.shape}")
    neighbours = [set(np.flatnonzero(row).tolist()) - {i} for i, row in enumerate(adjacency)]
    best: list[int] = []

    def expand(clique: list[int], candidates: set[int], excluded: set[int]) -> None:
        nonlocal best
        if not candidates and not excluded:
            if len(clique) > len(best):
                best = list(clique)
            return
        if len(clique) + len(candidates) <= len(best):
            return
        pivot = max(candidates | excluded, key=lambda v: len(neighbours[v] & candidates))
        for v in sorted(candidates - neighbours[pivot]):
            expand([*clique, v], candidates & neighbours[v], excluded & neighbours[v])
            candidates = candidates - {v}
            excluded = excluded | {v}

    expand([], set(range(len(adjacency))), set())
    return sorted(best)


def near_copy_graph(images: np.ndarray, delta: float, tiles: int = 1) -> np.ndarray:
    """Adjacency of "near-copies": RMS distance of [0, 1] pixels (uint8 input) ≤ ``delta``.

    ``tiles`` > 1 takes, as Carlini et al.'s tiled ℓ2, the largest RMS over a tiles × tiles grid
    of patches, so two images must agree everywhere, not just on average.
    """
    x = np.asarray(images, dtype=np.float64) / 255.0
    n, h, w = x.shape[0], x.shape[1], x.shape[2]
    worst = np.zeros((n, n))
    for r in range(tiles):
        for c in range(tiles):
            patch = x[:, r * h // tiles:(r + 1) * h // tiles, c * w // tiles:(c + 1) * w // tiles]
            flat = patch.reshape(n, -1)
            sq = (flat ** 2).sum(1)
            d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * flat @ flat.T, 0) / flat.shape[1]
            worst = np.maximum(worst, np.sqrt(d2))
    adjacency = worst <= delta
    np.fill_diagonal(adjacency, False)
    return adjacency
