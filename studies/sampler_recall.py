"""Study: planted-member recall and cost of extraction per sampler (issue 15/18).

On one reference build (default: the cached default reference), for each ``--sampler
NAME:STEPS`` and each ``--seeds`` seed, generates ``--samples`` images per domain on the
released model with the scan's extraction settings (``--guidance``, default 7, several
interleaved; the scan's eidetic k and δ, index of the members) and counts

* planted members extracted (the build's ``duplicated_members``: what extraction should find),
* matched generations (generations within δ of a planted member),
* non-planted members extracted (should be 0),
* generation seconds and UNet forwards.

All samplers run in one process, interleaved per seed, so their time ratio is measured under
the same load. One JSON line per (sampler, seed) is printed; ``--json`` writes them all.

    python studies/sampler_recall.py --sampler ddim:50 dpmsolver++:20 --seeds 0 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from s2l_scan.generation import SamplerSettings, generate_images
from s2l_scan.io.audit_data import load_audit_data
from s2l_scan.io.model import load_pipeline
from s2l_scan.probes.extraction import ExtractionSettings, build_known_index, training_mask
from s2l_scan.reference.cache import cache_key, cache_root
from s2l_scan.reference.presets import get_preset


def _parse() -> argparse.Namespace:
    default = cache_root() / "reference" / cache_key(get_preset("default"), 0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, nargs="?", default=default)
    parser.add_argument("--sampler", nargs="+", default=["ddim:50", "dpmsolver++:20"],
                        help="NAME:STEPS, NAME one of s2l_scan.samplers.SAMPLERS")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--guidance", type=float, nargs="+", default=[7.0],
                        help="guidance scales, each run with every sampler (interleaved)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path)
    return parser.parse_args()


def main() -> None:
    args = _parse()
    torch.set_num_threads(1)
    manifest = json.loads((args.reference / "manifest.json").read_text())
    planted = {f"{domain}/members/{name}" for domain, record in manifest["split"].items()
               for name in record["duplicated_members"]}
    model = load_pipeline(args.reference / "model")
    data = load_audit_data(args.reference / "data", model.resolution)
    index = build_known_index(data, "members")
    extraction = ExtractionSettings()
    training = training_mask(index.ids, extraction)
    forwards = {"n": 0}
    unet_forward = model.pipeline.unet.forward

    def counted(*a: Any, **k: Any) -> Any:
        forwards["n"] += 1
        return unet_forward(*a, **k)

    model.pipeline.unet.forward = counted
    results = []
    for seed in args.seeds:
        for spec, guidance in itertools.product(args.sampler, args.guidance):
            name, steps = spec.rsplit(":", 1)
            settings = SamplerSettings(sampler=name, steps=int(steps), guidance=guidance,
                                       batch_size=args.batch_size)
            forwards["n"] = 0
            start = time.perf_counter()
            found: set[str] = set()
            matched = 0
            for domain in data.domains:
                images = generate_images(model.pipeline, domain.prompt, args.samples, seed=seed,
                                         key=domain.name, settings=settings)
                matches = index.matches(images, k=extraction.k, delta=extraction.delta,
                                        training=training)
                found |= {index.ids[m.known_index] for m in matches}
                matched += len({m.generated_index for m in matches
                                if index.ids[m.known_index] in planted})
            seconds = time.perf_counter() - start
            row = {"sampler": name, "steps": int(steps), "guidance": guidance, "seed": seed,
                   "samples_per_domain": args.samples, "domains": len(data.domains),
                   "planted": len(planted), "planted_extracted": len(found & planted),
                   "matched_generations": matched, "other_extracted": len(found - planted),
                   "seconds": round(seconds, 1), "unet_forwards": forwards["n"],
                   "load": os.getloadavg()[0]}
            print(json.dumps(row), flush=True)
            results.append(row)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
