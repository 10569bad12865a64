"""Stage 3: generations of the released model searched among known images → extraction records.

Also the checks that must pass before any model work when extraction is on (the evidence
folder, the prebuilt index), the known-image index every extraction of a scan shares, and the
sampler settings generation uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from s2l_scan.config import ScanConfig
from s2l_scan.devices import resolve_device
from s2l_scan.errors import UsageError
from s2l_scan.generation import SamplerSettings
from s2l_scan.io.audit_data import AuditData, Domain
from s2l_scan.io.model import LoadedModel
from s2l_scan.report.model import ExtractionRecord
from s2l_scan.scoring import batches
from s2l_scan.stages.encode import Subject
from s2l_scan.stages.runtime import Runtime
from s2l_scan.units import Arrays, unit_key, writable_folder

Generate = Callable[[str, str], np.ndarray]
"""(prompt, key) → generated uint8 images; the key is the domain's name."""


def sampler(config: ScanConfig, guidance: float | None = None) -> SamplerSettings:
    """The sampler settings of extraction generations (at ``guidance``: one of
    ``extraction_extra_guidance``; default ``extraction_guidance``)."""
    return SamplerSettings(sampler=config.sampler, steps=config.extraction_steps,
                           guidance=config.extraction_guidance if guidance is None
                           else guidance,
                           negative_prompt=config.negative_prompt, batch_size=config.batch_size)


def sp_sampler(config: ScanConfig) -> SamplerSettings:
    """The sampler settings of SP / OOD / prior set generations."""
    return SamplerSettings(sampler=config.sampler, steps=config.sp_steps,
                           guidance=config.sp_guidance, negative_prompt=config.negative_prompt,
                           batch_size=config.batch_size)


def shares_sp_sets(config: ScanConfig) -> bool:
    """Whether each domain's SP set is the first ``sp_samples`` of the released model's
    extraction generations for it (:func:`released_generations`): the same sampler, steps,
    guidance and negative prompt, and no more SP images than extraction images. Both are then
    one generation unit per domain, generated once by whichever stage asks first."""
    return 0 < config.sp_samples <= config.extraction_samples and sampler(config) == sp_sampler(
        config)


def sampling_record(config: ScanConfig, model_scheduler: Any) -> dict[str, Any]:
    """What the report records of the generations' samplers: per use, the sampler name, the
    scheduler class it ran, its steps and guidance."""
    from s2l_scan.samplers import sampler_class

    def record(settings: SamplerSettings) -> dict[str, Any]:
        return {"sampler": settings.sampler,
                "scheduler": sampler_class(settings.sampler, model_scheduler),
                "steps": settings.steps, "guidance": settings.guidance}

    return {"extraction": record(sampler(config)), "sp_sets": record(sp_sampler(config))}


def check_evidence_dir(config: ScanConfig, inputs: list[Path]) -> None:
    """A usage error, before any work, when match pictures could not be written to
    ``evidence_dir`` or would land among the inputs (PNGs in an audit folder become audit
    images of the next scan)."""
    if config.evidence_dir is None or not config.extraction_samples:
        return
    folder = Path(config.evidence_dir).expanduser()
    real = Path(os.path.realpath(folder))
    for given in inputs:
        if real.is_relative_to(os.path.realpath(given)):
            raise UsageError(f"evidence_dir {folder} is inside the input {given}; its PNGs "
                             "would become part of it. Choose a folder outside the model and "
                             "the audit data.")
    writable_folder(folder, "evidence_dir")


def check_known_index(data: AuditData, config: ScanConfig) -> None:
    """A usage error, before any scoring, unless ``known_index`` (when set and used) holds
    images at the resolution the audit data was loaded at (the model's)."""
    if not config.extraction_samples or config.known_index is None:
        return
    from s2l_scan.extraction.sharded import read_meta

    height, width, channels = read_meta(Path(config.known_index).expanduser())["resolution"]
    size = data.resolution
    if (height, width, channels) != (size, size, 3):
        raise UsageError(f"known_index {config.known_index} holds {height}×{width}×{channels} "
                         f"images, but the model and its audit data are {size}×{size}×3; "
                         f"rebuild the index with `s2l-scan index build --resolution {size}`")


def known_index(data: AuditData, config: ScanConfig) -> Any:
    """The known-image index (None when extraction is off): built once, shared by all probes;
    with ``known_index``, the prebuilt sharded folder, opened (shards stay on disk)."""
    if not config.extraction_samples:
        return None
    if config.known_index is not None:
        from s2l_scan.extraction.sharded import open_sharded

        return open_sharded(Path(config.known_index).expanduser())
    from s2l_scan.extraction.cache import default_index_cache
    from s2l_scan.extraction.embedders import make_embedder
    from s2l_scan.probes.extraction import build_known_index

    embedder = make_embedder(config.embedder, allow_pickle=config.allow_pickle,
                             device=resolve_device(config.device))
    cache = (default_index_cache() if config.index_cache_dir is None
             else Path(config.index_cache_dir).expanduser())
    return build_known_index(data, config.known_images, embedder=embedder, cache=cache)


def extraction_records(pipeline: Any, domains: list[Domain], index: Any, config: ScanConfig,
                       probe: str | None = None, generate: Generate | None = None,
                       model_scheduler: Any = None, samples: int | None = None
                       ) -> list[ExtractionRecord]:
    """The extraction probe on ``pipeline`` (the released model, or ``probe``'s copy) for
    ``domains``; ``generate(prompt, key)`` replaces sampling with images already made.
    ``model_scheduler`` (default: ``pipeline``'s) names the scheduler class in the records."""
    if index is None:
        return []
    from s2l_scan.probes.extraction import ExtractionSettings, run_extraction
    from s2l_scan.samplers import sampler_class

    settings = ExtractionSettings(
        samples=config.extraction_samples if samples is None else samples,
        k=config.extraction_k, delta=config.extraction_delta,
        tiled=config.extraction_tiled, candidates=config.extraction_candidates,
        known_images=config.known_images, known_index=config.known_index,
        invariances=config.extraction_invariances,
        sampler=sampler(config), scheduler=sampler_class(
            config.sampler, (pipeline.scheduler if model_scheduler is None
                             else model_scheduler)))
    return run_extraction(pipeline, domains, index, settings, seed=config.seed, probe=probe,
                          evidence_dir=None if config.evidence_dir is None
                          else Path(config.evidence_dir), generate=generate)


def stored(images: dict[str, np.ndarray]) -> Generate:
    """A ``generate`` that returns the images made earlier for a domain, by its name."""
    def generate(prompt: str, key: str) -> np.ndarray:
        return images[key]

    return generate


def run_released_extraction(subject: Subject, index: Any, config: ScanConfig,
                            runtime: Runtime | None = None) -> list[ExtractionRecord]:
    """Extraction on the released model, one generation unit per domain (records on rank 0;
    [] elsewhere and when extraction is off)."""
    if index is None:
        return []
    runtime = Runtime() if runtime is None else runtime
    domains = list(subject.data.domains)
    images = _released_generations(subject.model, domains, config, runtime)
    scales = (config.extraction_guidance, *config.extraction_extra_guidance)
    for guidance in scales[1:]:  # every process takes part in generating each scale's units
        more = _released_generations(subject.model, domains, config, runtime, guidance)
        images = None if images is None or more is None else {
            name: np.concatenate([images[name], more[name]]) for name in images}
    if images is None:
        return []
    records = extraction_records(None, domains, index, config, generate=stored(images),
                                 model_scheduler=subject.model.pipeline.scheduler,
                                 samples=config.extraction_samples * len(scales))
    return [_by_guidance(record, scales, config.extraction_samples) for record in records]


def _by_guidance(record: ExtractionRecord, scales: tuple[float, ...], samples: int
                 ) -> ExtractionRecord:
    """A record over the generations of several guidance scales (``samples`` each, in
    ``scales`` order): each match names its scale, and the settings list the scales and the
    generations that extracted per scale (where copies come back)."""
    if len(scales) == 1:
        return record
    for match in record.matches:
        match["guidance"] = scales[match["generated_index"] // samples]
    matched = {str(g): len({m["generated_index"] for m in record.matches
                            if m["guidance"] == g}) for g in scales}
    record.settings.update(guidance=list(scales), samples_per_guidance=samples,
                           matched_generations_by_guidance=matched)
    return record


def _generation_key(model: LoadedModel, domain: Domain, config: ScanConfig,
                    guidance: float | None = None) -> str:
    """Unit key of one domain's extraction generations on the released model."""
    return generation_key(model, domain.prompt, domain.name, config.extraction_samples,
                          config.seed, sampler(config, guidance))


def generation_key(model: LoadedModel, prompt: str, stream: str, count: int, seed: int,
                   settings: SamplerSettings) -> str:
    """Unit key (kind ``generated``) of ``count`` images of ``prompt`` from the seeded stream
    ``stream`` on ``model``: extraction's per domain (stream: the domain's name), and Carlini's
    clique generations of the memorization stage, which share extraction's units when their
    settings match. Batch size, thread count and process count are left out: every image has
    its own seeded generator, and the images were measured bit-identical across them
    (docs/determinism.md)."""
    from s2l_scan.samplers import sampler_identity

    return unit_key("generated", source=model.model_hash, prompt=prompt, key=stream,
                    count=count, seed=seed,
                    sampler=sampler_identity(settings.sampler, model.pipeline.scheduler),
                    steps=settings.steps,
                    guidance=settings.guidance, negative_prompt=settings.negative_prompt,
                    **model.platform)


def _released_generations(model: LoadedModel, domains: list[Domain], config: ScanConfig,
                          runtime: Runtime, guidance: float | None = None
                          ) -> dict[str, np.ndarray] | None:
    """Each domain's extraction generations from the released model (at ``guidance``, default
    ``extraction_guidance``), on rank 0 (None on other ranks)."""
    keys = [_generation_key(model, domain, config, guidance) for domain in domains]
    units = runtime.shared_units("generated", keys, lambda missing: _sample_sliced(
        model.pipeline, [domains[i] for i in missing], config, runtime, guidance))
    if guidance is None and shares_sp_sets(config):  # the SP sets are (prefixes of) these
        units = runtime.broadcast(units)  # images: every process keeps them for its probes
        assert units is not None
        runtime.generated.update(zip(keys, (unit["images"] for unit in units), strict=True))
    if units is None or not runtime.is_main:
        return None
    return {domain.name: unit["images"] for domain, unit in zip(domains, units, strict=True)}


def released_generations(model: LoadedModel, domain: Domain, config: ScanConfig,
                         runtime: Runtime) -> np.ndarray:
    """The released model's extraction generations for ``domain`` in this process: kept from
    the extraction stage, read from the unit store, or generated now (and stored, so the
    extraction stage finds them)."""
    key = _generation_key(model, domain, config)
    if key not in runtime.generated:
        def generate() -> tuple[Arrays, None]:
            from s2l_scan.generation import generate_images
            from s2l_scan.progress import at

            with at(f"domain {domain.name}"):
                return {"images": generate_images(
                    model.pipeline, domain.prompt, config.extraction_samples, seed=config.seed,
                    key=domain.name, settings=sampler(config),
                    stage="generating with the released model")}, None

        runtime.generated[key] = runtime.get_or_compute("generated", key, generate)[0]["images"]
    return runtime.generated[key]


def _sample_sliced(pipeline: Any, domains: list[Domain], config: ScanConfig, runtime: Runtime,
                   guidance: float | None = None) -> list[Arrays] | None:
    """Each domain's generations, sampled in (domain, batch) slices shared out across the
    processes; ``{"images": ...}`` per domain on rank 0, None on other ranks."""
    from s2l_scan.generation import generate_images

    settings = sampler(config, guidance)
    slices = [(domain, start, stop - start) for domain in domains
              for start, stop in batches(config.extraction_samples, settings.batch_size)]

    def generate(piece: tuple[Domain, int, int]) -> np.ndarray:
        domain, first, count = piece
        return generate_images(pipeline, domain.prompt, count, seed=config.seed, key=domain.name,
                               settings=settings, first=first, progress=lambda n: None)

    images = runtime.map_counted("generating with the released model (batches)", generate,
                                 slices)
    if images is None:
        return None
    return [{"images": np.concatenate([part for (d, _, _), part in
                                       zip(slices, images, strict=True) if d is domain])}
            for domain in domains]
