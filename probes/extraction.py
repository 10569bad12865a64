"""Extraction probe (DESIGN.md §6): generate from the domain prompt, look for training images.

For each domain, M images are generated (seeded, batched) from the domain prompt by the model
under scan — the released checkpoint, or an S2L probe's shaken copy — and searched in a FAISS
index of known images (every member of every scanned domain plus ``known/``). A generation is an
eidetic match under (k, ℓ2, δ) when it lies within δ (RMS of [0, 1] pixels) of a known image
that has at most k near-duplicates among the known images. Each match is saved as a
side-by-side PNG: generated | known | |difference| (×4, so faint differences show).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from s2l_scan.extraction.index import KnownImageIndex
from s2l_scan.generation import SamplerSettings, generate_images


@dataclass(frozen=True)
class ExtractionSettings:
    """What the probe generates and what counts as a match."""

    samples: int = 32
    k: int = 10
    delta: float = 0.1
    tiled: bool = False
    sampler: SamplerSettings = field(default_factory=SamplerSettings)


def build_known_index(data: Any) -> KnownImageIndex:
    """The index of known images for an :class:`AuditData`: members of its domains + known/."""
    def name(path: Path) -> str:  # relative ids keep reports identical across machines
        return str(path.relative_to(data.root)) if path.is_relative_to(data.root) else str(path)

    return KnownImageIndex.build((name(path), pixels) for path, pixels in data.index_images())


def evidence_png(generated: np.ndarray, known: np.ndarray, path: Path) -> Path:
    """Save generated | known | |difference|×4 side by side, each scaled up for viewing."""
    diff = np.clip(np.abs(generated.astype(np.int16) - known.astype(np.int16)) * 4, 0, 255)
    strip = np.concatenate([generated, known, diff.astype(np.uint8)], axis=1)
    scale = max(1, 128 // generated.shape[0])
    image = Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale),
                                          Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def run_extraction(pipeline: Any, domains: list[Any], index: KnownImageIndex,
                   settings: ExtractionSettings, *, seed: int, probe: str | None,
                   evidence_dir: Path | None,
                   prompt_fn: Callable[[str], str] | None = None) -> list[dict[str, Any]]:
    """One record per domain: generated count, matches with distances, evidence paths.

    ``prompt_fn`` rewrites the domain prompt for a probe's copy (textual inversion adds its
    learned tokens, as the attacker would when sampling).
    """
    records = []
    for domain in domains:
        prompt = domain.prompt if prompt_fn is None else prompt_fn(domain.prompt)
        generated = generate_images(pipeline, prompt, settings.samples, seed=seed,
                                    key=domain.name, settings=settings.sampler)
        records.append(extraction_record(domain.name, generated, index, settings, probe=probe,
                                         evidence_dir=evidence_dir))
    return records


def extraction_record(domain: str, generated: np.ndarray, index: KnownImageIndex,
                      settings: ExtractionSettings, *, probe: str | None,
                      evidence_dir: Path | None) -> dict[str, Any]:
    """The record of one domain's generations: matches with distances, evidence paths."""
    matches = index.matches(generated, k=settings.k, delta=settings.delta, tiled=settings.tiled)
    found = []
    for match in matches:
        known_id = index.ids[match.known_index]
        entry: dict[str, Any] = {"generated_index": match.generated_index,
                                 "known": known_id, "distance": round(match.distance, 6)}
        if evidence_dir is not None:
            tag = hashlib.sha256(known_id.encode()).hexdigest()[:8]
            name = f"{probe or 'released'}-{domain}-{match.generated_index:04d}-{tag}.png"
            entry["evidence"] = str(evidence_png(generated[match.generated_index],
                                                 index.pixels[match.known_index],
                                                 evidence_dir / name))
        found.append(entry)
    return {
        "probe": probe, "domain": domain, "n_generated": len(generated),
        "extracted": len({m["generated_index"] for m in found}), "matches": found,
        "nearest_distance": _nearest(index, generated),
        "settings": {"k": settings.k, "delta": settings.delta, "tiled": settings.tiled,
                     "steps": settings.sampler.steps, "guidance": settings.sampler.guidance},
    }


_NEAREST_LIMIT = 50_000


def _nearest(index: KnownImageIndex, generated: np.ndarray) -> float | None:
    """Smallest RMS from any generation to any known image: how close the model came.

    Brute force, so only for indexes of at most 50,000 images (None beyond).
    """
    from s2l_scan.functional.eidetic import rms_distance

    if len(index) > _NEAREST_LIMIT:
        return None
    return round(float(rms_distance(generated, index.pixels).min()), 6)
