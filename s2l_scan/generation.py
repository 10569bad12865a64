"""Seeded, batched text-to-image generation with the pipeline under scan.

Used by the extraction probe (generate, then look for training images) and by the S2L probes'
SP sets. Every image has its own generator seeded from (seed, key, index), so an image does not
depend on the batch size or on how many images are asked for: image 7 is the same whether 8
or 800 are generated.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from s2l_scan.progress import report


@dataclass(frozen=True)
class SamplerSettings:
    """How images are sampled: ``sampler`` names the scheduler (:data:`s2l_scan.samplers.SAMPLERS`;
    ``model``: the pipeline's own), ``steps`` its inference steps."""

    sampler: str = "model"
    steps: int = 50  # a bare SamplerSettings is the model's own sampler; ScanConfig's default
    #                  (sampler, extraction_steps) is DPM-Solver++ at 20
    guidance: float = 7.0
    negative_prompt: str | None = None
    batch_size: int = 16


def image_seed(seed: int, key: str, index: int) -> int:
    """A stable 63-bit seed for image ``index`` of stream ``key`` (e.g. a domain name)."""
    return (seed * 1_000_003 + zlib.crc32(key.encode()) * 65_537 + index) % (2**63 - 1)


def generate_images(pipeline: Any, prompt: str, count: int, *, seed: int, key: str,
                    settings: SamplerSettings,
                    progress: Callable[[int], None] | None = None, first: int = 0,
                    stage: str = "generating images") -> np.ndarray:
    """``count`` images for ``prompt`` as uint8 (N, H, W, 3), deterministic given the seeds.

    ``first`` is the index of the first image: images ``first … first + count − 1`` of the
    stream, so a data-parallel scan can generate a stream in slices. ``progress(n)`` is told
    each batch's count; without it, ``stage`` progress goes to :func:`s2l_scan.progress.report`.
    """
    if progress is None:
        made = 0

        def progress(n: int) -> None:
            nonlocal made
            made += n
            report(stage, made, count)

        report(stage, 0, count)
    from s2l_scan.samplers import make_scheduler

    device = pipeline.unet.device
    own = pipeline.scheduler
    pipeline.scheduler = make_scheduler(settings.sampler, own)
    try:
        return _generate(pipeline, prompt, count, seed=seed, key=key, settings=settings,
                         progress=progress, first=first, device=device)
    finally:
        pipeline.scheduler = own


def _generate(pipeline: Any, prompt: str, count: int, *, seed: int, key: str,
              settings: SamplerSettings, progress: Callable[[int], None] | None, first: int,
              device: Any) -> np.ndarray:
    images = []
    for start in range(first, first + count, settings.batch_size):
        stop = min(start + settings.batch_size, first + count)
        generators = [torch.Generator(device=device).manual_seed(image_seed(seed, key, i))
                      for i in range(start, stop)]
        with torch.inference_mode():
            out = pipeline(
                [prompt] * (stop - start), num_inference_steps=settings.steps,
                guidance_scale=settings.guidance, generator=generators, output_type="np",
                negative_prompt=None if settings.negative_prompt is None
                else [settings.negative_prompt] * (stop - start),
            ).images
        images.append(np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8))
        if progress is not None:
            progress(stop - start)
    # C order, as the same images read back from the unit store or received from another
    # process are: diffusers hands back a transposed (channels-first) view, and the VAE
    # encodes the two layouts through different kernels (latents equal to ~1e-6, not in bits)
    return np.ascontiguousarray(np.concatenate(images))
