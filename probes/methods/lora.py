"""LoRA (Hu et al. 2022) as an S2L probe: low-rank adapters on attention, then fused.

peft adapters of rank ``rank`` (scale ``alpha / rank``) go on the UNet's attention projections
(``to_q``, ``to_k``, ``to_v``, ``to_out.0`` of every self- and cross-attention) and on the text
encoder's ``q_proj`` / ``v_proj`` (SDXL: both text encoders'); only the adapters train.
Afterwards they are merged into the copy's weights and the peft layers removed, so the attacks
score a plain model: W ← W + (α/r)·BA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from s2l_scan.errors import UsageError
from s2l_scan.finetune import TrainConfig, TrainingData, check_budget, count_parameters, train
from s2l_scan.probe import PROBES, ModelCopy, Probe, ProbeContext
from s2l_scan.probes.methods._inputs import sp_set

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
"""UNet modules that get adapters (diffusers' names, as in its LoRA training scripts)."""

TEXT_TARGETS = ("q_proj", "v_proj")
"""Text-encoder modules that get adapters."""

ADAPTER = "s2l"
"""peft adapter name used on both modules."""


def check_lora(who: str, rank: object, alpha: object) -> None:
    """UsageError unless rank is an integer ≥ 1 and alpha a number > 0."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise UsageError(f"{who}: rank must be an integer ≥ 1, got {rank!r}.")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not alpha > 0:
        raise UsageError(f"{who}: alpha must be a number > 0, got {alpha!r}.")


def add_lora(model: ModelCopy, rank: int, alpha: float, seed: int) -> list[torch.Tensor]:
    """Put LoRA adapters on ``model``'s UNet and text encoder(s); return the adapter tensors.

    A is drawn from a generator seeded with ``seed`` (peft would use the global RNG), B is zero,
    so the adapted model starts exactly equal to the copy.
    """
    from peft import LoraConfig, inject_adapter_in_model

    def config(targets: tuple[str, ...]) -> Any:
        # peft annotates lora_alpha as int but only ever divides it by r; a float is fine.
        return LoraConfig(r=rank, lora_alpha=alpha,  # type: ignore[arg-type]
                          lora_dropout=0.0, target_modules=list(targets))

    model.unet.add_adapter(config(UNET_TARGETS), adapter_name=ADAPTER)
    for encoder in model.text_encoders:
        inject_adapter_in_model(config(TEXT_TARGETS), encoder, adapter_name=ADAPTER)
    generator = torch.Generator().manual_seed(seed)
    params = []
    with torch.no_grad():
        for module in (model.unet, *model.text_encoders):
            for name, param in module.named_parameters():
                if f"lora_A.{ADAPTER}." in name:
                    init = torch.empty(param.shape)
                    torch.nn.init.kaiming_uniform_(init, a=math.sqrt(5), generator=generator)
                    param.copy_(init)
                if ".lora_" in name:
                    params.append(param)
    return params


def save_lora(model: ModelCopy, save_dir: str | None) -> None:
    """Save the (unfused) adapters as ``pytorch_lora_weights.safetensors``, diffusers format.

    The file loads with ``pipeline.load_lora_weights`` and so with ``s2l-scan --lora``.
    """
    if save_dir is None:
        return
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    def layers(module: Any) -> dict[str, torch.Tensor]:
        state = get_peft_model_state_dict(module, adapter_name=ADAPTER)
        return convert_state_dict_to_diffusers(state)

    Path(save_dir).mkdir(parents=True, exist_ok=True)
    if model.text_encoder_2 is not None:
        StableDiffusionXLPipeline.save_lora_weights(
            save_dir, unet_lora_layers=layers(model.unet),
            text_encoder_lora_layers=layers(model.text_encoder),
            text_encoder_2_lora_layers=layers(model.text_encoder_2), safe_serialization=True)
        return
    StableDiffusionPipeline.save_lora_weights(
        save_dir, unet_lora_layers=layers(model.unet),
        text_encoder_lora_layers=layers(model.text_encoder), safe_serialization=True)


def fuse_lora(model: ModelCopy) -> None:
    """Merge the adapters into the weights and remove every peft layer: a plain model again."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    model.unet.fuse_lora(adapter_names=[ADAPTER])
    model.unet.unload_lora()
    for encoder in model.text_encoders:
        for name, layer in list(encoder.named_modules()):
            if isinstance(layer, BaseTunerLayer):
                layer.merge(adapter_names=[ADAPTER])
                parent, _, child = name.rpartition(".")
                setattr(encoder.get_submodule(parent), child, layer.get_base_layer())
        if hasattr(encoder, "peft_config"):  # set by inject_adapter_in_model; adapter gone
            del encoder.peft_config


@PROBES.register("lora")
@dataclass(frozen=True)
class LoRA(Probe):
    """Train LoRA adapters on UNet attention and text-encoder q/v projections, then fuse them."""

    steps: int = 100
    """optimizer steps"""
    lr: float = 1e-3
    """AdamW learning rate"""
    batch_size: int = 8
    """SP images per step"""
    rank: int = 4
    """adapter rank r (the paper's parameter-count ablation axis)"""
    alpha: float = 4.0
    """adapter scale numerator: updates are (alpha / rank)·BA"""
    name: ClassVar[str] = "lora"
    uses: ClassVar[tuple[str, ...]] = ("sp",)

    def __post_init__(self) -> None:
        check_budget(self.name, self.steps, self.lr, self.batch_size)
        check_lora(self.name, self.rank, self.alpha)

    def apply(self, model: ModelCopy, context: ProbeContext) -> ModelCopy:
        latents = sp_set(context, self.name)
        params = add_lora(model, self.rank, self.alpha, context.seed)
        config = TrainConfig(steps=self.steps, lr=self.lr, batch_size=self.batch_size,
                             seed=context.seed, device=context.device)
        report = train(model, TrainingData.captioned(latents, context.prompt), params, config)
        save_lora(model, context.save_dir)
        fuse_lora(model)
        model.trainable_parameters = count_parameters(params)
        model.details = {"trained": "LoRA on unet attention + text_encoder q/v (fused)",
                         "rank": self.rank, "alpha": self.alpha, "steps": self.steps,
                         "lr": self.lr, "batch_size": self.batch_size, "seed": context.seed,
                         "first_loss": report["first_loss"], "final_loss": report["final_loss"]}
        return model
