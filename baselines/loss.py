"""Loss threshold attack (Matsumoto et al. 2023): members have lower denoising loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from s2l_scan.attack import ATTACKS, Attack
from s2l_scan.errors import UsageError
from s2l_scan.functional.diffusion import EpsFn, loss_scores


@ATTACKS.register("loss")
@dataclass(frozen=True)
class LossAttack(Attack):
    """score = −‖ε − ε_θ(x_t, t, c)‖², averaged over ``n_noise`` seeded ε at each timestep."""

    timesteps: tuple[int, ...] = (100, 200)
    n_noise: int = 2
    seed: int | None = None  # None: the scan's seed (attack.make_attack fills it in); alone, 0
    name = "loss"

    def __post_init__(self) -> None:
        if not isinstance(self.timesteps, tuple | list) or not self.timesteps:
            raise UsageError(f"attack 'loss': timesteps must be a non-empty list of integers, "
                             f"got {self.timesteps!r}")
        for name in ("n_noise", "seed"):
            value = getattr(self, name)
            if name == "seed" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < (
                    1 if name == "n_noise" else 0) or value >= 2**31:
                raise UsageError(f"attack 'loss': {name} must be an integer "
                                 f"{'≥ 1' if name == 'n_noise' else '≥ 0'} (below 2**31), "
                                 f"got {value!r}")

    def score_batch(self, eps_fn: EpsFn, x0: torch.Tensor, cond: torch.Tensor,
                    alphas: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        # One noise per (sample index, draw): identical whatever the batch size or order.
        seed = 0 if self.seed is None else self.seed
        noises = []
        for draw in range(self.n_noise):
            per_sample = [torch.randn(x0.shape[1:], generator=torch.Generator().manual_seed(
                (seed * 1_000_003 + int(i)) * 31 + draw)) for i in index]
            noises.append(torch.stack(per_sample).to(x0))
        return loss_scores(eps_fn, x0, cond, alphas, self.timesteps, noises)
