"""SecMI_stat (Duan et al. ICML 2023): members survive a DDIM round trip better.

Indexing follows the published SecMI code: inversion targets ``range(0, t_sec, k)[1:]``, so
the compared timestep is ``t_sec − k`` (x₉₀ for t_sec = 100, k = 10), reported as
``compared_t``. On small models SecMI swings with t, so by default the neighbouring compared
timesteps (t ± k) are scored from the same inversion trajectory (3 extra forwards) and the
report flags the result *unstable* when their AUCs disagree. The primary t is fixed in
advance; the sweep is never used to pick a t.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from s2l_scan.attack import ATTACKS, Attack
from s2l_scan.functional.diffusion import (
    EpsFn,
    secmi_scores,
    secmi_sweep_scores,
    secmi_targets,
)


@ATTACKS.register("secmi")
@dataclass(frozen=True)
class SecMIAttack(Attack):
    """score = −‖x̂_t − x̃_t‖², t = t_sec − k."""

    t_sec: int = 100
    k: int = 10
    stability_sweep: bool = True
    name = "secmi"

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "compared_t": secmi_targets(self.t_sec, self.k)[-1]}

    def _compared(self) -> list[int]:
        t = secmi_targets(self.t_sec, self.k)[-1]
        if not self.stability_sweep:
            return [t]
        return [s for s in (t - self.k, t, t + self.k) if s > 0]

    def score_batch(self, eps_fn: EpsFn, x0: torch.Tensor, cond: torch.Tensor,
                    alphas: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return secmi_scores(eps_fn, x0, cond, alphas, self.t_sec, self.k)

    def score_batch_variants(self, eps_fn: EpsFn, x0: torch.Tensor, cond: torch.Tensor,
                             alphas: torch.Tensor, index: torch.Tensor, *,
                             uncond: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        primary = secmi_targets(self.t_sec, self.k)[-1]
        sweep = secmi_sweep_scores(eps_fn, x0, cond, alphas, self.k, self._compared())
        return {("" if t == primary else f"x{t}"): scores for t, scores in sweep.items()}
