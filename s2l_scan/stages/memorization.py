"""Prompt-level memorization, with no known training image: Wen et al.'s text-guidance
magnitude, Asthana & Belagiannis's log-probability anisotropy score and Carlini et al.'s clique
of near-copy generations, per prompt (each domain's prompt and every distinct caption of its
audit images). The detectors are listed in :mod:`s2l_scan.detectors`.

Measures only (like every stage). A record says, per prompt, the magnitude and whether it is
above ``threshold`` (Wen), the anisotropy score and its two terms (Asthana & Belagiannis),
and the largest clique of mutual near-copies among ``count``
generations and whether it reaches ``min_clique`` (Carlini: "likely memorized generations"),
with a picture of the clique when ``evidence_dir`` is given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2l_scan.attack import Target
from s2l_scan.conditioning import TextEncoders
from s2l_scan.config import WEN_GRID_STEPS, ScanConfig
from s2l_scan.detectors import enabled_detectors
from s2l_scan.functional.memorization import (
    anisotropy_score,
    guidance_anisotropy,
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

ANISOTROPY_ALIGN_FROM_END = 3  # the authors' low-noise step: their grid's timesteps[-3]


@dataclass(frozen=True)
class MemorizationSettings:
    """How prompts are probed for memorization."""

    starts: int = 8  # Wen: seeded starting noises per prompt (0: Wen off)
    sampler_steps: int = WEN_GRID_STEPS  # the DDIM grid whose first steps Wen reads
    detect_steps: int = 1  # Wen: first steps averaged (the paper: 1 already separates)
    guidance: float = 7.0
    threshold: float | None = None  # Wen: flag a prompt above this magnitude (None: report)
    anisotropy_starts: int = 0  # Asthana & Belagiannis: pure-noise starts per prompt (0: off)
    alignment_weight: float = 2.0  # Asthana & Belagiannis: γ₂ beside the norm's γ₁ = 1
    anisotropy_threshold: float | None = None  # flag a prompt above this score (None: report)
    generations: int = 0  # Carlini: images per prompt (0: off; the paper: 500)
    delta: float = 0.1  # Carlini: near-copy RMS distance of [0, 1] pixels
    tiles: int = 4  # Carlini: tiled ℓ2, tiles × tiles patches
    min_clique: int = 10  # Carlini: clique size that flags a prompt
    seed: int = 0
    # Carlini: how the generations are sampled (the scan's extraction sampler)
    generation: SamplerSettings = field(default_factory=SamplerSettings)


@dataclass(frozen=True)
class AnisotropyTerms:
    """One prompt's anisotropy measurements, per start: the two terms and their score."""

    norm: list[float]  # ‖ε(c) − ε(∅)‖₂ at the grid's first step (Wen's step-1 value)
    alignment: list[float]  # mean channel cosine of ε(∅) and the guidance at a low-noise step
    score: list[float]  # norm + alignment_weight · alignment

    @property
    def value(self) -> float:
        """The prompt's score: the mean over starts."""
        return float(np.mean(self.score))


@dataclass
class PromptMemorization:
    """One prompt's memorization measurements."""

    domain: str
    prompt: str
    source: str  # "prompt" (the domain's) or "caption"
    magnitude: float | None  # Wen: mean over starts of the text-guidance magnitude (None: off)
    magnitudes: list[float]
    flagged_magnitude: bool | None  # None without a threshold
    anisotropy: AnisotropyTerms | None = None  # Asthana & Belagiannis (None: off)
    flagged_anisotropy: bool | None = None  # None without a threshold
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
        record = PromptMemorization(domain, prompt, source, None, [], None)
        if settings.starts:
            per_start = store.get_or_compute(
                "memorization-wen", wen_key(model, prompt, settings),
                functools.partial(wen.unit, prompt))[0]["per_start"]
            record.magnitude, record.magnitudes = float(per_start.mean()), per_start.tolist()
            record.flagged_magnitude = (None if settings.threshold is None
                                        else record.magnitude > settings.threshold)
        if settings.anisotropy_starts:
            _measure_anisotropy(record, wen, store)
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


def _ddim(model: LoadedModel, steps: int) -> Any:
    """A DDIM scheduler on the model's own noise schedule, its grid set to ``steps``."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(model.pipeline.scheduler.config)
    scheduler.set_timesteps(steps)
    return scheduler


def ddim_grid(model: LoadedModel, steps: int) -> list[int]:
    """The timesteps of the detectors' DDIM grid, first (noisiest) to last (t = T left out on a
    zero-terminal-SNR schedule, where ᾱ_T = 0)."""
    usable = usable_timesteps(model.pipeline.scheduler)
    return [int(t) for t in _ddim(model, steps).timesteps if int(t) < usable]


def _measure_anisotropy(record: PromptMemorization, reader: _WenReader, store: UnitStore
                        ) -> None:
    """Set ``record.anisotropy`` (and its flag) from the prompt's unit (kind
    ``memorization-anisotropy``, :func:`anisotropy_key`)."""
    settings = reader.settings
    unit = store.get_or_compute(
        "memorization-anisotropy", anisotropy_key(reader.model, record.prompt, settings),
        functools.partial(reader.anisotropy_unit, record.prompt))[0]
    score = anisotropy_score(unit["norm"], unit["alignment"], 1.0, settings.alignment_weight)
    record.anisotropy = AnisotropyTerms(unit["norm"].tolist(), unit["alignment"].tolist(),
                                        score.tolist())
    if settings.anisotropy_threshold is not None:
        record.flagged_anisotropy = record.anisotropy.value > settings.anisotropy_threshold


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
        scheduler = _ddim(model, settings.sampler_steps)
        # a zero-terminal-SNR grid may start at ᾱ_T = 0, where a DDIM step divides by √ᾱ_T
        steps = [int(t) for t in scheduler.timesteps
                 if int(t) < usable_timesteps(model.pipeline.scheduler)][:settings.detect_steps]
        encoders, size = TextEncoders.of(pipeline), (model.resolution, model.resolution)
        return (target, target.eps_fn(), scheduler, steps, encoders, size,
                null_conditioning(encoders, size))

    def starts(self, prompt: str, count: int) -> torch.Tensor:
        """The prompt's seeded starting noises (``count``, C, h, w), on the UNet's device: the
        same for every detector, so Wen's and the anisotropy's are paired start by start."""
        unet, scheduler = self.model.pipeline.unet, self._parts[2]
        shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
        x_T = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(
            image_seed(self.settings.seed, f"wen/{prompt}", i))) for i in range(count)])
        return x_T.to(unet.device) * float(getattr(scheduler, "init_noise_sigma", 1.0))

    def anisotropy_unit(self, prompt: str) -> tuple[Arrays, None]:
        """The anisotropy unit of one prompt: ``{"norm": ..., "alignment": ...}``, per start.
        The norm is read at the grid's first step, the alignment at its third-last (the
        authors' ``timesteps[-3]``), both on the pure noise."""
        _, eps_fn, scheduler, _, encoders, size, uncond = self._parts
        timesteps = [int(t) for t in scheduler.timesteps]
        x_T = self.starts(prompt, self.settings.anisotropy_starts)
        with torch.inference_mode():
            norm, alignment = guidance_anisotropy(
                eps_fn, x_T, encoders.encode([prompt], size), uncond, timesteps[0],
                timesteps[-ANISOTROPY_ALIGN_FROM_END])
        return {"norm": norm.numpy(), "alignment": alignment.numpy()}, None

    def unit(self, prompt: str) -> tuple[Arrays, None]:
        """The unit of one prompt: ``{"per_start": magnitudes}``."""
        return {"per_start": self.magnitudes(prompt)}, None

    def magnitudes(self, prompt: str) -> np.ndarray:
        """The text-guidance magnitude of each seeded start (float64, ``starts`` values)."""
        target, eps_fn, _, steps, encoders, size, uncond = self._parts
        cond, x_T = encoders.encode([prompt], size), self.starts(prompt, self.settings.starts)
        with torch.inference_mode():
            per_start = text_guidance_magnitude(eps_fn, x_T, cond, uncond,
                                                target.alphas.float(), steps,
                                                self.settings.guidance)
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


def anisotropy_key(model: LoadedModel, prompt: str, settings: MemorizationSettings) -> str:
    """Unit key of one prompt's per-start anisotropy terms: as :func:`wen_key`, on what the
    terms depend on (the weight and threshold combine or judge them afterwards)."""
    return unit_key("memorization-anisotropy", model=model.model_hash, prompt=prompt,
                    starts=settings.anisotropy_starts, sampler_steps=settings.sampler_steps,
                    align_from_end=ANISOTROPY_ALIGN_FROM_END, seed=settings.seed,
                    grid="DDIMScheduler", threads=torch.get_num_threads(), **model.platform)


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
    """The scan's memorization records (``report.memorization``): per domain, one record of
    each detector the config turns on (:func:`~s2l_scan.detectors.enabled_detectors`: ``wen``
    with ``memorization_starts``, ``anisotropy`` with ``anisotropy_starts``, ``clique`` with
    ``clique_generations``), each prompt's value in it; judged later by the gate. Measured
    through ``store`` (:func:`run_memorization`)."""
    settings = MemorizationSettings(
        starts=config.memorization_starts, detect_steps=config.memorization_steps,
        guidance=config.extraction_guidance, generation=sampler(config),
        threshold=config.max_text_guidance, anisotropy_starts=config.anisotropy_starts,
        alignment_weight=config.anisotropy_alignment_weight,
        anisotropy_threshold=config.max_anisotropy, generations=config.clique_generations,
        delta=config.extraction_delta, tiles=4 if config.extraction_tiled else 1,
        min_clique=config.clique_size, seed=config.seed)
    measured = run_memorization(subject_model, prompts_of(data), settings, evidence_dir, store)
    grid = ddim_grid(subject_model, settings.sampler_steps)
    return [MemorizationRecord(detector.name, domain.name,
                               [_RECORDED[detector.name][0](m) for m in measured
                                if m.domain == domain.name],
                               getattr(config, detector.threshold),
                               _RECORDED[detector.name][1](settings, grid))
            for domain in data.domains for detector in enabled_detectors(config)]


def _wen_entry(m: PromptMemorization) -> dict[str, Any]:
    return {"prompt": m.prompt, "source": m.source, "value": m.magnitude,
            "per_start": m.magnitudes}


def _anisotropy_entry(m: PromptMemorization) -> dict[str, Any]:
    terms = m.anisotropy
    assert terms is not None  # measured whenever the detector is on
    return {"prompt": m.prompt, "source": m.source, "value": terms.value,
            "norm": float(np.mean(terms.norm)), "alignment": float(np.mean(terms.alignment)),
            "per_start": terms.score}


def _clique_entry(m: PromptMemorization) -> dict[str, Any]:
    return {"prompt": m.prompt, "source": m.source, "value": len(m.clique), "clique": m.clique,
            "evidence": m.evidence}


def _wen_settings(settings: MemorizationSettings, grid: list[int]) -> dict[str, Any]:
    return {"starts": settings.starts, "first_steps": settings.detect_steps,
            "sampler_steps": settings.sampler_steps, "guidance": settings.guidance}


def _anisotropy_settings(settings: MemorizationSettings, grid: list[int]) -> dict[str, Any]:
    return {"starts": settings.anisotropy_starts, "sampler_steps": settings.sampler_steps,
            "norm_t": grid[0], "align_t": grid[-ANISOTROPY_ALIGN_FROM_END],
            "norm_weight": 1.0, "alignment_weight": settings.alignment_weight}


def _clique_settings(settings: MemorizationSettings, grid: list[int]) -> dict[str, Any]:
    return {"generations": settings.generations, "delta": settings.delta,
            "tiles": settings.tiles}


_RECORDED: dict[str, tuple[Callable[[PromptMemorization], dict[str, Any]],
                           Callable[[MemorizationSettings, list[int]], dict[str, Any]]]] = {
    "wen": (_wen_entry, _wen_settings), "anisotropy": (_anisotropy_entry, _anisotropy_settings),
    "clique": (_clique_entry, _clique_settings)}
"""Each detector of :mod:`s2l_scan.detectors`: a prompt's entry in its record, and what the
record says it measured with (given the DDIM grid's timesteps)."""


def summary(records: list[PromptMemorization]) -> dict[str, Any]:
    """Counts for a study or report: prompts probed and flagged by each detector."""
    return {"prompts": len(records),
            "flagged_magnitude": sum(bool(r.flagged_magnitude) for r in records),
            "flagged_anisotropy": sum(bool(r.flagged_anisotropy) for r in records),
            "flagged_clique": sum(bool(r.flagged_clique) for r in records)}
