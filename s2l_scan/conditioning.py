"""Text conditioning of a UNet, for every model family s2l-scan scans.

SD-1.x / SD-2.x condition the UNet on one text encoder's last hidden states. SDXL conditions
it on two encoders' penultimate hidden states, concatenated, plus ``added_cond_kwargs``: the
second encoder's pooled, projected embedding (``text_embeds``) and six ``time_ids`` (original
size, crop top-left, target size). :class:`Conditioning` carries all three per sample, so that
batching, slicing and moving stay one operation whatever the family, and the pure maths in
:mod:`s2l_scan.functional.diffusion` passes it through untouched. :class:`TextEncoders` encodes
captions exactly as the family's own diffusers pipeline does (``encode_prompt``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

FAMILIES = ("sd", "sdxl")
"""Model families: ``sd`` (SD-1.x / SD-2.x: one CLIP text encoder) and ``sdxl`` (two text
encoders, pooled embeddings, ``add_time_ids``)."""


def expand_embedding_tokens(caption: str, tokenizer: Any) -> str:
    """``tok`` → ``tok tok_1 tok_2`` for a textual inversion of several vectors (diffusers'
    ``TextualInversionLoaderMixin.maybe_convert_prompt``, which its pipelines apply to every
    prompt); captions without such tokens are returned unchanged."""
    added = getattr(tokenizer, "added_tokens_encoder", {}) or {}
    if not any(token.endswith("_1") for token in added):
        return caption
    for token in sorted(set(tokenizer.tokenize(caption))):
        if token in added and f"{token}_1" in added:
            count = 1
            while f"{token}_{count}" in added:
                count += 1
            caption = caption.replace(token, " ".join(
                [token] + [f"{token}_{i}" for i in range(1, count)]))
    return caption


@dataclass(frozen=True, eq=False)  # eq=False: tensors do not compare to one bool
class Conditioning:
    """Per-sample UNet conditioning: hidden states, and SDXL's pooled embeddings and time ids.

    ``pooled`` and ``time_ids`` are both given (SDXL) or both None (SD-1.x / SD-2.x). Indexing,
    :meth:`to` and :meth:`cat` act on every tensor alike, along the sample axis.

    >>> cond = Conditioning(torch.zeros(4, 77, 32))
    >>> len(cond[1:3]), cond.pooled is None
    (2, True)
    """

    hidden: torch.Tensor
    """(N, L, D) ``encoder_hidden_states``"""
    pooled: torch.Tensor | None = None
    """(N, P) SDXL ``text_embeds``: text_encoder_2's pooled, projected output"""
    time_ids: torch.Tensor | None = None
    """(N, 6) SDXL ``time_ids``: (orig_h, orig_w, crop_top, crop_left, target_h, target_w)"""

    def __post_init__(self) -> None:
        if (self.pooled is None) != (self.time_ids is None):
            raise ValueError("SDXL conditioning needs both pooled text embeddings and time ids "
                             "(or neither, for SD-1.x / SD-2.x)")
        for name, tensor in (("pooled", self.pooled), ("time_ids", self.time_ids)):
            if tensor is not None and (tensor.ndim != 2 or len(tensor) != len(self.hidden)):
                raise ValueError(f"{name} must be (N, d) with N = {len(self.hidden)} samples, "
                                 f"got shape {tuple(tensor.shape)}")

    @property
    def family(self) -> str:
        """``sdxl`` when it carries pooled embeddings and time ids, else ``sd``."""
        return "sd" if self.pooled is None else "sdxl"

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The tensors it holds, in a fixed order (hidden states alone for SD: a digest of
        them is the digest of the hidden states, as before conditioning had a type)."""
        return tuple(t for t in (self.hidden, self.pooled, self.time_ids) if t is not None)

    def __len__(self) -> int:
        return len(self.hidden)

    def __getitem__(self, index: slice | torch.Tensor) -> Conditioning:
        def pick(tensor: torch.Tensor | None) -> torch.Tensor | None:
            if tensor is None:
                return None
            return tensor[index.to(tensor.device) if isinstance(index, torch.Tensor) else index]

        hidden = pick(self.hidden)
        assert hidden is not None
        return Conditioning(hidden, pick(self.pooled), pick(self.time_ids))

    def to(self, *args: Any, **kwargs: Any) -> Conditioning:
        """Every tensor moved / cast, as ``torch.Tensor.to``."""
        def move(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.to(*args, **kwargs)

        return Conditioning(self.hidden.to(*args, **kwargs), move(self.pooled),
                            move(self.time_ids))

    @staticmethod
    def cat(parts: Sequence[Conditioning]) -> Conditioning:
        """Several conditionings end to end (all of one family)."""
        if not parts or len({part.family for part in parts}) != 1:
            raise ValueError("cat needs at least one conditioning, all of one family")

        def joined(name: str) -> torch.Tensor | None:
            tensors = [getattr(part, name) for part in parts]
            return None if tensors[0] is None else torch.cat(tensors)

        return Conditioning(torch.cat([part.hidden for part in parts]), joined("pooled"),
                            joined("time_ids"))

    def unet_kwargs(self, dtype: torch.dtype) -> dict[str, Any]:
        """Keyword arguments of ``UNet2DConditionModel.forward`` for this conditioning."""
        kwargs: dict[str, Any] = {"encoder_hidden_states": self.hidden.to(dtype)}
        if self.pooled is not None and self.time_ids is not None:
            kwargs["added_cond_kwargs"] = {"text_embeds": self.pooled.to(dtype),
                                           "time_ids": self.time_ids.to(dtype)}
        return kwargs


def as_conditioning(cond: torch.Tensor | Conditioning) -> Conditioning:
    """``cond`` as a :class:`Conditioning` (a bare tensor is SD hidden states)."""
    return cond if isinstance(cond, Conditioning) else Conditioning(cond)


def time_ids(height: int, width: int) -> tuple[int, ...]:
    """SDXL's ``add_time_ids`` for images of ``height`` × ``width`` pixels, neither resized
    nor cropped: (orig_h, orig_w, crop_top, crop_left, target_h, target_w), the values
    ``StableDiffusionXLPipeline`` uses by default when generating at that size (the audit
    images are scored at the size the model is sampled at)."""
    return (height, width, 0, 0, height, width)


@dataclass(frozen=True)
class TextEncoders:
    """A model's tokenizers and text encoders: one of each (SD) or two (SDXL)."""

    tokenizers: tuple[Any, ...]
    encoders: tuple[Any, ...]

    @classmethod
    def of(cls, model: Any) -> TextEncoders:
        """The tokenizers and encoders of a pipeline or a probe's model copy
        (``tokenizer``/``text_encoder``, and ``tokenizer_2``/``text_encoder_2`` when set)."""
        second = getattr(model, "text_encoder_2", None)
        if second is None:
            return cls((model.tokenizer,), (model.text_encoder,))
        return cls((model.tokenizer, model.tokenizer_2), (model.text_encoder, second))

    @property
    def family(self) -> str:
        """``sd`` (one encoder) or ``sdxl`` (two)."""
        return "sd" if len(self.encoders) == 1 else "sdxl"

    def tokenize(self, captions: Sequence[str], device: torch.device | str
                 ) -> tuple[torch.Tensor, ...]:
        """Token ids of ``captions`` per tokenizer, padded to its ``model_max_length``; a
        multi-vector textual-inversion token is spelled out as diffusers' pipelines do."""
        return tuple(tokenizer([expand_embedding_tokens(c, tokenizer) for c in captions],
                               padding="max_length",
                               max_length=tokenizer.model_max_length, truncation=True,
                               return_tensors="pt").input_ids.to(device)
                     for tokenizer in self.tokenizers)

    def encode_ids(self, ids: Sequence[torch.Tensor], size: tuple[int, int], *,
                   grad: bool = False) -> Conditioning:
        """Conditioning of token ids (one tensor per tokenizer) for images of ``size`` = (H, W)
        pixels, float32; as ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline``'s
        ``encode_prompt`` without classifier-free guidance or clip skip."""
        with torch.set_grad_enabled(grad):
            if self.family == "sd":
                return Conditioning(self.encoders[0](ids[0])[0].float())
            hidden, pooled = [], None
            for encoder, tokens in zip(self.encoders, ids, strict=True):
                out = encoder(tokens, output_hidden_states=True)
                if out[0].ndim == 2:  # the projection model: its pooled, projected embedding
                    pooled = out[0]
                hidden.append(out.hidden_states[-2])  # SDXL reads the penultimate layer
            if pooled is None:
                raise ValueError("SDXL conditioning needs a text encoder with a projection "
                                 "(CLIPTextModelWithProjection) as text_encoder_2")
            ids_row = torch.tensor([time_ids(*size)], dtype=torch.float32, device=pooled.device)
            return Conditioning(torch.cat(hidden, dim=-1).float(), pooled.float(),
                                ids_row.expand(len(pooled), -1))

    def encode(self, captions: Sequence[str], size: tuple[int, int]) -> Conditioning:
        """One encoder pass over the distinct captions; a row per caption, in order."""
        unique = sorted(set(captions))
        device = self.encoders[0].device
        with torch.inference_mode():
            embedded = self.encode_ids(self.tokenize(unique, device), size)
        position = {caption: i for i, caption in enumerate(unique)}
        return embedded[torch.tensor([position[c] for c in captions])]
