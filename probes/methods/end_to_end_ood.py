"""The control of end-to-end fine-tuning (S2L §5.2): the same recipe on out-of-domain images.

If fine-tuning on *any* self-generated images raised the attacks' AUC, the SP set would not be
what leaks. This probe trains exactly like ``end_to_end`` but on generations for
``ood_prompt``, captioned with it; the paper finds AUC falls (0.712 → 0.682) where the SP set
raises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from s2l_scan.errors import UsageError
from s2l_scan.finetune import TrainConfig, check_budget
from s2l_scan.probe import PROBES, ModelCopy, Probe, ProbeContext
from s2l_scan.probes.methods.end_to_end import finetune_all, save_full


@PROBES.register("end_to_end_ood")
@dataclass(frozen=True)
class EndToEndOOD(Probe):
    """Fine-tune all UNet and text-encoder weights on out-of-domain generations (control)."""

    steps: int = 100
    """optimizer steps"""
    lr: float = 1e-4
    """AdamW learning rate"""
    batch_size: int = 8
    """OOD images per step"""
    name: ClassVar[str] = "end_to_end_ood"
    uses: ClassVar[tuple[str, ...]] = ("ood",)

    def __post_init__(self) -> None:
        check_budget(self.name, self.steps, self.lr, self.batch_size)

    def apply(self, model: ModelCopy, context: ProbeContext) -> ModelCopy:
        if context.ood_latents is None or len(context.ood_latents) == 0:
            raise UsageError(f"{self.name}: no out-of-domain set was given (ood_latents is "
                             f"{'empty' if context.ood_latents is not None else 'None'}); it "
                             "needs generations for ood_prompt.")
        if not context.ood_prompt:
            raise UsageError(f"{self.name}: ood_prompt is empty; set the out-of-domain prompt.")
        config = TrainConfig(steps=self.steps, lr=self.lr, batch_size=self.batch_size,
                             seed=context.seed, device=context.device)
        report = finetune_all(model, context.ood_latents, context.ood_prompt, config)
        save_full(model, context.save_dir, text_encoder=True)
        model.details = {"trained": "unet+text_encoder (all weights)", "data": "ood",
                         "ood_prompt": context.ood_prompt, "steps": self.steps, "lr": self.lr,
                         "batch_size": self.batch_size, "seed": context.seed,
                         "first_loss": report["first_loss"], "final_loss": report["final_loss"]}
        return model
