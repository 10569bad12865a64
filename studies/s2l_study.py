"""The Shake-to-Leak study: does shaking the reference model amplify membership inference?

Runs scans of one model with one probe knob varied at a time (LoRA rank, textual-inversion
tokens, noise σ, learning rate, steps, SP-set size and guidance, method), each over several
seeds (the seed drives the SP set, the probe's initialisation and noise, and the bootstrap),
in parallel worker processes with one torch thread each. Every finished scan writes its pooled
rows to ``OUT/job-<id>.json`` at once, so an interrupted study keeps what it finished.
``studies/plot_study.py`` draws the figures from those files.

Usage::

    python studies/s2l_study.py --model REF/model --data REF/data --out OUT --workers 14
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ATTACKS = ["loss", "pia"]


def jobs(seeds: list[int]) -> list[dict[str, Any]]:
    """One scan per entry: a group name, the knob it varies, and the scan's config."""
    grid: list[tuple[str, str, dict[str, Any]]] = [
        ("noise", "sigma", {"probes": ["noise"],
                            "probe_options": {"noise": {"sigma": [2e-4, 8e-4, 3.2e-3, 1.28e-2]}}}),
        ("rank", "rank", {"probes": ["lora"], "probe_options": {"lora": {"rank": [1, 4]}}}),
        ("rank", "rank", {"probes": ["lora"], "probe_options": {"lora": {"rank": [16, 64]}}}),
        ("tokens", "tokens", {"probes": ["textual_inversion"],
                              "probe_options": {"textual_inversion": {"tokens": [1, 4, 16]}}}),
        ("lr", "lr", {"probes": ["lora"], "probe_options": {"lora": {"lr": [1e-4, 1e-2]}}}),
        ("steps", "steps", {"probes": ["lora"], "probe_options": {"lora": {"steps": [50, 300]}}}),
        ("sp_samples", "sp_samples", {"probes": ["lora"], "sp_samples": 8}),
        ("sp_samples", "sp_samples", {"probes": ["lora"], "sp_samples": 64}),
        ("sp_guidance", "sp_guidance", {"probes": ["lora"], "sp_guidance": 3.0}),
        ("sp_guidance", "sp_guidance", {"probes": ["lora"], "sp_guidance": 12.0}),
        ("method", "method", {"probes": ["end_to_end", "end_to_end_ood"]}),
        ("method", "method", {"probes": ["dreambooth", "hypernetwork"]}),
        ("method", "method", {"probes": ["textual_inversion+lora"]}),
    ]
    return [{"id": f"{group}-{number}-seed{seed}", "group": group, "knob": knob, "seed": seed,
             "config": {**config, "seed": seed}}
            for seed in seeds for number, (group, knob, config) in enumerate(grid)]


def run_job(job: dict[str, Any], model: str, data: str, out: str) -> str:
    import torch

    from s2l_scan.config import make_config
    from s2l_scan.session import ScanInputs, run_scan

    torch.set_num_threads(1)
    started = time.perf_counter()
    config = make_config(attacks=ATTACKS, extraction_samples=0, threads=1, **job["config"])
    report = run_scan(ScanInputs(model=model, data=data), config)
    rows = []
    for row in report.results:
        if row.domain != "pooled":
            continue
        probe = row.settings.get("probe", {})
        rows.append({"probe": row.probe, "attack": row.attack, "auc": row.auc,
                     "auc_ci": row.auc_ci, "delta": row.delta_auc, "delta_ci": row.delta_auc_ci,
                     "n": [row.n_members, row.n_nonmembers],
                     "options": {k: v for k, v in probe.items()
                                 if isinstance(v, int | float | str) and k != "label"},
                     "trainable_parameters": probe.get("trainable_parameters")})
    record = {**job, "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    path = Path(out) / f"job-{job['id']}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return f"{job['id']} {record['seconds']}s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--only", nargs="*", help="run only these groups")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    todo = [job for job in jobs(args.seeds)
            if (not args.only or job["group"] in args.only)
            and not (args.out / f"job-{job['id']}.json").exists()]
    # Slow groups first, so the pool's tail is short.
    order = {"method": 0, "rank": 1, "steps": 2, "tokens": 3}
    todo.sort(key=lambda job: (order.get(job["group"], 9), job["seed"]))
    print(f"{len(todo)} jobs on {args.workers} workers", flush=True)
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(run_job, job, args.model, args.data, str(args.out))
                   for job in todo]
        for future in as_completed(futures):
            try:
                print(future.result(), flush=True)
            except Exception as error:  # a failed job is reported, the others go on
                print(f"job failed: {error!r}", flush=True)


if __name__ == "__main__":
    main()
