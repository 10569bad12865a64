"""DreamBooth (Ruiz et al. 2023) as an S2L probe: the whole UNet, with prior preservation.

The UNet's weights all train on the SP set (captioned with the domain prompt) while a second
term keeps its predictions on class-prior images (``prior_latents``, generated for
``prior_prompt``) where they were, so the copy specialises on the domain without drifting
elsewhere. The paper's strongest single method (AUC 0.712 → 0.758). Without a prior set it is
plain UNet fine-tuning, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from s2l_scan.errors import UsageError
from s2l_scan.finetune import TrainConfig, TrainingData, check_budget, count_parameters, train
from s2l_scan.probe import PROBES, ModelCopy, Probe, ProbeContext
from s2l_scan.probes.methods._inputs import prior_note, prior_set, sp_set
from s2l_scan.probes.methods.end_to_end import save_full


def check_prior_weight(who: str, prior_weight: object) -> None:
    """UsageError unless the prior-preservation weight is a number ≥ 0."""
    if isinstance(prior_weight, bool) or not isinstance(prior_weight, int | float) \
            or not prior_weight >= 0:
        raise UsageError(f"{who}: prior_weight must be a number ≥ 0, got {prior_weight!r}.")


@PROBES.register("dreambooth")
@dataclass(frozen=True)
class DreamBooth(Probe):
    """Fine-tune every UNet weight on the SP set with DreamBooth's prior-preservation loss."""

    steps: int = 100
    """optimizer steps"""
    lr: float = 1e-4
    """AdamW learning rate"""
    batch_size: int = 8
    """SP images per step (and as many prior images)"""
    prior_weight: float = 1.0
    """weight of the prior-preservation loss (DreamBooth's λ)"""
    name: ClassVar[str] = "dreambooth"
    uses: ClassVar[tuple[str, ...]] = ("sp", "prior")

    def __post_init__(self) -> None:
        check_budget(self.name, self.steps, self.lr, self.batch_size)
        check_prior_weight(self.name, self.prior_weight)

    def apply(self, model: ModelCopy, context: ProbeContext) -> ModelCopy:
        latents, prior = sp_set(context, self.name), prior_set(context, self.name)
        params = list(model.unet.parameters())
        config = TrainConfig(steps=self.steps, lr=self.lr, batch_size=self.batch_size,
                             seed=context.seed, prior_weight=self.prior_weight,
                             device=context.device)
        report = train(model, TrainingData.captioned(latents, context.prompt, prior), params,
                       config)
        save_full(model, context.save_dir, text_encoder=False)
        model.trainable_parameters = count_parameters(params)
        model.details = {"trained": "unet (all weights)", "prior_preservation": prior_note(prior),
                         "steps": self.steps, "lr": self.lr, "batch_size": self.batch_size,
                         "prior_weight": self.prior_weight, "seed": context.seed,
                         "first_loss": report["first_loss"], "final_loss": report["final_loss"]}
        return model
