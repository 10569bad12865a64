"""Benchmark: does the gate, as wired, catch the memorized few? (issue 25, "Done when").

Synthetic scans judged by the real gate (:func:`s2l_scan.gate.decide`): ``--domains`` domains
(and ``pooled``) of ``n`` members and ``n`` non-members, three attacks per domain whose scores
share each image's noise (correlation ``--rho``); in ONE domain, ``k`` members score far above
every non-member (memorized) and the rest are null; every other domain is null. Per (n, k), the
rate of scans whose verdict is FAILED, with its Clopper–Pearson 95 % CI (draws independent:
fresh scores each). k = 0 is the false-fail rate on null data.

    python -m benchmarks.memorized_few --sizes 16 48 --ks 0 2 4 8 --draws 30
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from s2l_scan.checks import Outcome
from s2l_scan.config import make_config
from s2l_scan.functional.metrics import clopper_pearson
from s2l_scan.gate import decide
from s2l_scan.report.model import ResultRow, ScanReport

ATTACKS = ("loss", "secmi", "pia")


def _row(attack: str, domain: str, members: np.ndarray, nonmembers: np.ndarray) -> ResultRow:
    """A row as the stages would give it; the gate recomputes every figure it judges."""
    from s2l_scan.functional.metrics import auc, crossfit_auc

    fit = crossfit_auc({"": members}, {"": nonmembers})
    return ResultRow(attack=attack, probe=None, domain=domain, auc=fit.auc,
                     auc_ci=(max(0.0, fit.auc - 0.2), min(1.0, fit.auc + 0.2)),
                     auc_raw=auc(members, nonmembers), tpr_at_1pct_fpr=None,
                     tpr_at_01pct_fpr=None, asr=0.5, blind_auc=0.5, blind_auc_ci=(0.4, 0.6),
                     confounded=False, n_members=len(members), n_nonmembers=len(nonmembers),
                     member_scores=[float(s) for s in members],
                     nonmember_scores=[float(s) for s in nonmembers])


def scan(n: int, k: int, domains: int, rho: float, rng: np.random.Generator) -> ScanReport:
    """One synthetic scan: domain 0 holds the k memorized members."""
    rows: list[ResultRow] = []
    pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {a: ([], []) for a in ATTACKS}
    for d in range(domains):
        shared_m, shared_n = rng.normal(size=n), rng.normal(size=n)
        for attack in ATTACKS:
            own = np.sqrt(1 - rho)
            members = np.sqrt(rho) * shared_m + own * rng.normal(size=n)
            nonmembers = np.sqrt(rho) * shared_n + own * rng.normal(size=n)
            if d == 0 and k:
                members[:k] = nonmembers.max() + 1.0 + rng.random(k)
            rows.append(_row(attack, f"d{d}", members, nonmembers))
            pooled[attack][0].append(members)
            pooled[attack][1].append(nonmembers)
    if domains > 1:
        rows += [_row(a, "pooled", np.concatenate(m), np.concatenate(x))
                 for a, (m, x) in pooled.items()]
    config = make_config()
    report = ScanReport(model={}, data={}, config=config.to_dict(), results=rows, packages={},
                        timestamps={})
    return decide(report, config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 48])
    parser.add_argument("--ks", type=int, nargs="+", default=[0, 2, 4, 8])
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--domains", type=int, default=4)
    parser.add_argument("--rho", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    started = time.time()
    for n in args.sizes:
        for k in args.ks:
            if k > n:
                continue
            outcomes = [scan(n, k, args.domains, args.rho, rng).outcome
                        for _ in range(args.draws)]
            failed = sum(o is Outcome.FAILED for o in outcomes)
            low, high = clopper_pearson(failed, args.draws)
            print(json.dumps({"n": n, "k": k, "draws": args.draws, "failed": failed,
                              "inconclusive": sum(o is Outcome.INCONCLUSIVE for o in outcomes),
                              "fail_rate": failed / args.draws, "ci": [low, high],
                              "domains": args.domains, "rho": args.rho,
                              "seconds": round(time.time() - started, 1),
                              "load": os.getloadavg()[0]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
