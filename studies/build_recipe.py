"""Study: what a reference-build recipe costs and which signals it keeps (issue 18, "Scale").

For each ``--seeds`` seed, builds the ``--preset`` reference with the ``--set`` overrides into
``OUT/seed-N`` (skipped when that folder already holds a build, so a study can be resumed or
re-summarised), then measures what the default reference exists for:

* cost: the builder's wall seconds, per phase (``phase_seconds``) and the recipe's step counts
  (compare recipes by steps × a per-step cost measured in one run: wall seconds on a shared
  machine depend on its load),
* the VAE's reconstruction RMS ([0, 1] pixels, posterior mean, like the scanner encodes) of
  every member and of the planted ones: extraction at δ = 0.1 needs it well below δ,
* the default scan without probes (``s2l-scan scan MODEL --data DATA --probes ''``: loss,
  SecMI, PIA, extraction on the released model with the scan's defaults): calibrated AUC per
  attack and domain, planted members extracted, matched generations, non-planted members
  extracted (should be none), nearest distance per domain.

``--folders`` summarises builds made elsewhere (e.g. the cached default reference) the same way.
One JSON line per build is printed; ``--json`` writes them all.

    python studies/build_recipe.py OUT --seeds 0 1 2 --set unet_steps=450 --set lr=0.003
    python studies/build_recipe.py OUT --folders ~/.cache/s2l-scan/reference/default-…-seed0-v0.1.0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from s2l_scan.reference.build import build_reference
from s2l_scan.reference.presets import coerce_knobs, get_preset


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="builds go to OUT/seed-N; scans beside them")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                        help="preset override, as `s2l-scan reference build --set`")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--folders", type=Path, nargs="+", default=[],
                        help="summarise these existing builds instead of building")
    parser.add_argument("--json", type=Path)
    return parser.parse_args()


def vae_rms(build: Path, manifest: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Reconstruction RMS of every member PNG, and of the planted ones, in [0, 1] pixels."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(build / "model" / "vae").eval()
    every, planted = [], []
    for domain, record in manifest["split"].items():
        for name in record["members"]:
            image = Image.open(build / "data" / domain / "members" / name).convert("RGB")
            pixels = np.asarray(image, np.float32) / 255.0
            x = torch.from_numpy(pixels * 2 - 1).permute(2, 0, 1)[None]
            with torch.no_grad():
                back = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
            back_pixels = (back[0].permute(1, 2, 0).numpy() + 1) / 2
            rms = float(np.sqrt(((back_pixels - pixels) ** 2).mean()))
            every.append(rms)
            if name in record["duplicated_members"]:
                planted.append(rms)
    return every, planted


def summarise(build: Path, scan_dir: Path) -> dict[str, Any]:
    manifest = json.loads((build / "manifest.json").read_text())
    every, planted_rms = vae_rms(build, manifest)
    report = scan_dir / "scan.json"
    if not report.exists():  # the default scan, probes off, its own unit store
        scan_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "s2l_scan", "scan", str(build / "model"),
                        "--data", str(build / "data"), "--probes", "", "--threads", "1",
                        "--cache-dir", str(scan_dir / "units"), "--report-json", str(report),
                        "-q"], check=False)
        if not report.exists():  # exit 1 is a FAILED verdict (a report); 2 and 4 are errors
            raise SystemExit(f"the scan of {build} wrote no report")
    scan = json.loads(report.read_text())
    planted = {f"{domain}/members/{name}" for domain, record in manifest["split"].items()
               for name in record["duplicated_members"]}
    released = [record for record in scan["extraction"] if record["probe"] is None]
    extracted = {match["known"] for record in released for match in record["matches"]}
    preset = manifest["preset"]
    return {
        "build": str(build), "seed": manifest["seed"],
        "recipe": {knob: preset[knob] for knob in ("vae_steps", "unet_steps", "batch_size", "lr",
                                                   "vae_lr", "vae_channels", "latent_channels")},
        "build_seconds": manifest["build_seconds"],
        "phase_seconds": manifest.get("phase_seconds"),
        "vae_rms_members": {"mean": round(float(np.mean(every)), 4),
                            "max": round(float(np.max(every)), 4)},
        "vae_rms_planted": [round(value, 4) for value in planted_rms],
        "auc": {f"{row['attack']}/{row['domain']}": round(row["auc"], 3)
                for row in scan["results"] if row["probe"] is None},
        "planted_extracted": len(extracted & planted),
        "planted": len(planted),
        "nonplanted_extracted": sorted(extracted - planted),
        "matched_generations": sum(record["matched_generations"] for record in released),
        "nonmember_matches": sum(record["nonmember_matches"] for record in released),
        "nearest": {record["domain"]: record["nearest_distance"] for record in released},
    }


def main() -> None:
    args = _parse()
    torch.set_num_threads(1)
    rows = []
    if args.folders:
        jobs = [(folder, args.out / folder.name) for folder in args.folders]
    else:
        preset = get_preset(args.preset).with_overrides(
            **coerce_knobs([(name, value) for name, _, value in
                            (knob.partition("=") for knob in args.set)]))
        jobs = []
        for seed in args.seeds:
            build = args.out / f"seed-{seed}"
            if not (build / "manifest.json").exists():
                build_reference(build, preset, seed=seed, threads=1)
            jobs.append((build, build))
    for build, scan_dir in jobs:
        row = summarise(build, scan_dir)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
