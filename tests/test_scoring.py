"""Shared batches across sets and attacks give each attack's own per-set scores."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

from s2l_scan.attack import Attack, Target
from s2l_scan.baselines.loss import LossAttack
from s2l_scan.baselines.pia import PIAAttack, PIANAttack
from s2l_scan.baselines.secmi import SecMIAttack
from s2l_scan.scoring import SampleSet, SharedForwards, batches, score_sets


class _Linear(torch.nn.Module):
    """A tiny deterministic ε-predictor with the UNet's call signature; counts its forwards."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.linspace(-0.5, 0.5, 4))
        self.calls = 0

    def forward(self, x: torch.Tensor, t: torch.Tensor, encoder_hidden_states: torch.Tensor
                ) -> object:
        self.calls += 1
        out = x * self.weight.view(1, -1, 1, 1) + t.view(-1, 1, 1, 1) / 1000
        out = out + encoder_hidden_states.mean((1, 2)).view(-1, 1, 1, 1)
        return type("Out", (), {"sample": out})()


ATTACKS: list[Attack] = [LossAttack(), SecMIAttack(), PIAAttack(), PIANAttack()]


def _sets() -> list[SampleSet]:
    gen = torch.Generator().manual_seed(0)
    return [SampleSet(torch.randn(n, 4, 8, 8, generator=gen), torch.randn(n, 3, 5, generator=gen))
            for n in (5, 3, 7)]


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_shared_batches_equal_each_attack_on_each_set(batch_size: int) -> None:
    alphas = DDIMScheduler().alphas_cumprod.double()
    unet = _Linear()
    target = Target(unet, alphas, batch_size, prediction_type="epsilon")
    sets = _sets()
    scored = score_sets(ATTACKS, target, sets)
    assert scored is not None
    for attack, per_set in zip(ATTACKS, scored, strict=True):
        for sample_set, scores in zip(sets, per_set, strict=True):
            alone = attack.score(Target(unet, alphas, 2, prediction_type="epsilon"),
                                 sample_set.latents, sample_set.cond)
            assert scores.keys() == alone.keys()
            for key in scores:
                torch.testing.assert_close(torch.from_numpy(scores[key]), alone[key])


def test_forward_on_clean_latents_is_computed_once_per_batch() -> None:
    unet = _Linear()
    target = Target(unet, DDIMScheduler().alphas_cumprod.double(), 32,
                    prediction_type="epsilon")
    sets = _sets()
    score_sets([PIAAttack()], target, sets)
    alone = unet.calls
    unet.calls = 0
    score_sets([SecMIAttack(), PIAAttack(), PIANAttack()], target, sets)
    # SecMI: 11 inversion + 3 round-trip forwards; PIA and PIAN reuse its ε_θ(x₀, 0)
    assert unet.calls == 14 + 1 + 1 and alone == 2


def test_shared_forwards_pass_other_inputs_through() -> None:
    seen = []

    def eps(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        seen.append(int(t[0]))
        return x + t.view(-1, 1)

    x0, cond = torch.zeros(2, 3), torch.zeros(2, 1)
    shared = SharedForwards(eps, x0, cond)
    t0 = torch.zeros(2, dtype=torch.long)
    shared(x0, t0, cond)
    shared(x0, t0, cond)
    shared(x0.clone(), t0, cond)  # a different tensor: computed
    shared(x0, torch.tensor([0, 1]), cond)  # mixed timesteps: computed
    assert seen == [0, 0, 0]


def test_batches_cover_every_sample_once() -> None:
    assert batches(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert batches(0, 3) == []
