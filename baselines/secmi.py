"""SecMI_stat (Duan et al. ICML 2023): members survive a DDIM round trip better.

Indexing follows the published SecMI code: inversion targets ``range(0, t_sec, k)[1:]``, so
the compared timestep is ``t_sec − k`` (x₉₀ for t_sec = 100, k = 10), reported as
``compared_t``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from s2l_scan.attack import ATTACKS, Attack
from s2l_scan.functional.diffusion import EpsFn, secmi_scores, secmi_targets


@ATTACKS.register("secmi")
@dataclass(frozen=True)
class SecMIAttack(Attack):
    """score = −‖x̂_t − x̃_t‖², t = t_sec − k."""

    t_sec: int = 100
    k: int = 10
    name = "secmi"

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "compared_t": secmi_targets(self.t_sec, self.k)[-1]}

    def score_batch(self, eps_fn: EpsFn, x0: torch.Tensor, cond: torch.Tensor,
                    alphas: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return secmi_scores(eps_fn, x0, cond, alphas, self.t_sec, self.k)
