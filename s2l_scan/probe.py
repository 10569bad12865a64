"""What every S2L probe is: a named way to shake a *copy* of the model (README, probes).

A probe receives a :class:`ModelCopy` (deep copies of the UNet and text encoder, the shared
frozen VAE, tokenizer and scheduler) and a :class:`ProbeContext` (the domain prompt and the
SP set, already encoded to latents), and returns the shaken copy. It must never modify the
released model: the session hands it copies, and a contract test checks the originals are
untouched. Fine-tuning probes live in ``probes/methods/`` (one file each) and noise shaking in
``probes/noise.py``; all register in :data:`PROBES`.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from s2l_scan.conditioning import FAMILIES
from s2l_scan.errors import UsageError
from s2l_scan.registry import Registry


def _same(caption: str) -> str:
    return caption


@dataclass
class ModelCopy:
    """The parts of a pipeline a probe may change, plus how captions must be written for it."""

    unet: Any  # diffusers.UNet2DConditionModel (a private copy)
    text_encoder: Any  # transformers.CLIPTextModel (a private copy)
    tokenizer: Any  # a private copy (textual inversion adds tokens)
    vae: Any  # shared and frozen: probes never train it
    scheduler: Any  # the pipeline's scheduler (its alphas_cumprod define the noise schedule)
    text_encoder_2: Any = None  # SDXL: transformers.CLIPTextModelWithProjection (a copy)
    tokenizer_2: Any = None  # SDXL: its tokenizer (a private copy)
    caption_fn: Callable[[str], str] = _same  # e.g. textual inversion adds its new tokens
    trainable_parameters: int = 0  # reported: the paper's ablation axis
    details: dict[str, Any] = field(default_factory=dict)  # settings and results for the report

    @classmethod
    def of(cls, pipeline: Any) -> ModelCopy:
        """Private copies of a loaded pipeline's UNet, text encoder(s) and tokenizer(s)."""
        second = getattr(pipeline, "text_encoder_2", None)
        return cls(unet=copy.deepcopy(pipeline.unet),
                   text_encoder=copy.deepcopy(pipeline.text_encoder),
                   tokenizer=copy.deepcopy(pipeline.tokenizer), vae=pipeline.vae,
                   scheduler=pipeline.scheduler,
                   text_encoder_2=None if second is None else copy.deepcopy(second),
                   tokenizer_2=None if second is None else copy.deepcopy(pipeline.tokenizer_2))

    @property
    def family(self) -> str:
        """``sd`` (one text encoder) or ``sdxl`` (two)."""
        return "sd" if self.text_encoder_2 is None else "sdxl"

    @property
    def text_encoders(self) -> list[Any]:
        """The copy's text encoders (one, or two for SDXL)."""
        return [e for e in (self.text_encoder, self.text_encoder_2) if e is not None]


@dataclass(frozen=True)
class ProbeContext:
    """What a probe may use: the domain, its SP set and budgets."""

    domain: str
    prompt: str  # the domain prompt; SP-set captions
    sp_latents: torch.Tensor  # (N, C, h, w): the SP set, VAE mean × scaling factor
    ood_latents: torch.Tensor | None = None  # generations for an out-of-domain prompt (controls)
    ood_prompt: str = ""
    prior_latents: torch.Tensor | None = None  # class-prior images (DreamBooth prior loss)
    prior_prompt: str = ""
    seed: int = 0
    device: str = "cpu"
    save_dir: str | None = None  # where a probe may save what it trained, for inspection


class Probe(ABC):
    """An S2L probe. Subclasses set ``name`` and implement :meth:`apply`."""

    name: ClassVar[str]
    # Which generated sets the probe trains on: "sp" (the SP set), "ood" (out-of-domain
    # generations) and/or "prior" (class-prior images); the session generates only these.
    uses: ClassVar[tuple[str, ...]] = ("sp",)
    # The model families it can shake (s2l_scan.conditioning.FAMILIES); a scan of another
    # family refuses the probe by name before any model work.
    families: ClassVar[tuple[str, ...]] = FAMILIES

    def check_family(self, family: str) -> None:
        """A usage error naming the probe when it cannot shake a model of ``family``."""
        if family not in self.families:
            raise UsageError(
                f"probe {self.name!r} does not support {family.upper()} models yet (it supports "
                f"{', '.join(f.upper() for f in self.families)}); leave it out of `probes` for "
                f"this model. Probes for {family.upper()}: "
                f"{', '.join(supported_probes(family))}.")

    def describe(self) -> dict[str, Any]:
        """The probe's settings for the report (dataclass probes return their fields)."""
        from dataclasses import asdict, is_dataclass

        return asdict(self) if is_dataclass(self) else {}

    @abstractmethod
    def apply(self, model: ModelCopy, context: ProbeContext) -> ModelCopy:
        """Shake ``model`` (a private copy) and return it; never touch anything else."""


PROBES: Registry[type[Probe]] = Registry("probe", entry_point_group="s2l_scan.probes")


def supported_probes(family: str) -> list[str]:
    """The registered probes that can shake a model of ``family``."""
    return [name for name in PROBES.names() if family in PROBES.get(name).families]
