"""Power of the gate, today's against the per-domain family design (docs/verdict-maths.md,
"Power"): P(FAIL) at true AUC 0.6-0.9 and P(PASS) at 0.5 and 0.6 for ONE leaking domain in the
default layout (4 domains + pooled; per domain 3 released attacks + 2 probes x 3 attacks = 9 AUC
rows scoring the same images, correlation RHO between rows; 6 Delta rows per domain).

Today's gate: one Holm family of all 75 p-values (45 AUC rows' crossfit_pvalue, here from the
domain's shared permutations, which is the same law; 30 Delta rows;
the Delta rows carry no amplification and are drawn Uniform(0, 1), which only sets the family's
size); FAIL when a row's calibrated AUC > max_auc with Holm-adjusted p <= alpha.
New gate: per domain minP over its 9 AUC rows + the top-members count (shared permutations),
Holm over the 5 domain p-values; FAIL when a rejected domain holds a row with step-down p and
its own Holm level <= alpha and AUC > max_auc; PASS when every row of every domain has
auc_upper_bound <= max_auc. Writes docs/study-data/power-table.json.

    OMP_NUM_THREADS=1 python -m benchmarks.power [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import time
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from s2l_scan.functional import family as F
from s2l_scan.functional import metrics as M
from s2l_scan.functional import power as P

RHO = 0.7
MAX_AUC, ALPHA = 0.6, 0.05
ROWS, DOMAINS, DELTA_ROWS = 9, 4, 6
PERMUTATIONS = 9999  # the scan's default (--quick: 1,999)
FAIL_AUCS = (0.6, 0.65, 0.7, 0.8, 0.9)
PASS_AUCS = (0.5, 0.6)
SIZES = (5, 8, 16, 32, 48, 64, 128)
OUT = Path("docs/study-data/power-table.json")


def _domain(rng: np.random.Generator, n: int, true_auc: float) -> list[tuple[Any, Any]]:
    shift = math.sqrt(2) * NormalDist().inv_cdf(true_auc)
    common = rng.normal(size=n), rng.normal(size=n)
    rows = []
    for _ in range(ROWS):
        own = rng.normal(size=n), rng.normal(size=n)
        m = math.sqrt(RHO) * common[0] + math.sqrt(1 - RHO) * own[0] + shift
        rows.append((m, math.sqrt(RHO) * common[1] + math.sqrt(1 - RHO) * own[1]))
    return rows


def _layout(rng: np.random.Generator, n: int, true_auc: float) -> list[list[tuple[Any, Any]]]:
    domains = [_domain(rng, n, true_auc)] + [_domain(rng, n, 0.5) for _ in range(DOMAINS - 1)]
    pooled = [(np.concatenate([d[r][0] for d in domains]),
               np.concatenate([d[r][1] for d in domains])) for r in range(ROWS)]
    return [*domains, pooled]


def _families(layout: list[list[tuple[Any, Any]]], seed: int,
              ) -> list[tuple[F.FamilyResult, Any]]:
    """Per domain: the family test of its 9 AUC rows + the top-members count, and the rows'
    calibrated AUCs. The AUC columns' raw p are crossfit_pvalue's (same permutations)."""
    out = []
    for index, rows in enumerate(layout):
        perms = F.LabelPermutations.build(rows[0][0].size, rows[0][1].size, seed=seed + index,
                                          permutation_seed=seed + index,
                                          n_permutations=PERMUTATIONS)
        aucs = F.crossfit_auc_statistics(rows, perms)
        top = F.top_members_statistic(rows[0][0], rows[0][1], perms).statistic
        out.append((F.family_test(np.column_stack([aucs, top])), aucs[0]))
    return out


def _new_fail(families: list[tuple[F.FamilyResult, Any]]) -> bool:
    holm = M.holm([f.domain_p for f, _ in families])
    return any(h <= ALPHA and any(max(s, h) <= ALPHA and p > MAX_AUC
                                  for s, p in zip(f.step_down[:ROWS], point, strict=True))
               for (f, point), h in zip(families, holm, strict=True))


def _old_fail(families: list[tuple[F.FamilyResult, Any]], rng: np.random.Generator) -> bool:
    p_values = [float(p) for f, _ in families for p in f.raw[:ROWS]]
    points = [float(p) for _, point in families for p in point]
    adjusted = M.holm(p_values + list(rng.uniform(size=DELTA_ROWS * len(families))))
    return any(a <= ALPHA and p > MAX_AUC for a, p in zip(adjusted, points, strict=False))


def _new_pass(layout: list[list[tuple[Any, Any]]], seed: int) -> bool:
    for index, rows in enumerate(layout):
        for r, (m, n) in enumerate(rows):
            bound = F.auc_upper_bound(m, n, seed=seed + index, bootstrap_seed=seed + r)
            if bound is None or bound > MAX_AUC:
                return False
    return True


def _rate(hits: int, draws: int) -> dict[str, Any]:
    low, high = M.clopper_pearson(hits, draws)
    return {"rate": hits / draws, "ci": [round(low, 3), round(high, 3)], "draws": draws}


def _cell(n: int, draws: int) -> dict[str, Any]:
    cell: dict[str, Any] = {"n": n, "fail_new": {}, "fail_old": {}, "pass_new": {}}
    for true_auc in FAIL_AUCS:
        new = old = 0
        for seed in range(draws):
            rng = np.random.default_rng([n, int(true_auc * 100), seed])
            families = _families(_layout(rng, n, true_auc), seed)
            new += _new_fail(families)
            old += _old_fail(families, rng)
        cell["fail_new"][str(true_auc)] = _rate(new, draws)
        cell["fail_old"][str(true_auc)] = _rate(old, draws)
    for true_auc in PASS_AUCS:
        hits = sum(_new_pass(_layout(np.random.default_rng([n, 7, seed]), n, true_auc), seed)
                   for seed in range(draws))
        cell["pass_new"][str(true_auc)] = _rate(hits, draws)
    for key in ("fail_new", "fail_old"):
        rates = [cell[key][str(a)]["rate"] for a in FAIL_AUCS]
        cell[f"mde_{key[5:]}"] = _mde(rates)
    cell["mde_analytic"] = P.minimum_detectable_auc(n, n, ALPHA, DOMAINS + 1)
    return cell


def _mde(rates: list[float]) -> float | None:
    """The AUC where the simulated P(FAIL) crosses 0.8 (linear between grid points)."""
    for (a0, r0), (a1, r1) in itertools.pairwise(zip(FAIL_AUCS, rates, strict=True)):
        if r0 < 0.8 <= r1:
            return round(a0 + (0.8 - r0) / (r1 - r0) * (a1 - a0), 3)
    return FAIL_AUCS[0] if rates and rates[0] >= 0.8 else None


def _markdown(cells: list[dict[str, Any]]) -> str:
    head = ("| n/class | " + " | ".join(f"FAIL@{a} new / today" for a in FAIL_AUCS)
            + " | PASS@0.5 | PASS@0.6 | MDE new (sim) | MDE analytic | MDE today |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for c in cells:
        fails = " | ".join(f"{c['fail_new'][str(a)]['rate']:.2f} / "
                           f"{c['fail_old'][str(a)]['rate']:.2f}" for a in FAIL_AUCS)
        passes = " | ".join(f"{c['pass_new'][str(a)]['rate']:.2f}" for a in PASS_AUCS)
        mdes = " | ".join("—" if v is None else f"{v:.3f}"
                          for v in (c["mde_new"], c["mde_analytic"], c["mde_old"]))
        lines.append(f"| {c['n']} | {fails} | {passes} | {mdes} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.power", allow_abbrev=False)
    parser.add_argument("--quick", action="store_true",
                        help="10 draws, n in 8, 16, 32, 1,999 permutations")
    parser.add_argument("--draws", type=int, default=50, help="draws per cell (full run)")
    parser.add_argument("--permutations", type=int, default=9999, help="per domain (full run)")
    args = parser.parse_args()
    global PERMUTATIONS
    draws = 10 if args.quick else args.draws
    sizes = (8, 16, 32) if args.quick else SIZES
    PERMUTATIONS = 1999 if args.quick else args.permutations
    start, load = time.perf_counter(), os.getloadavg()
    cells = []
    for n in sizes:
        cells.append(_cell(n, draws))
        print(f"n = {n}: {time.perf_counter() - start:.0f} s", flush=True)
    body = {"command": f"python -m benchmarks.power{' --quick' if args.quick else ''} "
                       f"--draws {draws} --permutations {PERMUTATIONS}",
            "draws": draws, "rho": RHO, "permutations": PERMUTATIONS, "cells": cells,
            "seconds": round(time.perf_counter() - start, 1),
            "load_before": load, "load_after": os.getloadavg(), "machine": platform.node()}
    if not args.quick:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(body, indent=1) + "\n")
    print(_markdown(cells))
    print(f"{body['seconds']} s; load {load} -> {body['load_after']}")


if __name__ == "__main__":
    main()
