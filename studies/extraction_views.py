"""Study: what the extraction views add and cost, and extraction at more than one guidance.

On one model and audit set (default: the cached default reference model), per guidance scale
(``--guidance``, comma-separated) and sampler: each domain's ``--samples`` generations (seeded
as the scan seeds them) are searched among the known images ``all`` (members, non-members and
known/: so a generation near a non-member shows, the criterion's false-positive indicator)
with no views and with every view family. Printed per setting: training images extracted,
generations that matched one, generations near a non-member as generated and under any view,
the per-generation copy-rate bound (one-sided 95% Clopper–Pearson), and the search's wall
time. Then the planted check: each extracting generation is mirrored, shifted by 1/16 of the
side and squashed to 3/4 width (the copies training makes) and searched again: how many of
those copies each setting still counts.

    python studies/extraction_views.py [MODEL_DIR DATA_DIR] [--guidance 7.5,2] [--samples 32]

Timings depend on the machine and its load; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from s2l_scan.extraction.index import KnownImageIndex
from s2l_scan.functional.views import DEFAULT_FAMILIES, clopper_upper
from s2l_scan.generation import SamplerSettings, generate_images
from s2l_scan.io.audit_data import load_audit_data
from s2l_scan.io.model import load_pipeline
from s2l_scan.probes.extraction import ExtractionSettings, known_images, run_extraction
from s2l_scan.reference.cache import cache_key, cache_root
from s2l_scan.reference.presets import get_preset
from s2l_scan.stages.extraction import stored


def _parse() -> argparse.Namespace:
    default = cache_root() / "reference" / cache_key(get_preset("default"), 0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="?", default=default / "model")
    parser.add_argument("data", type=Path, nargs="?", default=default / "data")
    parser.add_argument("--guidance", default="7.5,2")
    parser.add_argument("--sampler", default="dpmsolver++")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--samples", type=int, default=32)
    return parser.parse_args()


def _planted(images: np.ndarray) -> np.ndarray:
    """Each image mirrored, shifted right by 1/16 of the side, and squashed from 4:3."""
    side = images.shape[1]
    step = max(1, side // 16)
    squashed = [np.asarray(Image.fromarray(np.concatenate([i[:, :side // 6], i, i[:, -side // 6:]],
                                                          axis=1)).resize(
        (side, side), Image.Resampling.BICUBIC)) for i in images]
    return np.concatenate([images[:, :, ::-1], np.roll(images, step, axis=2), np.stack(squashed)])


def main() -> None:
    args = _parse()
    torch.set_num_threads(1)
    loaded = load_pipeline(args.model)
    data = load_audit_data(args.data, loaded.resolution)
    index = KnownImageIndex.build(known_images(data, "all"))
    print(f"{len(index)} known images; load {os.getloadavg()[0]:.2f}")
    for guidance in (float(g) for g in args.guidance.split(",")):
        sampler = SamplerSettings(sampler=args.sampler, steps=args.steps, guidance=guidance,
                                  batch_size=32)
        start = time.perf_counter()
        made = {d.name: generate_images(loaded.pipeline, d.prompt, args.samples, seed=0,
                                        key=d.name, settings=sampler) for d in data.domains}
        print(f"guidance {guidance}: generated in {time.perf_counter() - start:.1f} s")
        for invariances in ((), DEFAULT_FAMILIES):
            settings = ExtractionSettings(samples=args.samples, known_images="all",
                                          sampler=sampler, invariances=invariances)
            start = time.perf_counter()
            records = run_extraction(None, list(data.domains), index, settings, seed=0,
                                     probe=None, evidence_dir=None,
                                     generate=stored(made))
            elapsed = time.perf_counter() - start
            extracted = sum(r.extracted for r in records)
            matched = sum(r.matched_generations for r in records)
            near = sum(r.nonmember_matches for r in records)
            total = args.samples * len(records)
            print(f"  views {','.join(invariances) or 'none'}: extracted {extracted}, matched "
                  f"generations {matched}/{total} (copy rate < {clopper_upper(matched, total):.1%}"
                  f"), non-member matches {near}, search {elapsed:.2f} s "
                  f"(load {os.getloadavg()[0]:.2f})")
            hits = sorted({(r.domain, m["generated_index"]) for r in records for m in r.matches
                           if "view" not in m})
            if not hits or invariances:
                continue
            copies = _planted(np.stack([made[d][g] for d, g in hits]))
            for views in ((), DEFAULT_FAMILIES):
                settings = ExtractionSettings(samples=len(copies), known_images="all",
                                              invariances=views)
                record = run_extraction(None, [SimpleNamespace(name="planted", prompt="")],
                                        index, settings, seed=0, probe=None, evidence_dir=None,
                                        generate=stored({"planted": copies}))[0]
                print(f"    planted copies of {len(hits)} extracting generations (mirrored, "
                      f"shifted, squashed: {len(copies)}), views "
                      f"{','.join(views) or 'none'}: {record.matched_generations} counted")


if __name__ == "__main__":
    main()
