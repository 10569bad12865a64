"""DreamBooth + hypernetwork (S2L §5.2): cross-attention MLPs trained with prior preservation.

The residual MLPs of :mod:`.hypernetwork` are the only weights that train, on the SP set plus
the prior-preservation term of :mod:`.dreambooth`; they stay installed in the copy's
cross-attention processors. Paper: AUC 0.712 → 0.747.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from s2l_scan.finetune import TrainConfig, TrainingData, check_budget, count_parameters, train
from s2l_scan.probe import PROBES, ModelCopy, Probe, ProbeContext
from s2l_scan.probes.methods._inputs import prior_note, prior_set, sp_set
from s2l_scan.probes.methods.dreambooth import check_prior_weight
from s2l_scan.probes.methods.hypernetwork import (
    add_hypernetwork,
    check_hidden,
    hypernetwork_parameters,
    save_hypernetwork,
)


@PROBES.register("dreambooth+hypernetwork")
@dataclass(frozen=True)
class DreamBoothHypernetwork(Probe):
    """Train cross-attention hypernetwork MLPs with DreamBooth's prior-preservation loss."""

    steps: int = 100
    """optimizer steps"""
    lr: float = 1e-3
    """AdamW learning rate"""
    batch_size: int = 8
    """SP images per step (and as many prior images)"""
    hidden: int = 64
    """hidden width of each MLP"""
    prior_weight: float = 1.0
    """weight of the prior-preservation loss (DreamBooth's λ)"""
    name: ClassVar[str] = "dreambooth+hypernetwork"
    uses: ClassVar[tuple[str, ...]] = ("sp", "prior")

    def __post_init__(self) -> None:
        check_budget(self.name, self.steps, self.lr, self.batch_size)
        check_hidden(self.name, self.hidden)
        check_prior_weight(self.name, self.prior_weight)

    def apply(self, model: ModelCopy, context: ProbeContext) -> ModelCopy:
        latents, prior = sp_set(context, self.name), prior_set(context, self.name)
        processors = add_hypernetwork(model.unet, self.hidden, context.seed)
        params = hypernetwork_parameters(processors)
        config = TrainConfig(steps=self.steps, lr=self.lr, batch_size=self.batch_size,
                             seed=context.seed, prior_weight=self.prior_weight,
                             device=context.device)
        report = train(model, TrainingData.captioned(latents, context.prompt, prior), params,
                       config)
        save_hypernetwork(processors, context.save_dir)
        model.trainable_parameters = count_parameters(params)
        model.details = {"trained": "hypernetwork MLPs on cross-attention key/value context",
                         "prior_preservation": prior_note(prior), "hidden": self.hidden,
                         "context_widths": sorted(processors), "steps": self.steps,
                         "lr": self.lr, "batch_size": self.batch_size,
                         "prior_weight": self.prior_weight, "seed": context.seed,
                         "first_loss": report["first_loss"], "final_loss": report["final_loss"]}
        return model
