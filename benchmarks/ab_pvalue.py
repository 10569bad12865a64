"""A/B of the permutation test behind the Holm correction (issue 18): the code before
(label matrix shuffled out of place, numpy's BLAS at its default thread count) against the
scan's now (shuffled in place, BLAS held to one thread as ``session.run`` does), interleaved,
median of 5 each, 9,999 permutations; the p-values must be equal.

    python -m benchmarks.ab_pvalue
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from s2l_scan.functional import metrics

NEW = metrics._permuted_half_aucs


def _before(member: Any, nonmember: Any, half: Any, rng: np.random.Generator,
            count: int) -> Any:
    n1, n0 = half[0].size, half[1].size
    pooled = np.concatenate([member[:, half[0]], nonmember[:, half[1]]], axis=1)
    ranks = metrics._average_ranks(pooled)
    labels = np.zeros((count, n1 + n0))
    labels[:, :n1] = 1.0
    labels = rng.permuted(labels, axis=1)
    return (labels @ ranks.T - n1 * (n1 + 1) / 2.0) / (n1 * n0)


def main() -> None:
    rng = np.random.default_rng(0)
    cases = {"a domain, 48 + 48, 1 candidate": (48, 1), "a domain, 48 + 48, 4 candidates": (48, 4),
             "pooled, 192 + 192, 1 candidate": (192, 1)}
    for name, (n, k) in cases.items():
        members = {str(i): rng.normal(size=n) for i in range(k)}
        nonmembers = {str(i): rng.normal(size=n) for i in range(k)}
        seconds: dict[str, list[float]] = {"before": [], "now": []}
        p: dict[str, float] = {}
        for _ in range(5):
            for label in seconds:
                metrics._permuted_half_aucs = _before if label == "before" else NEW  # type: ignore[assignment]
                start = time.perf_counter()
                with threadpool_limits(limits=None if label == "before" else 1, user_api="blas"):
                    p[label] = metrics.crossfit_pvalue(members, nonmembers, 0)
                seconds[label].append(time.perf_counter() - start)
        metrics._permuted_half_aucs = NEW  # type: ignore[assignment]
        before, now = (float(np.median(seconds[label])) for label in ("before", "now"))
        print(f"{name}: before {before * 1e3:.0f} ms, now {now * 1e3:.0f} ms, "
              f"ratio {before / now:.2f}, same p-value: {p['before'] == p['now']}")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
