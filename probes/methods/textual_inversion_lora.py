"""Textual inversion + LoRA (S2L §5.2): new token embeddings and LoRA adapters train together.

The new tokens of :mod:`.textual_inversion` lead every caption (and the copy's ``caption_fn``)
while the adapters of :mod:`.lora` train beside them, each at its own learning rate; the
adapters are fused afterwards. Old embedding rows and all original weights outside the LoRA
targets stay fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from s2l_scan.errors import UsageError
from s2l_scan.finetune import TrainConfig, TrainingData, check_budget, count_parameters, train
from s2l_scan.probe import PROBES, ModelCopy, Probe, ProbeContext
from s2l_scan.probes.methods._inputs import sp_set
from s2l_scan.probes.methods.lora import add_lora, check_lora, fuse_lora, save_lora
from s2l_scan.probes.methods.textual_inversion import NewTokens, check_tokens, prefixed


@PROBES.register("textual_inversion+lora")
@dataclass(frozen=True)
class TextualInversionLoRA(Probe):
    """Train new token embeddings and LoRA adapters together, then fuse the adapters."""

    steps: int = 100
    """optimizer steps"""
    lr: float = 1e-3
    """AdamW learning rate of the LoRA adapters"""
    embedding_lr: float = 5e-3
    """AdamW learning rate of the new token embeddings"""
    batch_size: int = 8
    """SP images per step"""
    tokens: int = 1
    """number of new tokens"""
    rank: int = 4
    """adapter rank r"""
    alpha: float = 4.0
    """adapter scale numerator: updates are (alpha / rank)·BA"""
    name: ClassVar[str] = "textual_inversion+lora"
    uses: ClassVar[tuple[str, ...]] = ("sp",)
    # new tokens would have to join both SDXL tokenizers and both embedding tables
    families: ClassVar[tuple[str, ...]] = ("sd",)

    def __post_init__(self) -> None:
        check_budget(self.name, self.steps, self.lr, self.batch_size)
        if isinstance(self.embedding_lr, bool) or not isinstance(self.embedding_lr, int | float) \
                or not self.embedding_lr > 0:
            raise UsageError(f"{self.name}: embedding_lr must be a number > 0, "
                             f"got {self.embedding_lr!r}.")
        check_tokens(self.name, self.tokens)
        check_lora(self.name, self.rank, self.alpha)

    def apply(self, model: ModelCopy, context: ProbeContext) -> ModelCopy:
        latents = sp_set(context, self.name)
        new = NewTokens(model, self.tokens, context.prompt)
        adapters = add_lora(model, self.rank, self.alpha, context.seed)
        groups = [{"params": adapters, "lr": self.lr},
                  {"params": [new.weight], "lr": self.embedding_lr}]
        try:
            data = TrainingData.captioned(latents, prefixed(new.prefix, context.prompt))
            config = TrainConfig(steps=self.steps, lr=self.lr, batch_size=self.batch_size,
                                 seed=context.seed, device=context.device)
            report = train(model, data, groups, config, after_step=new.restore)
        finally:
            new.finish(model)
        save_lora(model, context.save_dir)
        new.save(context.save_dir)
        fuse_lora(model)
        model.trainable_parameters = count_parameters(adapters) + new.parameters
        model.details = {"trained": "new token embeddings + LoRA on unet attention and "
                                    "text_encoder q/v (fused)",
                         "tokens": new.names, "rank": self.rank, "alpha": self.alpha,
                         "steps": self.steps, "lr": self.lr, "embedding_lr": self.embedding_lr,
                         "batch_size": self.batch_size, "seed": context.seed,
                         "first_loss": report["first_loss"], "final_loss": report["final_loss"]}
        return model
