"""End-to-end fine-tuning (S2L §5.2): every UNet and text-encoder weight trains on the SP set.

The paper's plainest probe: the copy sees the N images the model generated for the domain
prompt, captioned with that prompt, and all of its weights move. Its control,
``end_to_end_ood`` (:mod:`.end_to_end_ood`), runs the same recipe on out-of-domain generations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from s2l_scan.finetune import TrainConfig, TrainingData, check_budget, count_parameters, train
from s2l_scan.probe import PROBES, ModelCopy, Probe, ProbeContext
from s2l_scan.probes.methods._inputs import sp_set


def finetune_all(model: ModelCopy, latents: torch.Tensor, prompt: str,
                 config: TrainConfig) -> dict[str, Any]:
    """Train every UNet and text-encoder weight (SDXL: both encoders') of ``model`` on
    ``latents`` captioned ``prompt``."""
    params = [*model.unet.parameters(),
              *(p for encoder in model.text_encoders for p in encoder.parameters())]
    report = train(model, TrainingData.captioned(latents, prompt), params, config)
    model.trainable_parameters = count_parameters(params)
    return report


def save_full(model: ModelCopy, save_dir: str | None, *, text_encoder: bool) -> None:
    """Save the trained UNet (and text encoder) as diffusers/transformers safetensors folders."""
    if save_dir is None:
        return
    model.unet.save_pretrained(Path(save_dir) / "unet", safe_serialization=True)
    if text_encoder:
        model.text_encoder.save_pretrained(Path(save_dir) / "text_encoder",
                                           safe_serialization=True)
        if model.text_encoder_2 is not None:
            model.text_encoder_2.save_pretrained(Path(save_dir) / "text_encoder_2",
                                                 safe_serialization=True)


@PROBES.register("end_to_end")
@dataclass(frozen=True)
class EndToEnd(Probe):
    """Fine-tune all UNet and text-encoder weights on the SP set, captioned with the prompt."""

    steps: int = 100
    """optimizer steps"""
    lr: float = 1e-4
    """AdamW learning rate"""
    batch_size: int = 8
    """SP images per step"""
    name: ClassVar[str] = "end_to_end"
    uses: ClassVar[tuple[str, ...]] = ("sp",)

    def __post_init__(self) -> None:
        check_budget(self.name, self.steps, self.lr, self.batch_size)

    def apply(self, model: ModelCopy, context: ProbeContext) -> ModelCopy:
        config = TrainConfig(steps=self.steps, lr=self.lr, batch_size=self.batch_size,
                             seed=context.seed, device=context.device)
        report = finetune_all(model, sp_set(context, self.name), context.prompt, config)
        save_full(model, context.save_dir, text_encoder=True)
        model.details = {"trained": "unet+text_encoder (all weights)", "data": "sp",
                         "steps": self.steps, "lr": self.lr, "batch_size": self.batch_size,
                         "seed": context.seed, "first_loss": report["first_loss"],
                         "final_loss": report["final_loss"]}
        return model
