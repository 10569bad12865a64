"""The LoRA update and how to tell whether a fused layer holds it (tensors in, tensors out).

A LoRA layer adds ``scale · up @ down`` to its base weight, ``scale = weight · alpha / rank``
(kohya-ss ``networks/lora.py``: ``self.scale = alpha / self.lora_dim``; peft: ``lora_alpha / r``,
or ``/ sqrt(r)`` with rsLoRA). Conv layers store ``up`` as ``[out, rank, 1, 1]`` and ``down`` as
``[rank, in, kh, kw]``; their product, flattened and reshaped, is the conv update.
"""

from __future__ import annotations

import torch

from s2l_scan.functional.metrics import MetricInputError


def lora_delta(up: torch.Tensor, down: torch.Tensor, scale: float,
               shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """``scale · up @ down`` in float32, shaped like the base weight ``shape``.

    >>> lora_delta(torch.ones(3, 1), torch.ones(1, 2), 0.5, (3, 2)).tolist()[0]
    [0.5, 0.5]
    """
    if up.ndim < 2 or down.ndim < 2 or up.shape[1] != down.shape[0]:
        raise MetricInputError(f"lora_delta: up {tuple(up.shape)} and down {tuple(down.shape)} "
                               "are not the two factors of one rank-r update")
    product = up.reshape(up.shape[0], -1).float() @ down.reshape(down.shape[0], -1).float()
    if product.numel() != torch.Size(shape).numel():
        raise MetricInputError(f"lora_delta: the update has {product.numel()} values, the "
                               f"base weight {tuple(shape)} needs {torch.Size(shape).numel()}")
    return (scale * product).reshape(shape)


def delta_error(measured: torch.Tensor, expected: torch.Tensor, fused: torch.Tensor) -> float:
    """How far a measured change is from the expected one, in units of the tolerance
    ``rtol · |expected| + eps(dtype) · |fused|`` (Frobenius norms; ``eps`` of the fused
    weight's dtype: rounding ``W + ΔW`` moves it by at most eps/2 · |fused|, so rounding never
    counts as a wrong scale). ≤ 1 agrees.
    """
    if measured.shape != expected.shape or fused.shape != expected.shape:
        raise MetricInputError(f"delta_error: shapes {tuple(measured.shape)}, "
                               f"{tuple(expected.shape)}, {tuple(fused.shape)} differ")
    eps = torch.finfo(fused.dtype).eps if fused.is_floating_point() else 0.0
    rtol = 1e-2 if eps > 1e-6 else 1e-3  # half precision: the update itself is rounded
    allowed = rtol * float(expected.float().norm()) + eps * float(fused.float().norm())
    gap = float((measured.float() - expected.float()).norm())
    return gap / allowed if allowed > 0 else (0.0 if gap == 0 else float("inf"))
