"""DreamBooth + LoRA (S2L §5.2): LoRA adapters trained with DreamBooth's prior preservation.

The adapters of :mod:`.lora` (UNet attention, text-encoder q/v) are the only weights that train,
on the SP set plus the prior-preservation term of :mod:`.dreambooth`; afterwards they are
fused. The paper's strongest probe overall (AUC 0.712 → 0.766).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from s2l_scan.finetune import TrainConfig, TrainingData, check_budget, count_parameters, train
from s2l_scan.probe import PROBES, ModelCopy, Probe, ProbeContext
from s2l_scan.probes.methods._inputs import prior_note, prior_set, sp_set
from s2l_scan.probes.methods.dreambooth import check_prior_weight
from s2l_scan.probes.methods.lora import add_lora, check_lora, fuse_lora, save_lora


@PROBES.register("dreambooth+lora")
@dataclass(frozen=True)
class DreamBoothLoRA(Probe):
    """Train LoRA adapters with DreamBooth's prior-preservation loss, then fuse them."""

    steps: int = 100
    """optimizer steps"""
    lr: float = 1e-3
    """AdamW learning rate"""
    batch_size: int = 8
    """SP images per step (and as many prior images)"""
    rank: int = 4
    """adapter rank r"""
    alpha: float = 4.0
    """adapter scale numerator: updates are (alpha / rank)·BA"""
    prior_weight: float = 1.0
    """weight of the prior-preservation loss (DreamBooth's λ)"""
    name: ClassVar[str] = "dreambooth+lora"
    uses: ClassVar[tuple[str, ...]] = ("sp", "prior")

    def __post_init__(self) -> None:
        check_budget(self.name, self.steps, self.lr, self.batch_size)
        check_lora(self.name, self.rank, self.alpha)
        check_prior_weight(self.name, self.prior_weight)

    def apply(self, model: ModelCopy, context: ProbeContext) -> ModelCopy:
        latents, prior = sp_set(context, self.name), prior_set(context, self.name)
        params = add_lora(model, self.rank, self.alpha, context.seed)
        config = TrainConfig(steps=self.steps, lr=self.lr, batch_size=self.batch_size,
                             seed=context.seed, prior_weight=self.prior_weight,
                             device=context.device)
        report = train(model, TrainingData.captioned(latents, context.prompt, prior), params,
                       config)
        save_lora(model, context.save_dir)
        fuse_lora(model)
        model.trainable_parameters = count_parameters(params)
        model.details = {"trained": "LoRA on unet attention + text_encoder q/v (fused)",
                         "prior_preservation": prior_note(prior), "rank": self.rank,
                         "alpha": self.alpha, "steps": self.steps, "lr": self.lr,
                         "batch_size": self.batch_size, "prior_weight": self.prior_weight,
                         "seed": context.seed, "first_loss": report["first_loss"],
                         "final_loss": report["final_loss"]}
        return model
