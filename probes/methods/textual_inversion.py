"""Textual inversion (Gal et al. 2023) as an S2L probe: only new token embeddings train.

``tokens`` new tokens (``<s2l-0>``, ``<s2l-1>``, ...) join the copy's tokenizer and the copy's
text encoder gets one new embedding row each, initialised to the mean embedding of the domain
prompt's tokens. Training captions are ``"<s2l-0> ... {prompt}"``, and the copy's
``caption_fn`` writes the attacks' captions the same way. The old rows get no gradient and are
restored after every step (AdamW's weight decay would otherwise shrink them), so nothing but
the new rows changes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from s2l_scan.errors import UsageError
from s2l_scan.finetune import TrainConfig, TrainingData, check_budget, train
from s2l_scan.probe import PROBES, ModelCopy, Probe, ProbeContext
from s2l_scan.probes.methods._inputs import sp_set

TOKEN_FORMAT = "<s2l-{index}>"
"""Names of the new tokens."""


def check_tokens(who: str, tokens: object) -> None:
    """UsageError unless the token count is an integer ≥ 1."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise UsageError(f"{who}: tokens must be an integer ≥ 1, got {tokens!r}.")


def prefixed(prefix: str, caption: str) -> str:
    """``caption`` with the learned tokens in front: how the copy must be prompted."""
    return f"{prefix} {caption}"


class NewTokens:
    """New embedding rows in a copy's text encoder, trainable while the old rows stay fixed."""

    def __init__(self, model: ModelCopy, count: int, prompt: str) -> None:
        self.names = [TOKEN_FORMAT.format(index=i) for i in range(count)]
        tokenizer, encoder = model.tokenizer, model.text_encoder
        clash = [name for name in self.names if name in tokenizer.get_vocab()]
        if clash:
            raise UsageError(f"textual inversion: the tokenizer already holds {clash}; apply "
                             "the probe to a fresh ModelCopy, not to one it already shook.")
        self.old_rows = len(tokenizer)
        tokenizer.add_tokens(self.names)
        # mean_resizing would draw the new rows from the global RNG; they are set just below.
        encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        self.weight: torch.Tensor = encoder.get_input_embeddings().weight
        self.frozen = self.weight[:self.old_rows].detach().clone()
        prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
        with torch.no_grad():
            start = self.frozen[prompt_ids] if prompt_ids else self.frozen
            self.weight[self.old_rows:] = start.mean(0)
        mask = torch.zeros(len(tokenizer), 1, dtype=self.weight.dtype, device=self.weight.device)
        mask[self.old_rows:] = 1.0
        # The old rows get no gradient, so the clipped norm and Adam's moments see only new rows.
        self.weight.requires_grad_(True)  # a hook needs it; the loop sets it again anyway
        self._hook = self.weight.register_hook(lambda grad: grad * mask)

    @property
    def parameters(self) -> int:
        """Trainable scalars: the new rows only, not the whole embedding matrix."""
        return len(self.names) * int(self.weight.shape[1])

    @property
    def prefix(self) -> str:
        """The new tokens, space-separated, as they lead every caption."""
        return " ".join(self.names)

    def restore(self) -> None:
        """Put the old rows back (after each optimizer step: weight decay moved them)."""
        with torch.no_grad():
            self.weight[:self.old_rows] = self.frozen

    def finish(self, model: ModelCopy) -> None:
        """Remove the gradient hook and make the copy's captions carry the new tokens."""
        self._hook.remove()
        model.caption_fn = functools.partial(prefixed, self.prefix)

    def save(self, save_dir: str | None) -> None:
        """Save ``{token: embedding}`` as ``learned_embeds.safetensors`` in ``save_dir``."""
        if save_dir is None:
            return
        from safetensors.torch import save_file

        rows: dict[str, Any] = {name: self.weight[self.old_rows + i].detach().cpu().clone()
                                for i, name in enumerate(self.names)}
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        save_file(rows, Path(save_dir) / "learned_embeds.safetensors")


@PROBES.register("textual_inversion")
@dataclass(frozen=True)
class TextualInversion(Probe):
    """Learn new token embeddings that lead every SP caption; nothing else trains."""

    steps: int = 100
    """optimizer steps"""
    lr: float = 5e-3
    """AdamW learning rate"""
    batch_size: int = 8
    """SP images per step"""
    tokens: int = 1
    """number of new tokens (the paper's parameter-count ablation axis)"""
    name: ClassVar[str] = "textual_inversion"
    uses: ClassVar[tuple[str, ...]] = ("sp",)
    # new tokens would have to join both SDXL tokenizers and both embedding tables
    families: ClassVar[tuple[str, ...]] = ("sd",)

    def __post_init__(self) -> None:
        check_budget(self.name, self.steps, self.lr, self.batch_size)
        check_tokens(self.name, self.tokens)

    def apply(self, model: ModelCopy, context: ProbeContext) -> ModelCopy:
        latents = sp_set(context, self.name)
        new = NewTokens(model, self.tokens, context.prompt)
        try:
            data = TrainingData.captioned(latents, prefixed(new.prefix, context.prompt))
            config = TrainConfig(steps=self.steps, lr=self.lr, batch_size=self.batch_size,
                                 seed=context.seed, device=context.device)
            report = train(model, data, [new.weight], config, after_step=new.restore)
        finally:
            new.finish(model)
        new.save(context.save_dir)
        model.trainable_parameters = new.parameters
        model.details = {"trained": "text_encoder: new token embeddings only",
                         "tokens": new.names, "steps": self.steps, "lr": self.lr,
                         "batch_size": self.batch_size, "seed": context.seed,
                         "first_loss": report["first_loss"], "final_loss": report["final_loss"]}
        return model
