"""What the fine-tuning methods read from a :class:`ProbeContext`, checked once for all of them."""

from __future__ import annotations

import torch

from s2l_scan.errors import UsageError
from s2l_scan.probe import ProbeContext


def sp_set(context: ProbeContext, who: str) -> torch.Tensor:
    """The SP-set latents, or a UsageError naming the domain when there are none."""
    if context.sp_latents.ndim != 4 or len(context.sp_latents) == 0:
        raise UsageError(f"{who}: the SP set of domain {context.domain!r} is empty (latents of "
                         f"shape {tuple(context.sp_latents.shape)}); fine-tuning needs sp_samples "
                         "≥ 1 self-generated images.")
    return context.sp_latents


def prior_set(context: ProbeContext, who: str) -> tuple[torch.Tensor, str] | None:
    """DreamBooth's (prior latents, prior prompt), or None when no prior set was generated."""
    if context.prior_latents is None or len(context.prior_latents) == 0:
        return None
    if not context.prior_prompt:
        raise UsageError(f"{who}: prior latents were given without a prior_prompt; set the class "
                         "prompt they were generated from.")
    return context.prior_latents, context.prior_prompt


def prior_note(prior: tuple[torch.Tensor, str] | None) -> str:
    """How the report describes the prior-preservation term."""
    if prior is None:
        return "off: no prior set was given, so this is plain fine-tuning"
    return f"on: {len(prior[0])} images of {prior[1]!r}"
