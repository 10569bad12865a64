"""Draw the S2L study's figures and print its table from ``studies/s2l_study.py``'s job files.

One PNG per varied knob: pooled Δ AUC (probe − released model) against the knob's value, one
marker per seed with its paired 95 % bootstrap CI, the seed mean as a line, per attack. Needs
matplotlib (``pip install matplotlib``; not a dependency of the scanner).

Usage::

    python studies/plot_study.py STUDY_DIR docs/figures
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

KNOBS = {"sigma": "noise σ (absolute)", "rank": "LoRA rank",
         "tokens": "textual-inversion tokens", "lr": "LoRA learning rate", "steps": "LoRA steps",
         "sp_samples": "SP-set images per domain", "sp_guidance": "SP-set guidance"}


# The LoRA axes the study varies one at a time around the default configuration; the rank
# group's default-rank rows are that configuration, so they are every such axis's middle point.
LORA_AXES = ("lr", "steps", "sp_samples", "sp_guidance")
DEFAULT_RANK = 4


def load(folder: Path) -> list[dict[str, Any]]:
    """Every probe row of every finished job, with the job's knob value attached."""
    from s2l_scan.config import make_config

    defaults = make_config()
    rows = []
    for path in sorted(folder.glob("job-*.json")):
        job = json.loads(path.read_text())
        for row in job["rows"]:
            if row["probe"] is None:
                continue
            knob = job["knob"]
            value = row["options"].get(knob, job["config"].get(knob))
            rows.append({**row, "seed": job["seed"], "knob": knob,
                         "value": row["probe"] if knob == "method" else value})
            if knob == "rank" and value == DEFAULT_RANK:
                rows += [{**row, "seed": job["seed"], "knob": axis,
                          "value": row["options"].get(axis, getattr(defaults, axis, None))}
                         for axis in LORA_AXES]
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per knob value and attack, Δ per seed with CIs, and the seed mean."""
    groups: dict[tuple[str, Any, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["knob"], row["value"], row["attack"])].append(row)
    lines = ["| knob | value | attack | Δ AUC per seed [paired 95 % CI] | mean Δ |",
             "| --- | --- | --- | --- | --- |"]
    for (knob, value, attack), members in sorted(groups.items(), key=lambda kv: (
            kv[0][0], str(kv[0][1]) if kv[0][0] == "method" else float(kv[0][1]), kv[0][2])):
        members.sort(key=lambda r: r["seed"])
        cells = "; ".join(f"s{r['seed']}: {r['delta']:+.3f} [{r['delta_ci'][0]:+.3f}, "
                          f"{r['delta_ci'][1]:+.3f}]" for r in members)
        mean = sum(r["delta"] for r in members) / len(members)
        lines.append(f"| {knob} | {value} | {attack} | {cells} | {mean:+.3f} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for knob in sorted({r["knob"] for r in rows if r["knob"] != "method"}):
        mine = [r for r in rows if r["knob"] == knob]
        attacks = sorted({r["attack"] for r in mine})
        figure, axes = plt.subplots(1, len(attacks), figsize=(4.2 * len(attacks), 3.4),
                                    squeeze=False)
        for axis, attack in zip(axes[0], attacks, strict=True):
            points = [r for r in mine if r["attack"] == attack]
            values = sorted({float(r["value"]) for r in points})
            for offset, seed in enumerate(sorted({r["seed"] for r in points})):
                seeded = sorted((r for r in points if r["seed"] == seed),
                                key=lambda r: float(r["value"]))
                xs = [float(r["value"]) * (1 + 0.06 * (offset - 1)) for r in seeded]
                ys = [r["delta"] for r in seeded]
                errors = [[y - r["delta_ci"][0] for y, r in zip(ys, seeded, strict=True)],
                          [r["delta_ci"][1] - y for y, r in zip(ys, seeded, strict=True)]]
                axis.errorbar(xs, ys, yerr=errors, fmt="o", ms=4, capsize=2, alpha=0.7,
                              label=f"seed {seed}")
            means = [sum(r["delta"] for r in points if float(r["value"]) == v)
                     / sum(1 for r in points if float(r["value"]) == v) for v in values]
            axis.plot(values, means, "k-", lw=1.5, label="mean")
            axis.axhline(0.0, color="grey", lw=0.8, ls="--")
            axis.set_xscale("log")
            axis.set_xlabel(KNOBS.get(knob, knob))
            axis.set_ylabel("Δ AUC (pooled, probe − released)")
            axis.set_title(attack)
        axes[0][0].legend(fontsize=7)
        figure.tight_layout()
        path = out / f"s2l-{knob}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def main() -> None:
    rows = load(Path(sys.argv[1]))
    print(table(rows))
    if len(sys.argv) > 2:
        for path in plot(rows, Path(sys.argv[2])):
            print("wrote", path)


if __name__ == "__main__":
    main()
