"""SP sets (S2L §5.1): images the model generates itself for the domain prompt.

The attacker knows the domain only by its prompt, so it fine-tunes on the model's own
generations for it. SP sets are cached on disk by (model hash, prompt, count, seed, sampler
settings), so reruns and every probe of a scan share them; cache writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from s2l_scan.generation import SamplerSettings, generate_images


def sp_set_key(model_hash: str, prompt: str, count: int, seed: int,
               settings: SamplerSettings) -> str:
    """The cache key of one SP set (batch size excluded: it does not change the images)."""
    fields = {k: v for k, v in asdict(settings).items() if k != "batch_size"}
    blob = json.dumps({"model": model_hash, "prompt": prompt, "count": count, "seed": seed,
                       **fields}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def sp_set(pipeline: Any, model_hash: str, prompt: str, count: int, *, seed: int,
           settings: SamplerSettings, cache_dir: Path | None) -> np.ndarray:
    """``count`` generations for ``prompt`` as uint8 (N, H, W, 3), from cache when possible."""
    path = None
    if cache_dir is not None:
        path = cache_dir / f"{sp_set_key(model_hash, prompt, count, seed, settings)}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as stored:
                return np.asarray(stored["images"])
    images = generate_images(pipeline, prompt, count, seed=seed, key=f"sp:{prompt}",
                             settings=settings)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=".sp-", suffix=".npz", dir=path.parent)
        with os.fdopen(handle, "wb") as out:
            np.savez(out, images=images)
        os.replace(temp, path)
    return images
