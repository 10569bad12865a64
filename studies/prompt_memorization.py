"""Study: prompt-level memorization detection without known images, on a reference build.

Runs Wen et al.'s text-guidance magnitude, Asthana & Belagiannis's log-probability anisotropy
score (``--anisotropy-starts``) and Carlini et al.'s near-copy clique
(:mod:`s2l_scan.stages.memorization`) on every domain prompt of a reference build and on
control prompts made of the same words but never trained on, and checks each flagged clique
against the build's manifest (is it the planted duplicate?), an oracle the detectors never see.

    python studies/prompt_memorization.py REFERENCE_DIR OUT_DIR [--generations 64]
        [--starts 8] [--detect-steps 1] [--anisotropy-starts 0] [--control "a photo of" ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from s2l_scan.io.audit_data import load_audit_data
from s2l_scan.io.model import load_pipeline
from s2l_scan.stages.memorization import MemorizationSettings, run_memorization


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--generations", type=int, default=64)
    parser.add_argument("--starts", type=int, default=8)
    parser.add_argument("--detect-steps", type=int, default=1)
    parser.add_argument("--anisotropy-starts", type=int, default=0)
    parser.add_argument("--delta", type=float, default=0.1)
    parser.add_argument("--min-clique", type=int, default=4)
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--control", nargs="*", default=["a photo of", "identity of photo a"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_pipeline(args.reference / "model")
    data = load_audit_data(args.reference / "data", model.resolution)
    manifest = json.loads((args.reference / "manifest.json").read_text())
    prompts = [(d.name, d.prompt, "prompt") for d in data.domains]
    prompts += [("control", c, "control") for c in args.control]
    settings = MemorizationSettings(starts=args.starts, detect_steps=args.detect_steps,
                                    generations=args.generations, delta=args.delta,
                                    tiles=args.tiles, anisotropy_starts=args.anisotropy_starts,
                                    min_clique=args.min_clique)
    args.out.mkdir(parents=True, exist_ok=True)  # results.json goes there, cliques or none
    records = run_memorization(model, prompts, settings, evidence_dir=args.out)
    rows = []
    for record in records:
        planted = None
        if record.flagged_clique and record.domain in manifest["split"]:
            from s2l_scan.generation import SamplerSettings, generate_images

            split = manifest["split"][record.domain]
            images = generate_images(model.pipeline, record.prompt, args.generations,
                                     seed=settings.seed, key=f"clique/{record.prompt}",
                                     settings=SamplerSettings(settings.sampler_steps,
                                                              settings.guidance))
            folder = args.reference / "data" / record.domain / "members"
            dups = [np.asarray(Image.open(folder / f), dtype=float) / 255
                    for f in split["duplicated_members"]]
            planted = [min(float(np.sqrt(((images[i] / 255 - d) ** 2).mean())) for d in dups)
                       for i in record.clique]
        rows.append({"domain": record.domain, "prompt": record.prompt,
                     "magnitude": record.magnitude, "clique": len(record.clique),
                     **({} if record.anisotropy is None else {
                         "anisotropy": record.anisotropy.value,
                         "anisotropy_norm": float(np.mean(record.anisotropy.norm)),
                         "anisotropy_alignment": float(np.mean(record.anisotropy.alignment))}),
                     "flagged_clique": record.flagged_clique, "evidence": record.evidence,
                     "clique_rms_to_planted": planted})
        print(json.dumps(rows[-1]), flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
