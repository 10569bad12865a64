"""CLiD (Zhai et al., NeurIPS 2024, "Membership Inference on Text-to-Image Diffusion Models via
Conditional Likelihood Discrepancy"): a fine-tune overfits the *conditional* distribution more
than the unconditional one, so on its training images the caption helps denoising more.

The variant is the paper's threshold attack CLiD_th as its published code computes it
(``mia_CLiD_impt.py``, ``cal_clid_th.py``): timesteps T_mid ± spacing (440, 450, 460: the
code's Tmid = 450, even_num = 10, 3 samples), one seeded noise per timestep shared by every
conditioning, L(c) = mean squared error of ε_θ(x_t, t, c) over timesteps and elements, and the
discrepancy D = L(c*) − L(c) for perturbed conditionings c*. What differs, by name:

* c* is the **empty prompt only**. The code averages D over the null caption and three
  captions with their 30 / 50 / 70 % most important words replaced by <|endoftext|>; the
  importances come from the authors' per-dataset metadata, and a gate has none for a user's
  captions (and re-encoding perturbed captions is outside the attack contract).
* The code combines the two terms as (1 − α)·L + α·(−D) after a RobustScaler fitted on a
  shadow model's scores, α ∈ {0, 0.1, …, 1} picked on the shadow. A gate has no shadow model;
  the candidates instead are D alone (α = 1, the attack's score), −L alone (α = 0, variant
  ``loss``) and w·D − L for each ``weights`` w (variants ``w=…``; w plays α/(1 − α) times the
  scalers' ratio), and the gate's cross-fit picks one on a calibration half, as the shadow
  picked α, and measures it on the other half.
* The latent is the VAE posterior mean (every attack here encodes so); the code draws
  ``latent_dist.sample()``, a new latent per run.

Checked against the authors' own script, run on the default reference with these differences
adapted away (docs/findings.md, "CLiD against the authors' own code"): L(c), L(∅) equal to 6
significant digits, D to float32 precision.

Scores: higher = more likely member.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from s2l_scan.attack import ATTACKS, Attack
from s2l_scan.errors import UsageError
from s2l_scan.functional.diffusion import Cond, EpsFn, conditional_errors


@ATTACKS.register("clid")
@dataclass(frozen=True)
class CLiDAttack(Attack):
    """score = L(∅) − L(c): how much the caption lowers the denoising error (CLiD_th, null c*)."""

    timesteps: tuple[int, ...] = (440, 450, 460)
    weights: tuple[float, ...] = (1.0, 4.0, 16.0)
    seed: int | None = None  # None: the scan's seed (attack.make_attack fills it in); alone, 0
    name = "clid"
    needs_uncond = True

    def __post_init__(self) -> None:
        if not isinstance(self.timesteps, tuple | list) or not self.timesteps:
            raise UsageError(f"attack 'clid': timesteps must be a non-empty list of integers, "
                             f"got {self.timesteps!r}")
        if not isinstance(self.weights, tuple | list) or not all(
                isinstance(w, int | float) and not isinstance(w, bool) and 0 < w < 1e6
                for w in self.weights):
            raise UsageError(f"attack 'clid': weights must be a list of positive numbers, got "
                             f"{self.weights!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(
                self.seed, int) or not 0 <= self.seed < 2**31):
            raise UsageError(f"attack 'clid': seed must be an integer ≥ 0 (below 2**31), got "
                             f"{self.seed!r}")

    def _noises(self, x0: torch.Tensor, index: torch.Tensor) -> list[torch.Tensor]:
        # one noise per (sample index, timestep): identical whatever the batch size or order
        seed = 0 if self.seed is None else self.seed
        return [torch.stack([torch.randn(x0.shape[1:], generator=torch.Generator().manual_seed(
            (seed * 1_000_003 + int(i)) * 31 + draw)) for i in index]).to(x0)
            for draw in range(len(self.timesteps))]

    def score_batch(self, eps_fn: EpsFn, x0: torch.Tensor, cond: torch.Tensor,
                    alphas: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        raise UsageError("attack 'clid' needs the empty prompt's conditioning; it is scored "
                         "through score_batch_variants")

    def score_batch_variants(self, eps_fn: EpsFn, x0: torch.Tensor, cond: Cond,
                             alphas: torch.Tensor, index: torch.Tensor, *,
                             uncond: Cond | None = None) -> dict[str, torch.Tensor]:
        if uncond is None:
            raise UsageError("attack 'clid' needs the empty prompt's conditioning (uncond)")
        conditional, unconditional = conditional_errors(
            eps_fn, x0, [cond, uncond.to(x0.device)], alphas, self.timesteps,
            self._noises(x0, index))
        discrepancy = unconditional - conditional
        return {"": discrepancy, "loss": -conditional,
                **{f"w={w:g}": w * discrepancy - conditional for w in self.weights}}
