"""Pure diffusion maths for the attacks (README, scanning): DDIM steps and per-sample scores.

Every function takes an ``eps_fn(x, t, cond) -> ε̂`` (the UNet, already bound to the model),
a batch of clean latents ``x0`` (VAE posterior mean × scaling factor), the text conditioning
``cond`` and ``alphas`` = the scheduler's ``alphas_cumprod``. Scores follow one sign
convention: **higher = more likely member**.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

Cond = Any
"""The text conditioning of a batch, opaque to this module: only passed on to ``eps_fn``
(hidden states, or an :class:`s2l_scan.conditioning.Conditioning` that also carries SDXL's
pooled embeddings and time ids)."""

EpsFn = Callable[[torch.Tensor, torch.Tensor, Cond], torch.Tensor]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
"""What a UNet's output can mean (a diffusers scheduler's ``prediction_type``): the noise ε,
the velocity v = √ᾱ_t ε − √(1−ᾱ_t) x₀ (Salimans & Ho 2022; Stable Diffusion 2 at 768 px), or
the clean sample x₀ itself. Every attack works in ε; :func:`eps_from_output` converts."""


def _bcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.ndim - 1))).to(like)


def _t(step: int, batch: int, device: torch.device) -> torch.Tensor:
    return torch.full((batch,), step, dtype=torch.long, device=device)


def ddim_step(x: torch.Tensor, eps: torch.Tensor, alpha_from: torch.Tensor,
              alpha_to: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM move from ᾱ_s to ᾱ_s′ (either direction: denoise or invert).

    x̂₀ = (x − √(1−ᾱ_s) ε)/√ᾱ_s,  x_s′ = √ᾱ_s′ x̂₀ + √(1−ᾱ_s′) ε.
    """
    a_from, a_to = _bcast(alpha_from, x), _bcast(alpha_to, x)
    x0_hat = (x - (1 - a_from).sqrt() * eps) / a_from.sqrt()
    return a_to.sqrt() * x0_hat + (1 - a_to).sqrt() * eps


def _check_prediction_type(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type {prediction_type!r} is not one of {PREDICTION_TYPES}")


def eps_from_output(output: torch.Tensor, x_t: torch.Tensor, alpha: torch.Tensor,
                    prediction_type: str) -> torch.Tensor:
    """The ε̂ a model's ``output`` at x_t (noise level ᾱ_t, one per sample) stands for.

    ε: itself;  v: ε̂ = √ᾱ_t v + √(1−ᾱ_t) x_t;  sample (x̂₀): ε̂ = (x_t − √ᾱ_t x̂₀)/√(1−ᾱ_t).
    Needs 0 < ᾱ_t < 1 (a zero-terminal-SNR schedule's ᾱ_T = 0 is refused when it is loaded).
    """
    _check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
        return output
    a = _bcast(alpha, x_t)
    if prediction_type == "v_prediction":
        return a.sqrt() * output + (1 - a).sqrt() * x_t
    return (x_t - a.sqrt() * output) / (1 - a).sqrt()


def training_target(prediction_type: str, x0: torch.Tensor, noise: torch.Tensor,
                    alpha: torch.Tensor) -> torch.Tensor:
    """What a model of ``prediction_type`` is trained to output at x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε.

    ε: the noise;  v: √ᾱ_t ε − √(1−ᾱ_t) x₀;  sample: x₀. ``alpha`` holds ᾱ_t per sample.
    """
    _check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return x0
    a = _bcast(alpha, x0)
    return a.sqrt() * noise - (1 - a).sqrt() * x0


def add_noise(x0: torch.Tensor, noise: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The forward process: x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε."""
    a = _bcast(alpha, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def loss_scores(eps_fn: EpsFn, x0: torch.Tensor, cond: Cond, alphas: torch.Tensor,
                timesteps: Sequence[int], noises: Sequence[torch.Tensor]) -> torch.Tensor:
    """Loss attack (Matsumoto et al.): −mean over (t, ε) of ‖ε − ε_θ(x_t, t, c)‖² per sample.

    ``noises`` are fixed, seeded ε (each shaped like ``x0``), so member and non-member
    samples are scored with the same draws and reruns are identical.
    """
    total = torch.zeros(len(x0), dtype=torch.float64)
    for step in timesteps:
        for noise in noises:
            x_t = add_noise(x0, noise, alphas[step].expand(len(x0)))
            error = (noise - eps_fn(x_t, _t(step, len(x0), x0.device), cond)) ** 2
            total += error.flatten(1).sum(1).double().cpu()
    return -total / (len(timesteps) * len(noises))


def ddim_invert(eps_fn: EpsFn, x0: torch.Tensor, cond: Cond, alphas: torch.Tensor,
                targets: Sequence[int]) -> torch.Tensor:
    """Deterministic DDIM inversion of ``x0`` (taken as x at t = 0) through ``targets``."""
    x, current = x0, 0
    for target in targets:
        eps = eps_fn(x, _t(current, len(x), x.device), cond)
        x = ddim_step(x, eps, alphas[current].expand(len(x)), alphas[target].expand(len(x)))
        current = target
    return x


def secmi_targets(t_sec: int, k: int) -> list[int]:
    """Inversion targets of the published SecMI code: ``range(0, t_sec, k)[1:]``.

    The compared timestep is the last target, t_sec − k (t_sec = 100, k = 10 compares x₉₀
    with its round trip through t = 100).
    """
    targets = list(range(0, t_sec, k))[1:]
    if not targets:
        raise ValueError(f"SecMI needs t_sec > k > 0 with at least one target; got {t_sec}, {k}")
    return targets


def secmi_scores(eps_fn: EpsFn, x0: torch.Tensor, cond: Cond, alphas: torch.Tensor,
                 t_sec: int, k: int) -> torch.Tensor:
    """SecMI_stat (Duan et al. 2023): −‖x̂_t − x̃_t‖² with t = t_sec − k.

    x̃_t is the DDIM inversion of x₀ to t; x̂_t is x̃_t inverted one more step to t + k and
    denoised back to t.
    """
    compared = secmi_targets(t_sec, k)[-1]
    return secmi_sweep_scores(eps_fn, x0, cond, alphas, k, [compared])[compared]


def secmi_sweep_scores(eps_fn: EpsFn, x0: torch.Tensor, cond: Cond,
                       alphas: torch.Tensor, k: int, compared: Sequence[int]
                       ) -> dict[int, torch.Tensor]:
    """SecMI scores at several compared timesteps, sharing one inversion trajectory.

    Each compared t must be a positive multiple of ``k`` (a point of the inversion grid);
    ``secmi_sweep_scores(..., k, [t])[t]`` equals ``secmi_scores(..., t_sec=t + k, k)``.
    The round trip's upward step is the inversion's own next step, so the sweep costs
    max(t)/k + 1 + len(compared) forwards (11 for the classic t_sec = 100, k = 10).
    """
    if not compared or any(t <= 0 or t % k for t in compared):
        raise ValueError(f"compared timesteps must be positive multiples of k={k}: {compared}")
    n, device = len(x0), x0.device
    scores: dict[int, torch.Tensor] = {}
    x, current = x0, 0
    for target in range(k, max(compared) + k + 1, k):
        x_next = ddim_step(x, eps_fn(x, _t(current, n, device), cond),
                           alphas[current].expand(n), alphas[target].expand(n))
        if current in compared:  # x is x̃_current; come back down from x_next
            x_back = ddim_step(x_next, eps_fn(x_next, _t(target, n, device), cond),
                               alphas[target].expand(n), alphas[current].expand(n))
            scores[current] = -((x_back - x) ** 2).flatten(1).sum(1).double().cpu()
        x, current = x_next, target
    return scores


def pia_scores(eps_fn: EpsFn, x0: torch.Tensor, cond: Cond, alphas: torch.Tensor,
               t: int, p: float = 4.0, normalize: bool = False) -> torch.Tensor:
    """PIA (Kong et al. 2024): −Σ|ε₀ − ε_θ(x_t, t, c)|^p with ε₀ = ε_θ(x₀, 0, c).

    x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε₀. ``normalize=True`` is PIAN: ε₀ standardised per sample
    (zero mean, unit variance) so it looks like the Gaussian noise the UNet expects.
    """
    n, device = len(x0), x0.device
    eps0 = eps_fn(x0, _t(0, n, device), cond)
    if normalize:
        flat = eps0.flatten(1)
        eps0 = ((flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True)).view_as(eps0)
    x_t = add_noise(x0, eps0, alphas[t].expand(n))
    error = (eps0 - eps_fn(x_t, _t(t, n, device), cond)).abs() ** p
    return -error.flatten(1).sum(1).double().cpu()
