"""SP sets (S2L §5.1): images the model generates itself for the domain prompt.

The attacker knows the domain only by its prompt, so it fine-tunes on the model's own
generations for it. SP sets are units of the scan's unit store (:mod:`s2l_scan.units`), keyed by
(model hash, prompt, count, seed, sampler settings and scheduler, device kind and dtype), so
reruns and every probe of a scan share them, and an interrupted scan resumes without generating
them again; writes are atomic.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from s2l_scan.generation import SamplerSettings, generate_images
from s2l_scan.units import UnitStore, unit_key


def sp_set_key(model_hash: str, prompt: str, count: int, seed: int,
               settings: SamplerSettings, platform: dict[str, str], scheduler: str) -> str:
    """The unit key of one SP set (batch size excluded: it does not change the images);
    ``scheduler`` is :func:`s2l_scan.samplers.sampler_identity` of the sampler on the model."""
    fields = {k: v for k, v in asdict(settings).items() if k != "batch_size"}
    return unit_key("sp-set", model=model_hash, prompt=prompt, count=count, seed=seed, **fields,
                    sampler_scheduler=scheduler, **platform)


def sp_set(pipeline: Any, model_hash: str, prompt: str, count: int, *, seed: int,
           settings: SamplerSettings, store: UnitStore | None,
           platform: dict[str, str]) -> np.ndarray:
    """``count`` generations for ``prompt`` as uint8 (N, H, W, 3), from the store when possible."""
    def generate() -> tuple[dict[str, np.ndarray], None]:
        images = generate_images(pipeline, prompt, count, seed=seed, key=f"sp:{prompt}",
                                 settings=settings, stage="generating the SP set")
        return {"images": images}, None

    if store is None:
        return generate()[0]["images"]
    from s2l_scan.samplers import sampler_identity

    key = sp_set_key(model_hash, prompt, count, seed, settings, platform,
                     sampler_identity(settings.sampler, pipeline.scheduler))
    arrays, _ = store.get_or_compute("sp-set", key, generate)
    return arrays["images"]
