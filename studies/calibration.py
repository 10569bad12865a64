"""Study: does reference-model calibration (``--base-model``) beat the uncalibrated attacks?

For each seed, builds a base and a fine-tune of it on a private member set (the reference
builder's ``finetune`` preset, small enough for a busy CPU; ``--set`` changes its knobs),
scans the fine-tune with its base, and prints per attack the pooled calibrated
(cross-fitted) AUC and the TPR at the lowest FPR the calibration halves can estimate, for the
plain attack and its ``+base`` variant.

    python studies/calibration.py OUT_DIR [--seeds 0 1 2] [--attacks loss pia secmi]
        [--set KNOB=VALUE ...] [--json RESULTS.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from s2l_scan.checks import calibrated
from s2l_scan.config import make_config
from s2l_scan.plan import ScanInputs
from s2l_scan.reference.build import build_reference
from s2l_scan.reference.presets import coerce_knobs, get_preset
from s2l_scan.session import run_scan


def lowest_tpr(row: Any) -> tuple[float | None, float | None]:
    """(TPR, target FPR) at the first estimable target, else at the lowest estimable FPR."""
    for estimate in row.tpr_estimates:
        chosen = estimate if estimate["estimable"] else estimate.get("fallback")
        if chosen and chosen.get("tpr") is not None:
            return chosen["tpr"], chosen["alpha"]
    return None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--attacks", nargs="+", default=["loss", "pia", "secmi"])
    parser.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    knobs = coerce_knobs([(s.split("=", 1)[0], s.split("=", 1)[1]) for s in args.set])
    # the "finetune" preset: a base, then a fine-tune of it on the members (minutes per seed)
    preset = get_preset("finetune").with_overrides(**knobs)
    results: list[dict[str, Any]] = []
    for seed in args.seeds:
        folder = args.out / f"seed{seed}"
        started = time.perf_counter()
        if not (folder / "manifest.json").is_file():
            build_reference(folder, preset, seed)
        built = time.perf_counter()
        config = make_config(attacks=args.attacks, extraction_samples=0, probes=[],
                             bootstrap=200, permutations=200, seed=seed)
        report = run_scan(ScanInputs(str(folder / "model"), str(folder / "data"),
                                     base_model=str(folder / "base")), config)
        rows = {(r.attack, r.domain): r for r in report.results}
        for attack in args.attacks:
            for name in (attack, calibrated(attack)):
                row = rows[(name, "pooled")]
                tpr, fpr = lowest_tpr(row)
                results.append({"seed": seed, "attack": name, "auc": row.auc,
                                "auc_ci": row.auc_ci, "auc_raw": row.auc_raw, "tpr": tpr,
                                "at_fpr": fpr, "p_value": row.p_value})
                print(f"seed {seed} {name:12s} AUC {row.auc:.3f} "
                      f"[{row.auc_ci[0]:.3f}, {row.auc_ci[1]:.3f}] raw {row.auc_raw:.3f} "
                      f"TPR {tpr} @ FPR {fpr}", flush=True)
        print(f"seed {seed}: build {built - started:.0f} s, scan "
              f"{time.perf_counter() - built:.0f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"preset": dataclasses.asdict(preset),
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
