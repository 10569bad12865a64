"""Stage 1: audit images and captions → VAE latents and text conditioning, once per model.

Also defines :class:`Subject`, what every later stage reads: the loaded model, the audit data,
each domain's encoded samples and its blind-baseline AUC.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from s2l_scan.attack import Attack
from s2l_scan.conditioning import Conditioning, TextEncoders
from s2l_scan.io.audit_data import AuditData, Domain
from s2l_scan.io.model import LoadedModel
from s2l_scan.progress import report
from s2l_scan.units import digest


@dataclass
class Encoded:
    """One domain's members and non-members as the attacks see them."""

    members: torch.Tensor  # latents: VAE mean × scaling factor
    nonmembers: torch.Tensor
    member_cond: Conditioning  # each sample's caption, encoded (+ SDXL pooled and time ids)
    nonmember_cond: Conditioning
    member_pixels: np.ndarray  # uint8 (N, H, W, 3)
    nonmember_pixels: np.ndarray
    member_captions: list[str]
    nonmember_captions: list[str]


@dataclass
class Subject:
    """What a scan attacks: the released model, its audit data, encoded, and the blind
    baseline of each domain (and ``pooled``; empty on ranks other than 0)."""

    model: LoadedModel
    data: AuditData
    encoded: dict[str, Encoded]
    blind: dict[str, Any]  # domain or "pooled" → baselines.blind.BlindResult


def encode_images(model: LoadedModel, pixels: np.ndarray, batch: int) -> torch.Tensor:
    """uint8 images (N, H, W, 3) → latents (VAE posterior mean × scaling factor), float32.

    An SDXL VAE in float16 that asks for ``force_upcast`` (SDXL's overflows in float16) encodes
    in float32, as ``StableDiffusionXLPipeline`` decodes."""
    vae = model.pipeline.vae
    upcast = (model.family == "sdxl" and vae.dtype == torch.float16
              and bool(vae.config.get("force_upcast", False)))
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        device, dtype = vae.device, vae.dtype
        out = []
        with torch.inference_mode():
            for start in range(0, len(pixels), batch):
                chunk = torch.from_numpy(pixels[start:start + batch]).permute(0, 3, 1, 2)
                chunk = (chunk.to(device=device, dtype=torch.float32) / 127.5 - 1.0).to(dtype)
                mean = vae.encode(chunk).latent_dist.mean
                out.append(mean.float() * float(vae.config.scaling_factor))
    finally:
        if upcast:
            vae.to(dtype=torch.float16)
    return torch.cat(out)


def null_conditioning(encoders: TextEncoders, size: tuple[int, int]) -> Conditioning:
    """The empty prompt's conditioning (one row): what ε(x_t, ∅) is conditioned on, for
    images of ``size`` = (H, W) pixels (SDXL's time ids)."""
    return encoders.encode([""], size)


def perturbed_conditionings(attacks: Sequence[Attack], encoders: TextEncoders,
                            captions: Sequence[str], size: tuple[int, int]
                            ) -> dict[str, tuple[Conditioning, ...]]:
    """Each caption-perturbing attack's perturbed captions (:meth:`Attack.perturbed_captions`)
    of one sample set, encoded, by attack name; {} when no attack perturbs captions."""
    def encode(texts: Sequence[str]) -> Conditioning:
        return encoders.encode(list(texts), size)

    out = {}
    for attack in attacks:
        lists = attack.perturbed_captions(captions, encode)
        if lists:
            out[attack.name] = tuple(encode(texts) for texts in lists)
    return out


def encode_caption_pair(encoders: TextEncoders, first: list[str], second: list[str],
                        size: tuple[int, int]) -> tuple[Conditioning, Conditioning]:
    """Two caption lists through one text-encoder pass over their distinct captions, for
    images of ``size`` = (H, W) pixels (SDXL's time ids)."""
    both = encoders.encode(first + second, size)
    return both[:len(first)], both[len(first):]


def image_size(pixels: np.ndarray) -> tuple[int, int]:
    """(H, W) of uint8 images (N, H, W, 3)."""
    return int(pixels.shape[1]), int(pixels.shape[2])


def encode_domain(model: LoadedModel, domain: Domain, batch: int) -> Encoded:
    """A domain's members and non-members, encoded (no caching)."""
    members = np.stack([image.pixels for image in domain.members])
    nonmembers = np.stack([image.pixels for image in domain.nonmembers])
    member_captions = [image.caption for image in domain.members]
    nonmember_captions = [image.caption for image in domain.nonmembers]
    encoders = TextEncoders.of(model.pipeline)
    return Encoded(
        members=encode_images(model, members, batch),
        nonmembers=encode_images(model, nonmembers, batch),
        member_cond=encoders.encode(member_captions, image_size(members)),
        nonmember_cond=encoders.encode(nonmember_captions, image_size(nonmembers)),
        member_pixels=members, nonmember_pixels=nonmembers,
        member_captions=member_captions, nonmember_captions=nonmember_captions,
    )


class EncodingCache:
    """Encoded domains per (model hash, device, dtype, domain content), bounded: a process that
    scans the same model again (pytest sessions, benchmarks, sweeps) encodes each image once."""

    def __init__(self, limit: int = 64) -> None:
        self._limit = limit
        self._items: OrderedDict[tuple[str, ...], Encoded] = OrderedDict()

    def get(self, model: LoadedModel, domain: Domain, batch: int) -> Encoded:
        content = digest(domain.prompt, [image.caption for image in domain.members],
                         [image.caption for image in domain.nonmembers],
                         *(image.pixels for image in (*domain.members, *domain.nonmembers)))
        vae = model.pipeline.vae
        key = (model.model_hash, str(vae.device), str(vae.dtype), content)
        if key not in self._items:
            if len(self._items) >= self._limit:
                self._items.popitem(last=False)
            self._items[key] = encode_domain(model, domain, batch)
        return self._items[key]


ENCODINGS = EncodingCache()
"""This process's cache of encoded domains."""


def encode_subject(model: LoadedModel, data: AuditData, batch: int, seed: int,
                   with_blind: bool = True) -> Subject:
    """Every domain encoded (through :data:`ENCODINGS`), with its blind baseline when asked
    (rank 0 of a data-parallel scan; the others never report)."""
    encoded = {}
    report("encoding the audit images (domains)", 0, len(data.domains))
    for done, domain in enumerate(data.domains, 1):
        encoded[domain.name] = ENCODINGS.get(model, domain, batch)
        report("encoding the audit images (domains)", done, len(data.domains))
    return Subject(model, data, encoded, blind_baselines(encoded, seed) if with_blind else {})


def blind_baselines(encoded: dict[str, Encoded], seed: int) -> dict[str, Any]:
    """The blind baseline per domain and ``pooled``: a model-free classifier of members against
    non-members on pixels, high frequencies, colour and captions (the distribution-shift
    control), as :class:`~s2l_scan.baselines.blind.BlindResult` with its CI."""
    from s2l_scan.baselines.blind import blind_baseline

    def blind(parts: list[Encoded]) -> Any:
        return blind_baseline(
            np.concatenate([e.member_pixels for e in parts]),
            np.concatenate([e.nonmember_pixels for e in parts]),
            member_captions=[c for e in parts for c in e.member_captions],
            nonmember_captions=[c for e in parts for c in e.nonmember_captions], seed=seed)

    stage, total = "blind baseline (domains + pooled)", len(encoded) + 1
    report(stage, 0, total)
    results = {}
    for done, (name, enc) in enumerate(encoded.items(), 1):
        results[name] = blind([enc])
        report(stage, done, total)
    results["pooled"] = blind(list(encoded.values()))
    report(stage, total, total)
    return results
