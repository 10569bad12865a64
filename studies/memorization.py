"""How strongly does a reference-model recipe memorize? Build variants, then try to extract.

For each candidate recipe (the default preset with some knobs changed) this builds the reference
model, then measures what pixel-space extraction depends on, per domain:

* the VAE's reconstruction RMS of the planted duplicates (the floor any regeneration sits on),
* the nearest RMS of M generations (seeded, DDIM, each guidance scale) to a planted duplicate,
* the number of (k, ℓ2, δ)-eidetic matches against an index of the members (the scanner's
  own index and criterion), and how many of them are planted duplicates.

Usage (one JSON line per candidate and guidance is appended to OUT/results.jsonl)::

    python studies/memorization.py --out /tmp/mem --device cuda --samples 64 \\
        base "dup32:duplication_factor=32" "vae:vae_channels=32,64;vae_steps=2000"
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _candidate(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:knob=value;knob=value`` → (NAME, typed overrides), values as in ``--set``."""
    from s2l_scan.reference.presets import coerce_knobs

    name, _, knobs = text.partition(":")
    pairs = [part.partition("=") for part in knobs.split(";") if part.strip()]
    return name, coerce_knobs([(key.strip(), value.strip()) for key, _, value in pairs])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("candidates", nargs="+",
                        help="NAME or NAME:knob=value;knob=value (values as in --set)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, nargs="+", default=[3.0, 7.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scan", action="store_true",
                        help="also scan each candidate (loss, PIA; pooled AUC with CI)")
    args = parser.parse_args()

    from s2l_scan.extraction.index import KnownImageIndex
    from s2l_scan.functional.eidetic import rms_distance
    from s2l_scan.generation import SamplerSettings, generate_images
    from s2l_scan.io.audit_data import load_audit_data
    from s2l_scan.io.model import load_pipeline
    from s2l_scan.reference.build import build_reference
    from s2l_scan.reference.presets import get_preset

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for text in args.candidates:
        name, overrides = _candidate(text)
        preset = get_preset(args.preset).with_overrides(**overrides)
        folder = args.out / f"{name}-seed{args.seed}"
        if not (folder / "manifest.json").is_file():
            build_reference(folder, preset, args.seed, threads=args.threads, device=args.device)
        manifest = json.loads((folder / "manifest.json").read_text())
        pipeline = load_pipeline(folder / "model", device=args.device).pipeline
        pipeline.set_progress_bar_config(disable=True)
        data = load_audit_data(folder / "data", int(manifest["preset"]["image_size"]))
        index = KnownImageIndex.build((str(p), px) for p, px in data.index_images())
        if args.scan:
            aucs = _scan(folder, args.device, args.seed)
            with (args.out / "results.jsonl").open("a") as handle:
                handle.write(json.dumps({"candidate": name, "seed": args.seed,
                                         "device": args.device, "scan": aucs}) + "\n")
            print(name, "pooled AUC", aucs, flush=True)
        for guidance in args.guidance:
            started = time.perf_counter()
            per_domain = []
            for domain in data.domains:
                split = manifest["split"][domain.name]
                dup_ids = {str(image.path) for image in domain.members
                           if image.path.name in split["duplicated_members"]}
                dup_rows = [i for i, known in enumerate(index.ids) if known in dup_ids]
                dup_pixels = index.pixels[dup_rows]
                settings = SamplerSettings(steps=args.steps, guidance=guidance, batch_size=64)
                generated = generate_images(pipeline, domain.prompt, args.samples,
                                            seed=args.seed, key=domain.name, settings=settings)
                matches = index.matches(generated, k=10, delta=0.1)
                to_dup = rms_distance(generated, dup_pixels).min() if dup_rows else None
                per_domain.append({
                    "domain": domain.name, "matches": len({m.generated_index for m in matches}),
                    "dup_matches": sum(index.ids[m.known_index] in dup_ids for m in matches),
                    "nearest_to_dup": None if to_dup is None else round(float(to_dup), 4),
                    "nearest_any": round(float(rms_distance(generated, index.pixels).min()), 4),
                    "vae_floor_dup": _vae_floor(pipeline, dup_pixels),
                })
            record = {"candidate": name, "overrides": {k: str(v) for k, v in overrides.items()},
                      "seed": args.seed, "device": args.device, "guidance": guidance,
                      "samples": args.samples, "build_seconds": manifest["build_seconds"],
                      "generate_seconds": round(time.perf_counter() - started, 1),
                      "matches": sum(d["matches"] for d in per_domain),
                      "dup_matches": sum(d["dup_matches"] for d in per_domain),
                      "domains_with_match": sum(d["matches"] > 0 for d in per_domain),
                      "per_domain": per_domain}
            with (args.out / "results.jsonl").open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            print(name, f"g={guidance}", f"build {manifest['build_seconds']}s",
                  f"matches {record['matches']} (dups {record['dup_matches']}, "
                  f"{record['domains_with_match']} domains)",
                  "nearest→dup", [d["nearest_to_dup"] for d in per_domain],
                  "vae floor", [d["vae_floor_dup"] for d in per_domain], flush=True)


def _scan(folder: Path, device: str, seed: int) -> dict[str, Any]:
    """Pooled AUC [CI] of the loss and PIA attacks with the scanner itself."""
    from s2l_scan.config import make_config
    from s2l_scan.session import ScanInputs, run_scan

    try:
        config = make_config(attacks=["loss", "pia"], probes=[], extraction_samples=0,
                             device=device, seed=seed)
        report = run_scan(ScanInputs(model=str(folder / "model"), data=str(folder / "data")),
                          config)
    except Exception as error:  # a study records a failed scan and goes on
        return {"error": repr(error)}
    return {row.attack: [round(row.auc, 4), *(round(x, 4) for x in row.auc_ci)]
            for row in report.results if row.domain == "pooled"}


def _vae_floor(pipeline: Any, pixels: np.ndarray) -> float | None:
    """RMS of decode(encode(x).mean) against x on [0, 1], worst over the given images."""
    if not len(pixels):
        return None
    vae = pipeline.vae
    x = torch.from_numpy(pixels).to(vae.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.inference_mode():
        y = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    y = (torch.round((y + 1) * 127.5)).permute(0, 2, 3, 1).cpu().numpy()
    rms = np.sqrt((((y - pixels.astype(np.float64)) / 255.0) ** 2).reshape(len(pixels), -1)
                  .mean(1))
    return round(float(rms.max()), 4)


if __name__ == "__main__":
    main()
