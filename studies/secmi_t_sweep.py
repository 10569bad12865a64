"""Study: SecMI's AUC across the compared timestep, on one model and audit set.

SecMI (t_sec = 100, k = 10) came out *inverted* (AUC < 0.5) on the reference model. This sweeps
the compared timestep t = k, 2k, ..., t_max over one shared inversion trajectory and prints, per
t, the pooled AUC and the member / non-member median round-trip error, so one can see whether
the direction is a bug (wrong at every t) or a regime (changes with t).

    python studies/secmi_t_sweep.py MODEL_DIR DATA_DIR [--t-max 300] [--k 10] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from s2l_scan.attack import Target
from s2l_scan.functional.diffusion import secmi_sweep_scores
from s2l_scan.functional.metrics import auc
from s2l_scan.io.audit_data import load_audit_data
from s2l_scan.io.model import load_pipeline
from s2l_scan.stages.encode import encode_domain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--t-max", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_pipeline(args.model)
    data = load_audit_data(args.data, model.resolution)
    alphas = model.pipeline.scheduler.alphas_cumprod.double()
    target = Target(model.pipeline.unet, alphas, prediction_type=model.prediction_type)
    eps_fn = target.eps_fn()
    ts = list(range(args.k, args.t_max + 1, args.k))
    members: dict[int, list[np.ndarray]] = {t: [] for t in ts}
    nonmembers: dict[int, list[np.ndarray]] = {t: [] for t in ts}
    with torch.inference_mode():
        for domain in data.domains:
            enc = encode_domain(model, domain, 64)
            for x0, cond, out in ((enc.members, enc.member_cond, members),
                                  (enc.nonmembers, enc.nonmember_cond, nonmembers)):
                for t, scores in secmi_sweep_scores(eps_fn, x0, cond, alphas.float(), args.k,
                                                    ts).items():
                    out[t].append(scores.numpy())
    rows = []
    print(f"{'t':>5} {'AUC':>6} {'member err':>11} {'nonmember err':>14}")
    for t in ts:
        m, n = np.concatenate(members[t]), np.concatenate(nonmembers[t])
        row = {"t": t, "auc": auc(m, n), "member_median_error": float(np.median(-m)),
               "nonmember_median_error": float(np.median(-n))}
        rows.append(row)
        print(f"{t:>5} {row['auc']:6.3f} {row['member_median_error']:11.4f} "
              f"{row['nonmember_median_error']:14.4f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
