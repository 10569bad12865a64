"""Null rate of the ``confounded`` flag on iid member / non-member sets, through the project's
own :func:`~s2l_scan.baselines.blind.blind_baseline` (the extraction-and-confounding issue,
point 4).

Each draw makes fresh members and non-members from one distribution (smooth random images with
fine grain, as tests/test_blind.py; seed = draw number, so the draws are independent), runs the
blind baseline (seeded by the draw) and asks ``confounded`` with the attack at chance (AUC 0.5):
the least an attack can be, so "comparable" holds whenever the blind AUC is at or above ½ and
the rate is the flag's worst case over attack AUCs. It prints the one-sided rule's rate (now)
beside the two-sided one's (before: blind CI excludes ½ on either side and |blind − ½| ≥ ½·
|attack − ½|) on the same draws, each with its exact Clopper–Pearson 95% CI.

    python -m benchmarks.confounded_null [DRAWS] [N_PER_CLASS]
"""

from __future__ import annotations

import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from s2l_scan.baselines import blind as B
from s2l_scan.functional.metrics import clopper_pearson


def _images(rng: np.random.Generator, n: int, size: int = 32) -> np.ndarray:
    base = rng.normal(0.5, 0.15, (n, 8, 8, 3)).repeat(size // 8, 1).repeat(size // 8, 2)
    pixels = np.clip(base + rng.normal(0, 0.02, (n, size, size, 3)), 0, 1)
    return (pixels * 255).round().astype(np.uint8)


def _two_sided(attack: float, blind: B.BlindResult) -> bool:
    significant = blind.ci[0] > 0.5 or blind.ci[1] < 0.5
    return significant and abs(blind.auc - 0.5) >= B.COMPARABLE_FRACTION * abs(attack - 0.5)


def main(draws: int = 400, n: int = 48) -> None:
    now, before = 0, 0
    start = time.perf_counter()
    with threadpool_limits(1):
        for draw in range(draws):
            rng = np.random.default_rng(draw)
            blind = B.blind_baseline(_images(rng, n), _images(rng, n), seed=draw)
            now += B.confounded(0.5, blind)
            before += _two_sided(0.5, blind)
    elapsed = time.perf_counter() - start
    for name, count in (("one-sided (now)", now), ("two-sided (before)", before)):
        low, high = clopper_pearson(count, draws)
        print(f"{name}: {count}/{draws} = {count / draws:.1%} "
              f"[{low:.1%}, {high:.1%}] at {n}/{n}")
    print(f"{elapsed:.0f} s")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
