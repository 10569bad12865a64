"""functional.lora: the LoRA update against a brute-force loop, and the tolerance that tells a
wrong scale from rounding."""

from __future__ import annotations

import pytest
import torch

from s2l_scan.functional.lora import delta_error, lora_delta
from s2l_scan.functional.metrics import MetricInputError


def test_lora_delta_is_the_sum_of_rank_one_terms() -> None:
    up, down = torch.randn(3, 2, 1, 1), torch.randn(2, 4, 3, 3)
    loop = sum(up[:, r, 0, 0].reshape(3, 1, 1, 1) * down[r].unsqueeze(0) for r in range(2))
    torch.testing.assert_close(lora_delta(up, down, 0.25, (3, 4, 3, 3)), 0.25 * loop)


def test_lora_delta_refuses_factors_that_do_not_fit() -> None:
    with pytest.raises(MetricInputError):
        lora_delta(torch.ones(3, 2), torch.ones(3, 4), 1.0, (3, 4))
    with pytest.raises(MetricInputError):
        lora_delta(torch.ones(3, 2), torch.ones(2, 4), 1.0, (4, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_delta_error_passes_rounding_and_fails_half_the_scale(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(64, 32, generator=generator).to(dtype)
    delta = 0.05 * torch.randn(64, 32, generator=generator)
    fused = (base.float() + delta).to(dtype)
    measured = fused.float() - base.float()
    assert delta_error(measured, delta, fused) <= 1.0
    assert delta_error(measured, 2.0 * delta, fused) > 1.0
    assert delta_error(measured, 0.5 * delta, fused) > 1.0
