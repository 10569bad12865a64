"""The attack maths against diffusers' schedulers and hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from s2l_scan.attack import Target
from s2l_scan.baselines.loss import LossAttack
from s2l_scan.functional.diffusion import (
    ddim_invert,
    ddim_step,
    loss_scores,
    pia_scores,
    secmi_scores,
    secmi_sweep_scores,
    secmi_targets,
)

SD_SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
               "clip_sample": False, "set_alpha_to_one": False}


@pytest.fixture(scope="module")
def alphas() -> torch.Tensor:
    return DDIMScheduler(**SD_SCHEDULE).alphas_cumprod


@pytest.mark.parametrize("t", [10, 20, 90, 100, 500])
def test_inversion_step_matches_ddim_inverse_scheduler(alphas: torch.Tensor, t: int) -> None:
    inverse = DDIMInverseScheduler(**SD_SCHEDULE)
    inverse.set_timesteps(100)  # stride 10: step(…, t) moves ᾱ[t − 10] → ᾱ[t]
    gen = torch.Generator().manual_seed(t)
    x, eps = torch.randn(3, 4, 8, 8, generator=gen), torch.randn(3, 4, 8, 8, generator=gen)
    expected = inverse.step(eps, t, x).prev_sample
    ours = ddim_step(x, eps, alphas[t - 10].expand(3), alphas[t].expand(3))
    torch.testing.assert_close(ours, expected)


@pytest.mark.parametrize("t", [901, 501, 101])
def test_denoising_step_matches_ddim_scheduler(alphas: torch.Tensor, t: int) -> None:
    scheduler = DDIMScheduler(**SD_SCHEDULE, steps_offset=1)
    scheduler.set_timesteps(10)  # stride 100
    gen = torch.Generator().manual_seed(t)
    x, eps = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    expected = scheduler.step(eps, t, x, eta=0.0).prev_sample
    ours = ddim_step(x, eps, alphas[t].expand(2), alphas[t - 100].expand(2))
    torch.testing.assert_close(ours, expected)


def test_inversion_loop_matches_scheduler_loop(alphas: torch.Tensor) -> None:
    def eps_fn(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * 0.5 + c.mean() + t.float().view(-1, 1, 1, 1) / 1000

    x0, cond = torch.randn(2, 4, 4, 4), torch.full((2, 3, 5), 0.1)
    inverse = DDIMInverseScheduler(**SD_SCHEDULE)
    inverse.set_timesteps(100)
    x, current = x0, 0
    for target in secmi_targets(100, 10):
        eps = eps_fn(x, torch.full((2,), current), cond)
        x = inverse.step(eps, target, x).prev_sample
        current = target
    torch.testing.assert_close(ddim_invert(eps_fn, x0, cond, alphas, secmi_targets(100, 10)), x)


def test_secmi_compares_t_sec_minus_k() -> None:
    assert secmi_targets(100, 10) == list(range(10, 100, 10))
    assert secmi_targets(150, 10)[-1] == 140
    with pytest.raises(ValueError, match="t_sec"):
        secmi_targets(10, 10)


def test_secmi_on_hand_computed_scalar_example(alphas: torch.Tensor) -> None:
    """The paper's definition written out with Python floats, for one scalar latent."""
    a = [float(v) for v in alphas.double()]

    def eps_scalar(x: float, t: int) -> float:
        return 0.3 * x + t / 100.0

    def step(x: float, eps: float, s: int, s_next: int) -> float:
        x0_hat = (x - math.sqrt(1 - a[s]) * eps) / math.sqrt(a[s])
        return math.sqrt(a[s_next]) * x0_hat + math.sqrt(1 - a[s_next]) * eps

    x, current = 0.7, 0
    for target in (10, 20):  # range(0, 30, 10)[1:]
        x = step(x, eps_scalar(x, current), current, target)
        current = target
    x_tilde = x  # x̃_20
    x_30 = step(x_tilde, eps_scalar(x_tilde, 20), 20, 30)
    x_hat = step(x_30, eps_scalar(x_30, 30), 30, 20)
    expected = -((x_hat - x_tilde) ** 2)

    def eps_fn(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return 0.3 * x + t.to(x.dtype).view(-1, 1, 1, 1) / 100.0

    score = secmi_scores(eps_fn, torch.full((1, 1, 1, 1), 0.7, dtype=torch.float64),
                         torch.zeros(1, 1, 1), alphas.double(), t_sec=30, k=10)
    assert float(score[0]) == pytest.approx(expected, rel=1e-9)


def test_pia_on_hand_computed_example(alphas: torch.Tensor) -> None:
    def eps_fn(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return 0.5 * x

    x0 = torch.tensor([[[[2.0]]]], dtype=torch.float64)
    a = float(alphas[200])
    eps0 = 1.0
    x_t = math.sqrt(a) * 2.0 + math.sqrt(1 - a) * eps0
    expected = -abs(eps0 - 0.5 * x_t) ** 4
    score = pia_scores(eps_fn, x0, torch.zeros(1, 1, 1), alphas.double(), t=200, p=4)
    assert float(score[0]) == pytest.approx(expected, rel=1e-9)


def test_loss_with_zero_predictor_is_minus_noise_energy(alphas: torch.Tensor) -> None:
    noises = [torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(i)) for i in (0, 1)]
    scores = loss_scores(lambda x, t, c: torch.zeros_like(x), torch.randn(3, 2, 4, 4),
                         torch.zeros(3, 1, 1), alphas, [100, 300], noises)
    expected = -(noises[0] ** 2 + noises[1] ** 2).flatten(1).sum(1).double() / 2
    torch.testing.assert_close(scores, expected)


def test_scores_do_not_depend_on_batch_size(tiny_reference: object) -> None:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(f"{tiny_reference}/model/unet").eval()
    alphas = DDIMScheduler(**SD_SCHEDULE).alphas_cumprod.double()
    x0 = torch.randn(5, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = torch.randn(5, 77, unet.config.cross_attention_dim)
    attack = LossAttack(timesteps=(50,), n_noise=2)
    whole = attack.score(Target(unet, alphas, 5, prediction_type="epsilon"), x0, cond)[""]
    pieces = attack.score(Target(unet, alphas, 2, prediction_type="epsilon"), x0, cond)[""]
    torch.testing.assert_close(whole, pieces)


def test_secmi_sweep_equals_separate_attacks(alphas: torch.Tensor) -> None:
    def eps_fn(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.sin(x) * 0.4 + t.float().view(-1, 1, 1, 1) / 700

    x0, cond = torch.randn(3, 2, 4, 4, dtype=torch.float64), torch.zeros(3, 1, 1)
    sweep = secmi_sweep_scores(eps_fn, x0, cond, alphas.double(), 10, [80, 90, 100])
    for t, scores in sweep.items():
        single = secmi_scores(eps_fn, x0, cond, alphas.double(), t_sec=t + 10, k=10)
        torch.testing.assert_close(scores, single)
    with pytest.raises(ValueError, match="multiples"):
        secmi_sweep_scores(eps_fn, x0, cond, alphas.double(), 10, [85])


def test_pian_standardises_eps0(alphas: torch.Tensor) -> None:
    def eps_fn(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return 0.5 * x

    x0 = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).view(1, 1, 2, 2)
    raw = [0.5, 1.0, 1.5, 2.0]
    mean = sum(raw) / 4
    std = math.sqrt(sum((v - mean) ** 2 for v in raw) / 3)  # unbiased, as torch.std
    eps0 = [(v - mean) / std for v in raw]
    a = float(alphas[200])
    x_t = [math.sqrt(a) * x + math.sqrt(1 - a) * e for x, e in zip([1, 2, 3, 4], eps0, strict=True)]
    expected = -sum(abs(e - 0.5 * x) ** 4 for e, x in zip(eps0, x_t, strict=True))
    score = pia_scores(eps_fn, x0, torch.zeros(1, 1, 1), alphas.double(), t=200, normalize=True)
    assert float(score[0]) == pytest.approx(expected, rel=1e-9)
