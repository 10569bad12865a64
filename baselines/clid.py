"""CLiD (Zhai et al., NeurIPS 2024, "Membership Inference on Text-to-Image Diffusion Models via
Conditional Likelihood Discrepancy"): a fine-tune overfits the *conditional* distribution more
than the unconditional one, so on its training images the caption helps denoising more.

The variant is the paper's threshold attack CLiD_th as its published code computes it
(``mia_CLiD_impt.py``, ``cal_clid_th.py``): timesteps T_mid ± spacing (440, 450, 460: the
code's Tmid = 450, even_num = 10, 3 samples), one seeded noise per timestep shared by every
conditioning, L(c) = mean squared error of ε_θ(x_t, t, c) over timesteps and elements, and the
discrepancy D = L(c*) − L(c) for perturbed conditionings c*. What differs, by name:

* c* is the **empty prompt only** in ``clid``. The code's default averages D over the null
  caption and three captions with their 30 / 50 / 70 % most important words replaced by
  <|endoftext|> (``replace_words_topRate``, here :func:`cut_top_rate`): that is the variant
  ``clid-impt`` (option ``cuts``). The code reads the word importances from the authors'
  per-dataset metadata, unpublished and computed outside it; a gate has none for a user's
  captions, so ``clid-impt`` measures them on the model itself (:func:`word_importances`,
  our choice: how far deleting the word moves the caption's text conditioning).
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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from s2l_scan.attack import ATTACKS, Attack
from s2l_scan.conditioning import Conditioning
from s2l_scan.errors import UsageError
from s2l_scan.functional.diffusion import Cond, EpsFn, conditional_errors

CUT_TOKEN = "<|endoftext|>"  # what the code puts in a cut word's place (CLIP's end of text)


def cut_top_rate(caption: str, importances: Sequence[float], rate: float) -> str:
    """``caption`` with its ``rate`` most important words replaced by <|endoftext|>, as the
    code's ``replace_words_topRate``: words split on whitespace and re-joined by one space;
    the threshold is the ``int(rate·n − 0.01)``-th largest importance (0-based), and every word
    at or above it is cut, ties together. A caption without words is returned as it is."""
    words = caption.split()
    if len(words) != len(importances):
        raise ValueError(f"{len(words)} words but {len(importances)} importances")
    if not words:
        return caption
    threshold = sorted(importances, reverse=True)[int(rate * len(words) - 0.01)]
    return " ".join(CUT_TOKEN if weight >= threshold else word
                    for word, weight in zip(words, importances, strict=True))


def word_importances(encode: Callable[[Sequence[str]], Conditioning], caption: str
                     ) -> list[float]:
    """Per word of ``caption``: 1 − cosine similarity between the caption's text
    conditioning (hidden states, flattened) and that of the caption with the word deleted."""
    words = caption.split()
    if not words:
        return []
    variants = [caption] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
    hidden = encode(variants).hidden.flatten(1).double()
    similarity = torch.nn.functional.cosine_similarity(hidden[:1], hidden[1:], dim=1)
    return [float(1.0 - s) for s in similarity.cpu()]


@ATTACKS.register("clid")
@dataclass(frozen=True)
class CLiDAttack(Attack):
    """score = L(∅) − L(c): how much the caption lowers the denoising error (CLiD_th, null c*)."""

    timesteps: tuple[int, ...] = (440, 450, 460)
    weights: tuple[float, ...] = (1.0, 4.0, 16.0)
    seed: int | None = None  # None: the scan's seed (attack.make_attack fills it in); alone, 0
    # c* besides the null caption: the caption with this fraction of its most important words
    # cut (the code's cut_list); D is averaged over all c* with equal weight
    cuts: tuple[float, ...] = ()
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
        if not isinstance(self.cuts, tuple | list) or not all(
                isinstance(c, int | float) and not isinstance(c, bool) and 0 < c <= 1
                for c in self.cuts):
            raise UsageError(f"attack {self.name!r}: cuts must be a list of fractions in (0, 1] "
                             f"(the share of a caption's most important words cut), got "
                             f"{self.cuts!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(
                self.seed, int) or not 0 <= self.seed < 2**31):
            raise UsageError(f"attack 'clid': seed must be an integer ≥ 0 (below 2**31), got "
                             f"{self.seed!r}")

    def perturbed_captions(self, captions: Sequence[str],
                           encode: Callable[[Sequence[str]], Conditioning]) -> list[list[str]]:
        if not self.cuts:
            return []
        importances = {c: word_importances(encode, c) for c in sorted(set(captions))}
        return [[cut_top_rate(c, importances[c], rate) for c in captions] for rate in self.cuts]

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
                             uncond: Cond | None = None, perturbed: Sequence[Cond] = ()
                             ) -> dict[str, torch.Tensor]:
        if uncond is None:
            raise UsageError(f"attack {self.name!r} needs the empty prompt's conditioning "
                             "(uncond)")
        if len(perturbed) != len(self.cuts):
            raise UsageError(f"attack {self.name!r} cuts {len(self.cuts)} caption(s) per "
                             f"sample ({list(self.cuts)}) but was given {len(perturbed)} "
                             "perturbed conditioning(s)")
        conditional, *others = conditional_errors(
            eps_fn, x0, [cond, uncond.to(x0.device), *(p.to(x0.device) for p in perturbed)],
            alphas, self.timesteps, self._noises(x0, index))
        # the code's get_l_clidavg_last3: the mean over every c* of L(c*) − L(c)
        discrepancy = torch.stack([other - conditional for other in others]).mean(0)
        return {"": discrepancy, "loss": -conditional,
                **{f"w={w:g}": w * discrepancy - conditional for w in self.weights}}


@ATTACKS.register("clid-impt")
@dataclass(frozen=True)
class CLiDImportanceAttack(CLiDAttack):
    """CLiD_th with the code's default c*: the null caption and the caption with its 30, 50
    and 70 % most important words cut (importances measured on the model)."""

    cuts: tuple[float, ...] = (0.3, 0.5, 0.7)
    name = "clid-impt"
