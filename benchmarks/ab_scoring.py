"""A/B timing of the baseline-attack stage: this tree's scoring vs an older tree's.

    python benchmarks/ab_scoring.py OLD_TREE MODEL_DIR DATA_DIR [--domains a,b] [--repeats 3]

OLD_TREE is an exported older commit (``git archive COMMIT | tar -x -C OLD_TREE``, with
``OLD_TREE/s2l_scan/{baselines,probes}`` linked to ``../baselines`` and ``../probes``). Each
repeat runs the old and the new stage in fresh processes, interleaved, 1 thread; it prints
the medians and whether the scores are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys, time, torch
torch.set_num_threads(1)
from s2l_scan.attack import make_attack
from s2l_scan.config import make_config
from s2l_scan.io.audit_data import load_audit_data
from s2l_scan.io.model import load_pipeline
from s2l_scan.stages.baselines import run_baselines
from s2l_scan.stages.encode import Subject, encode_domain
import s2l_scan.baselines
domains = tuple(sys.argv[3].split(",")) if sys.argv[3] else None
config = make_config(probes="", extraction_samples=0, domains=domains)
model = load_pipeline(__import__("pathlib").Path(sys.argv[1]))
data = load_audit_data(__import__("pathlib").Path(sys.argv[2]), model.resolution, domains=domains)
attacks = [make_attack(n, config.attack_options.get(n, {}), seed=config.seed)
           for n in config.attacks]
encoded = {d.name: encode_domain(model, d, config.batch_size) for d in data.domains}
subject = Subject(model, data, encoded, {n: 0.5 for n in [*encoded, "pooled"]})
calls = [0]
model.pipeline.unet.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
started = time.perf_counter()
rows = run_baselines(subject, attacks, config)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "forwards": calls[0],
                  "scores": [r.member_scores + r.nonmember_scores for r in rows]}))
"""


def run(tree: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": tree, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, args.model, args.data, args.domains],
                          env=env, capture_output=True, text=True, check=True, cwd="/")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--domains", default="")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    new_tree = str(Path(__file__).resolve().parent.parent)
    times: dict[str, list[float]] = {"old": [], "new": []}
    last = {}
    for _ in range(args.repeats):
        for name, tree in (("old", args.old), ("new", new_tree)):
            last[name] = run(tree, args)
            times[name].append(last[name]["seconds"])
    same = last["old"]["scores"] == last["new"]["scores"]
    for name in ("old", "new"):
        print(f"{name}: median {statistics.median(times[name]):.2f} s of {times[name]}, "
              f"{last[name]['forwards']} UNet forwards")
    print(f"speed-up {statistics.median(times['old']) / statistics.median(times['new']):.3f}; "
          f"scores identical: {same}; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
