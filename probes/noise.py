"""Noise shaking (S2L §5.3): add N(0, σ²) to every UNet weight of a copy.

``mode="absolute"`` adds noise of standard deviation σ to every weight; ``mode="relative"``
scales σ by each tensor's own standard deviation, so large and small layers are shaken
alike. The paper sweeps σ from 2e-4 to 3.2e-3 and finds gains at mid σ on small models only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from s2l_scan.errors import UsageError
from s2l_scan.probe import PROBES, ModelCopy, Probe, ProbeContext

MODES = ("absolute", "relative")


@PROBES.register("noise")
@dataclass(frozen=True)
class NoiseProbe(Probe):
    """Gaussian noise on the UNet's weights; nothing is trained."""

    sigma: float = 8e-4  # standard deviation (absolute) or fraction of each tensor's std
    mode: str = "absolute"  # "absolute" or "relative"
    name: ClassVar[str] = "noise"
    uses: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma, int | float) and 0 < self.sigma < 1):
            raise UsageError(f"noise sigma must be in (0, 1), got {self.sigma!r}")
        if self.mode not in MODES:
            raise UsageError(f"noise mode must be one of {MODES}, got {self.mode!r}")

    def apply(self, model: ModelCopy, context: ProbeContext) -> ModelCopy:
        generator = torch.Generator().manual_seed(context.seed)
        with torch.no_grad():
            for _, param in sorted(model.unet.named_parameters()):
                scale = self.sigma * (param.float().std().item() if self.mode == "relative"
                                      and param.numel() > 1 else 1.0)
                noise = torch.randn(param.shape, generator=generator) * scale
                param.add_(noise.to(device=param.device, dtype=param.dtype))
        model.trainable_parameters = 0
        model.details = {"sigma": self.sigma, "mode": self.mode,
                         "perturbed_parameters": sum(p.numel() for p in model.unet.parameters())}
        return model
