"""What every attack is: a named scorer of (latents, conditioning) under one model.

Attacks live in ``baselines/`` and register themselves in :data:`ATTACKS`. The session hands
each one a :class:`Target` (the UNet bound to its noise schedule) and the encoded audit samples;
the attack returns one score per sample, higher = more likely member.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, ClassVar

import torch

from s2l_scan.functional.diffusion import EpsFn
from s2l_scan.registry import Registry


@dataclass
class Target:
    """The model under attack, reduced to what the scores need."""

    unet: Any  # diffusers.UNet2DConditionModel
    alphas: torch.Tensor  # the scheduler's alphas_cumprod, float64 on the UNet's device
    batch_size: int = 32

    def eps_fn(self) -> EpsFn:
        """ε_θ(x, t, c) as a plain function."""
        dtype = next(self.unet.parameters()).dtype

        def eps(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            out = self.unet(x.to(dtype), t, encoder_hidden_states=cond.to(dtype)).sample
            return out.float()

        return eps


class Attack(ABC):
    """A membership attack. Subclasses set ``name`` and implement :meth:`score_batch`."""

    name: ClassVar[str]

    def describe(self) -> dict[str, Any]:
        """The attack's settings for the report (dataclass attacks return their fields)."""
        return asdict(self) if is_dataclass(self) else {}

    @abstractmethod
    def score_batch(self, eps_fn: EpsFn, x0: torch.Tensor, cond: torch.Tensor,
                    alphas: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Scores of one batch; ``index`` are the samples' positions in the full set."""

    def score_batch_variants(self, eps_fn: EpsFn, x0: torch.Tensor, cond: torch.Tensor,
                             alphas: torch.Tensor, index: torch.Tensor
                             ) -> dict[str, torch.Tensor]:
        """The scores under key ``""``, plus diagnostic variants computed alongside.

        SecMI, for one, adds its neighbouring timesteps so the report can say when the
        attack is unstable across t.
        """
        return {"": self.score_batch(eps_fn, x0, cond, alphas, index)}

    def score(self, target: Target, x0: torch.Tensor, cond: torch.Tensor
              ) -> dict[str, torch.Tensor]:
        """Scores of every sample (key ``""``) and variants, in batches of ``batch_size``."""
        eps_fn = target.eps_fn()
        alphas = target.alphas.float()
        out: dict[str, list[torch.Tensor]] = {}
        with torch.inference_mode():
            for start in range(0, len(x0), target.batch_size):
                stop = min(start + target.batch_size, len(x0))
                batch = self.score_batch_variants(eps_fn, x0[start:stop], cond[start:stop],
                                                  alphas, torch.arange(start, stop))
                for key, scores in batch.items():
                    out.setdefault(key, []).append(scores)
        return {key: torch.cat(parts) for key, parts in out.items()}


ATTACKS: Registry[type[Attack]] = Registry("attack", entry_point_group="s2l_scan.attacks")
