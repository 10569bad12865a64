"""Every attack on every sample set, in shared batches: the scan's forward passes, and nothing else.

The sample sets of a scan (members and non-members of every domain) are laid end to end and
cut into batches of ``batch_size``, so small domains still fill the UNet's batches. Within a
batch all attacks run back to back on the same tensors, and a forward that two attacks share
(ε_θ(x₀, t, c) on the clean latents: PIA's ε₀ is SecMI's first inversion step) is computed
once. Each sample keeps its position in its own set (``index``), so seeded noises, and hence
scores, do not depend on how sets are batched together. Batches are the units of work of a
data-parallel scan (:mod:`s2l_scan.parallel`): the same batches, whatever the process count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from s2l_scan.attack import Attack, Target, perturbed_slice, uncond_of
from s2l_scan.conditioning import Conditioning, as_conditioning
from s2l_scan.functional.diffusion import Cond, EpsFn
from s2l_scan.parallel import World
from s2l_scan.progress import report

Scores = dict[str, np.ndarray]  # "" → the attack's scores, other keys → diagnostic variants


@dataclass(frozen=True)
class SampleSet:
    """Latents (N, C, h, w) and their text conditioning for one set of samples (a bare
    (N, L, D) tensor is SD hidden states)."""

    latents: torch.Tensor
    cond: Conditioning | torch.Tensor
    # attack name → each perturbed_captions list, encoded (a row per sample), for attacks
    # that perturb captions (CLiD's c*)
    perturbed: dict[str, tuple[Conditioning, ...]] = field(default_factory=dict)


class SharedForwards:
    """ε_θ that computes the forward on one batch's clean latents once per timestep.

    Only calls on the very tensors of the batch (``x is x0 and cond is cond0``) at a single
    timestep are remembered, so every other call goes straight to the model; a remembered
    result is what the model returns for those inputs, so scores are unchanged.
    """

    def __init__(self, eps: EpsFn, x0: torch.Tensor, cond: Cond) -> None:
        self._eps, self._x0, self._cond = eps, x0, cond
        self._memo: dict[int, torch.Tensor] = {}

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        if x is not self._x0 or cond is not self._cond or not bool((t == t[0]).all()):
            return self._eps(x, t, cond)
        step = int(t[0])
        if step not in self._memo:
            self._memo[step] = self._eps(x, t, cond)
        return self._memo[step]


def batches(total: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of ``batch_size`` covering ``total`` samples."""
    return [(start, min(start + batch_size, total)) for start in range(0, total, batch_size)]


def _perturbed(name: str, sets: Sequence[SampleSet]) -> list[Conditioning]:
    """Attack ``name``'s perturbed conditionings, laid end to end over the sets as x₀ is."""
    if any(name not in s.perturbed for s in sets):
        raise ValueError(f"attack {name!r}: perturbed captions missing from some sample set")
    return [Conditioning.cat([as_conditioning(s.perturbed[name][k]) for s in sets])
            for k in range(len(sets[0].perturbed[name]))]


def score_sets(attacks: Sequence[Attack], target: Target, sets: Sequence[SampleSet],
               world: World | None = None, stage: str = "scoring"
               ) -> list[list[Scores]] | None:
    """``out[a][s]``: attack ``a``'s scores (and variants) of sample set ``s``.

    With a multi-process ``world`` the batches are shared out and the result is returned on
    rank 0 only (None elsewhere). Reports ``stage`` progress in batches
    (:func:`s2l_scan.progress.report`).
    """
    world = World() if world is None else world
    if not sets:
        return [[] for _ in attacks]
    x0 = torch.cat([s.latents for s in sets])
    cond = Conditioning.cat([as_conditioning(s.cond) for s in sets])
    index = torch.cat([torch.arange(len(s.latents)) for s in sets])
    perturbed = {attack.name: _perturbed(attack.name, sets) for attack in attacks
                 if attack.name in sets[0].perturbed}
    alphas = target.alphas.float()
    eps = target.eps_fn()

    def run(span: tuple[int, int]) -> list[Scores]:
        start, stop = span
        xb, cb = x0[start:stop], cond[start:stop]
        shared = SharedForwards(eps, xb, cb)
        with torch.inference_mode():
            return [{key: value.numpy() for key, value in attack.score_batch_variants(
                shared, xb, cb, alphas, index[start:stop], **uncond_of(attack, target),
                **perturbed_slice(perturbed.get(attack.name, ()), start, stop)).items()}
                for attack in attacks]

    spans = batches(len(x0), target.batch_size)
    mine = sum(world.mine(i) for i in range(len(spans)))
    done = 0

    def counted(span: tuple[int, int]) -> list[Scores]:
        nonlocal done
        scores = run(span)
        done += 1
        report(stage, done, mine)
        return scores

    report(stage, 0, mine)
    per_batch = world.map(counted, spans)
    if per_batch is None:
        return None
    bounds = np.cumsum([0, *(len(s.latents) for s in sets)])
    out: list[list[Scores]] = []
    for a in range(len(attacks)):
        keys = per_batch[0][a].keys()
        full = {key: np.concatenate([part[a][key] for part in per_batch]) for key in keys}
        out.append([{key: full[key][bounds[s]:bounds[s + 1]] for key in keys}
                    for s in range(len(sets))])
    return out
