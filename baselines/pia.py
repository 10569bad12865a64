"""PIA and PIAN (Kong et al. ICLR 2024): proximal initialization from ε_θ(x₀, 0)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from s2l_scan.attack import ATTACKS, Attack
from s2l_scan.errors import UsageError
from s2l_scan.functional.diffusion import EpsFn, pia_scores


@ATTACKS.register("pia")
@dataclass(frozen=True)
class PIAAttack(Attack):
    """score = −Σ|ε₀ − ε_θ(x_t, t, c)|^p with x_t built from ε₀ = ε_θ(x₀, 0, c)."""

    t: int = 200
    p: float = 4.0
    name = "pia"
    normalize: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if isinstance(self.p, bool) or not isinstance(self.p, int | float) or not (
                0 < self.p < 64):
            raise UsageError(f"attack {self.name!r}: p must be a number in (0, 64), "
                             f"got {self.p!r}")

    def score_batch(self, eps_fn: EpsFn, x0: torch.Tensor, cond: torch.Tensor,
                    alphas: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return pia_scores(eps_fn, x0, cond, alphas, self.t, self.p, normalize=self.normalize)


@ATTACKS.register("pian")
@dataclass(frozen=True)
class PIANAttack(PIAAttack):
    """PIA with ε₀ standardised per sample."""

    name = "pian"
    normalize: ClassVar[bool] = True
