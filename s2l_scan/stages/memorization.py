"""Prompt-level memorization, with no known training image: Wen et al.'s text-guidance
magnitude and Carlini et al.'s clique of near-copy generations, per prompt (each domain's
prompt and every distinct caption of its audit images).

Measures only (like every stage). A record says, per prompt, the magnitude and whether it is
above ``threshold`` (Wen), and the largest clique of mutual near-copies among ``count``
generations and whether it reaches ``min_clique`` (Carlini: "likely memorized generations"),
with a picture of the clique when ``evidence_dir`` is given.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2l_scan.attack import Target
from s2l_scan.conditioning import TextEncoders
from s2l_scan.config import WEN_GRID_STEPS, ScanConfig
from s2l_scan.functional.memorization import (
    largest_clique,
    near_copy_graph,
    text_guidance_magnitude,
)
from s2l_scan.generation import SamplerSettings, generate_images, image_seed
from s2l_scan.io.audit_data import AuditData
from s2l_scan.io.model import LoadedModel, usable_timesteps
from s2l_scan.report.model import MemorizationRecord
from s2l_scan.stages.baselines import alphas
from s2l_scan.stages.encode import null_conditioning
from s2l_scan.stages.extraction import generation_key, sampler
from s2l_scan.units import Arrays, UnitStore, unit_key


@dataclass(frozen=True)
class MemorizationSettings:
    """How prompts are probed for memorization."""

    starts: int = 8  # Wen: seeded starting noises per prompt
    sampler_steps: int = WEN_GRID_STEPS  # the DDIM grid whose first steps Wen reads
    detect_steps: int = 1  # Wen: first steps averaged (the paper: 1 already separates)
    guidance: float = 7.0
    threshold: float | None = None  # Wen: flag a prompt above this magnitude (None: report)
    generations: int = 0  # Carlini: images per prompt (0: off; the paper: 500)
    delta: float = 0.1  # Carlini: near-copy RMS distance of [0, 1] pixels
    tiles: int = 4  # Carlini: tiled ℓ2, tiles × tiles patches
    min_clique: int = 10  # Carlini: clique size that flags a prompt
    seed: int = 0
    # Carlini: how the generations are sampled (the scan's extraction sampler)
    generation: SamplerSettings = field(default_factory=SamplerSettings)


@dataclass
class PromptMemorization:
    """One prompt's memorization measurements."""

    domain: str
    prompt: str
    source: str  # "prompt" (the domain's) or "caption"
    magnitude: float  # Wen: mean over starts of the text-guidance magnitude
    magnitudes: list[float]
    flagged_magnitude: bool | None  # None without a threshold
    clique: list[int] = field(default_factory=list)  # Carlini: generation indices
    flagged_clique: bool | None = None  # None with generations off
    evidence: str | None = None


def prompts_of(data: AuditData) -> list[tuple[str, str, str]]:
    """(domain, prompt, source) for every domain prompt and distinct other caption."""
    out: list[tuple[str, str, str]] = []
    for domain in data.domains:
        out.append((domain.name, domain.prompt, "prompt"))
        captions = {image.caption for image in (*domain.members, *domain.nonmembers)}
        out += [(domain.name, c, "caption") for c in sorted(captions - {domain.prompt})]
    return out


def run_memorization(model: LoadedModel, prompts: list[tuple[str, str, str]],
                     settings: MemorizationSettings, evidence_dir: Path | None = None,
                     store: UnitStore | None = None) -> list[PromptMemorization]:
    """Wen's magnitude (and Carlini's clique when ``settings.generations``) per prompt.

    With a ``store``, each prompt's per-start magnitudes are one unit (kind
    ``memorization-wen``, :func:`wen_key`) and its clique generations another (kind
    ``generated``, :func:`clique_generation_key`: the very unit of extraction's generations
    when the prompt, count and sampler match), so a rescan with the same settings runs no
    model forward for them; only the cheap clique search is redone."""
    store = UnitStore(None) if store is None else store
    wen = _WenReader(model, settings)
    records: list[PromptMemorization] = []
    for domain, prompt, source in prompts:
        per_start = store.get_or_compute("memorization-wen", wen_key(model, prompt, settings),
                                         functools.partial(wen.unit, prompt))[0]["per_start"]
        magnitude = float(per_start.mean())
        record = PromptMemorization(
            domain, prompt, source, magnitude, [float(m) for m in per_start],
            None if settings.threshold is None else magnitude > settings.threshold)
        if settings.generations:
            stream = clique_stream(domain, prompt, source)
            images = store.get_or_compute(
                "generated", clique_generation_key(model, prompt, stream, settings),
                functools.partial(_clique_unit, model, prompt, stream, settings))[0]["images"]
            clique = largest_clique(near_copy_graph(images, settings.delta, settings.tiles))
            record.clique = clique
            record.flagged_clique = len(clique) >= settings.min_clique
            if evidence_dir is not None and record.flagged_clique:
                record.evidence = str(_clique_picture(images[clique], evidence_dir,
                                                      f"{domain}-{len(records):03d}"))
        records.append(record)
    return records


class _WenReader:
    """Wen's per-start magnitudes of one prompt; the DDIM grid, the empty prompt's
    conditioning and the eps function are built on first use, so a rescan whose units are all
    stored touches no model part."""

    def __init__(self, model: LoadedModel, settings: MemorizationSettings) -> None:
        self.model, self.settings = model, settings

    @functools.cached_property
    def _parts(self) -> tuple[Any, ...]:
        model, settings = self.model, self.settings
        pipeline = model.pipeline
        target = Target(pipeline.unet, alphas(model), prediction_type=model.prediction_type)
        # Wen et al. read a DDIM grid whatever the model's own sampler (their script swaps in
        # DDIMScheduler.from_config): its first steps, from the model's own noise schedule
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
        scheduler.set_timesteps(settings.sampler_steps)
        # a zero-terminal-SNR grid may start at ᾱ_T = 0, where a DDIM step divides by √ᾱ_T
        steps = [int(t) for t in scheduler.timesteps
                 if int(t) < usable_timesteps(pipeline.scheduler)][:settings.detect_steps]
        encoders, size = TextEncoders.of(pipeline), (model.resolution, model.resolution)
        return (target, target.eps_fn(), scheduler, steps, encoders, size,
                null_conditioning(encoders, size))

    def unit(self, prompt: str) -> tuple[Arrays, None]:
        """The unit of one prompt: ``{"per_start": magnitudes}``."""
        return {"per_start": self.magnitudes(prompt)}, None

    def magnitudes(self, prompt: str) -> np.ndarray:
        """The text-guidance magnitude of each seeded start (float64, ``starts`` values)."""
        target, eps_fn, scheduler, steps, encoders, size, uncond = self._parts
        settings, unet = self.settings, self.model.pipeline.unet
        shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
        cond = encoders.encode([prompt], size)
        x_T = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(
            image_seed(settings.seed, f"wen/{prompt}", i))) for i in range(settings.starts)])
        x_T = x_T.to(unet.device) * float(getattr(scheduler, "init_noise_sigma", 1.0))
        with torch.inference_mode():
            per_start = text_guidance_magnitude(eps_fn, x_T, cond, uncond,
                                                target.alphas.float(), steps, settings.guidance)
        return per_start.numpy().astype(np.float64)


def _clique_unit(model: LoadedModel, prompt: str, stream: str, settings: MemorizationSettings
                 ) -> tuple[Arrays, None]:
    """The unit of one prompt's clique generations: ``{"images": uint8 (N, H, W, 3)}``, laid
    out as extraction's generation units."""
    return {"images": generate_images(model.pipeline, prompt, settings.generations,
                                      seed=settings.seed, key=stream,
                                      settings=settings.generation)}, None


def wen_key(model: LoadedModel, prompt: str, settings: MemorizationSettings) -> str:
    """Unit key of one prompt's per-start Wen magnitudes: the model (weights and adapters,
    scheduler config, device kind, dtype: ``platform``), the prompt, and every setting the
    magnitudes depend on. Threshold and the clique's settings are left out: they judge or
    measure something else."""
    return unit_key("memorization-wen", model=model.model_hash, prompt=prompt,
                    starts=settings.starts, sampler_steps=settings.sampler_steps,
                    detect_steps=settings.detect_steps, guidance=settings.guidance,
                    seed=settings.seed, grid="DDIMScheduler", threads=torch.get_num_threads(),
                    **model.platform)


def clique_stream(domain: str, prompt: str, source: str) -> str:
    """The seeded image stream of a prompt's clique generations: a domain's own prompt uses its
    extraction stream (the domain's name), so the two share generations (and units); a caption
    has its own."""
    return domain if source == "prompt" else f"clique/{prompt}"


def clique_generation_key(model: LoadedModel, prompt: str, stream: str,
                          settings: MemorizationSettings) -> str:
    """Unit key of one prompt's clique generations: extraction's key function
    (:func:`~s2l_scan.stages.extraction.generation_key`), on the clique's count."""
    return generation_key(model, prompt, stream, settings.generations, settings.seed,
                          settings.generation)


def _clique_picture(images: np.ndarray, folder: Path, name: str) -> Path:
    """A row of the clique's generations (at most 16): the "likely memorized generations"."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    strip = np.concatenate(list(images[:16]), axis=1)
    path = folder / f"likely-memorized-{name}.png"
    Image.fromarray(strip).save(path)
    return path


def memorization_records(subject_model: LoadedModel, data: AuditData, config: ScanConfig,
                         evidence_dir: Path | None = None, store: UnitStore | None = None
                         ) -> list[MemorizationRecord]:
    """The scan's memorization records (``report.memorization``): per domain, one ``wen``
    record (with ``memorization_starts``) and one ``clique`` record (with
    ``clique_generations``), each prompt's value in it; judged later by the gate. Measured
    through ``store`` (:func:`run_memorization`)."""
    settings = MemorizationSettings(
        starts=max(config.memorization_starts, 1), detect_steps=config.memorization_steps,
        guidance=config.extraction_guidance, generation=sampler(config),
        threshold=config.max_text_guidance, generations=config.clique_generations,
        delta=config.extraction_delta, tiles=4 if config.extraction_tiled else 1,
        min_clique=config.clique_size, seed=config.seed)
    measured = run_memorization(subject_model, prompts_of(data), settings, evidence_dir, store)
    records: list[MemorizationRecord] = []
    for domain in data.domains:
        mine = [m for m in measured if m.domain == domain.name]
        if config.memorization_starts:
            records.append(MemorizationRecord(
                "wen", domain.name,
                [{"prompt": m.prompt, "source": m.source, "value": m.magnitude,
                  "per_start": m.magnitudes} for m in mine],
                config.max_text_guidance,
                {"starts": settings.starts, "first_steps": settings.detect_steps,
                 "sampler_steps": settings.sampler_steps, "guidance": settings.guidance}))
        if config.clique_generations:
            records.append(MemorizationRecord(
                "clique", domain.name,
                [{"prompt": m.prompt, "source": m.source, "value": len(m.clique),
                  "clique": m.clique, "evidence": m.evidence} for m in mine],
                config.clique_size,
                {"generations": settings.generations, "delta": settings.delta,
                 "tiles": settings.tiles}))
    return records


def summary(records: list[PromptMemorization]) -> dict[str, Any]:
    """Counts for a study or report: prompts probed and flagged by each detector."""
    return {"prompts": len(records),
            "flagged_magnitude": sum(bool(r.flagged_magnitude) for r in records),
            "flagged_clique": sum(bool(r.flagged_clique) for r in records)}
