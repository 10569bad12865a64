"""Hypernetwork (NovelAI / AUTOMATIC1111 style) as an S2L probe: small MLPs on the text context.

Every cross-attention (``attn2``) of the UNet computes its keys from ``K(c)`` and its values from
``V(c)`` instead of from the text context ``c``, where ``K`` and ``V`` are residual MLPs
``c + W₂ act(W₁ c)`` with ``W₂`` zero-initialised, so the copy starts exactly equal to the
model. As in AUTOMATIC1111, one (K, V) pair is shared by all cross-attentions with the same
context width (one pair for Stable Diffusion). Only the MLPs train; UNet and text-encoder weights
never change. The MLPs ride in a diffusers attention processor, so they stay installed in the
copy the attacks score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from s2l_scan.errors import UsageError
from s2l_scan.finetune import TrainConfig, TrainingData, check_budget, count_parameters, train
from s2l_scan.probe import PROBES, ModelCopy, Probe, ProbeContext
from s2l_scan.probes.methods._inputs import sp_set

if TYPE_CHECKING:
    from diffusers.models.attention_processor import Attention


def check_hidden(who: str, hidden: object) -> None:
    """UsageError unless the MLP width is an integer ≥ 1."""
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise UsageError(f"{who}: hidden must be an integer ≥ 1, got {hidden!r}.")


class ResidualMLP(torch.nn.Module):
    """``x + W₂ relu(W₁ x)``; W₂ starts at zero, so the module starts as the identity."""

    def __init__(self, width: int, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        self.expand = torch.nn.Linear(width, hidden)
        self.project = torch.nn.Linear(hidden, width)
        with torch.no_grad():  # seeded here, not from the global RNG
            bound = 1.0 / math.sqrt(width)
            self.expand.weight.uniform_(-bound, bound, generator=generator)
            self.expand.bias.uniform_(-bound, bound, generator=generator)
            self.project.weight.zero_()
            self.project.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(torch.relu(self.expand(x)))


class _ShakenContext:
    """``attn`` as AttnProcessor2_0 sees it, with to_k/to_v reading the MLP-shaken context."""

    def __init__(self, attn: Attention, key: ResidualMLP, value: ResidualMLP) -> None:
        self._attn = attn
        self.to_k = lambda context: attn.to_k(key(context))
        self.to_v = lambda context: attn.to_v(value(context))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._attn, name)


class HypernetworkProcessor(torch.nn.Module):
    """A diffusers attention processor: AttnProcessor2_0 with K(c), V(c) as key/value context.

    Wrapping diffusers' own processor (rather than copying its maths) keeps the attention
    itself bit-for-bit what the released model computes; only the context changes.
    """

    def __init__(self, width: int, hidden: int, generator: torch.Generator) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        super().__init__()
        self.key = ResidualMLP(width, hidden, generator)
        self.value = ResidualMLP(width, hidden, generator)
        self._attention = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args: Any, **kwargs: Any) -> torch.Tensor:
        if encoder_hidden_states is None:
            raise RuntimeError("a hypernetwork processor was installed on a self-attention; "
                               "it belongs on cross-attention (attn2) modules only")
        shaken: Any = _ShakenContext(attn, self.key, self.value)
        return self._attention(shaken, hidden_states, encoder_hidden_states, attention_mask,
                               temb, *args, **kwargs)


def add_hypernetwork(unet: Any, hidden: int, seed: int) -> dict[int, HypernetworkProcessor]:
    """Install hypernetwork processors on every ``attn2`` of ``unet``; return them by width.

    The MLPs are the only new parameters and the only ones that should train.
    """
    from diffusers.models.attention_processor import Attention

    generator = torch.Generator().manual_seed(seed)
    param = next(unet.parameters())
    processors: dict[int, HypernetworkProcessor] = {}
    cross = [(name, module) for name, module in unet.named_modules()
             if name.endswith("attn2") and isinstance(module, Attention)]
    if not cross:
        raise UsageError("hypernetwork: this UNet has no cross-attention (attn2) modules to "
                         "attach to; it is not a text-conditioned Stable Diffusion UNet.")
    for _, module in cross:
        width = int(module.to_k.in_features)
        if width not in processors:
            processors[width] = HypernetworkProcessor(width, hidden, generator).to(
                device=param.device, dtype=param.dtype)
        processor: Any = processors[width]  # diffusers types processors as a closed Union
        module.set_processor(processor)
    return processors


def hypernetwork_parameters(processors: dict[int, HypernetworkProcessor]) -> list[torch.Tensor]:
    """The MLPs' tensors (each once, although every attn2 module holds its width's pair)."""
    return [p for width in sorted(processors) for p in processors[width].parameters()]


def save_hypernetwork(processors: dict[int, HypernetworkProcessor], save_dir: str | None) -> None:
    """Save the MLPs as ``hypernetwork.safetensors``, keyed ``{width}.{key|value}.<layer>.*``."""
    if save_dir is None:
        return
    from safetensors.torch import save_file

    tensors = {f"{width}.{name}": tensor.detach().cpu().contiguous()
               for width, processor in sorted(processors.items())
               for name, tensor in processor.state_dict().items()}
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    save_file(tensors, Path(save_dir) / "hypernetwork.safetensors")


@PROBES.register("hypernetwork")
@dataclass(frozen=True)
class Hypernetwork(Probe):
    """Train residual MLPs on the cross-attention key/value context; no model weight changes."""

    steps: int = 100
    """optimizer steps"""
    lr: float = 1e-3
    """AdamW learning rate"""
    batch_size: int = 8
    """SP images per step"""
    hidden: int = 64
    """hidden width of each MLP (the paper's parameter-count ablation axis)"""
    name: ClassVar[str] = "hypernetwork"
    uses: ClassVar[tuple[str, ...]] = ("sp",)

    def __post_init__(self) -> None:
        check_budget(self.name, self.steps, self.lr, self.batch_size)
        check_hidden(self.name, self.hidden)

    def apply(self, model: ModelCopy, context: ProbeContext) -> ModelCopy:
        latents = sp_set(context, self.name)
        processors = add_hypernetwork(model.unet, self.hidden, context.seed)
        params = hypernetwork_parameters(processors)
        config = TrainConfig(steps=self.steps, lr=self.lr, batch_size=self.batch_size,
                             seed=context.seed, device=context.device)
        report = train(model, TrainingData.captioned(latents, context.prompt), params, config)
        save_hypernetwork(processors, context.save_dir)
        model.trainable_parameters = count_parameters(params)
        model.details = {"trained": "hypernetwork MLPs on cross-attention key/value context",
                         "hidden": self.hidden, "context_widths": sorted(processors),
                         "steps": self.steps, "lr": self.lr, "batch_size": self.batch_size,
                         "seed": context.seed, "first_loss": report["first_loss"],
                         "final_loss": report["final_loss"]}
        return model
