"""The budgeted worst-case sweep: try attacker settings one knob at a time until time runs out.

An attacker is not bound to the probes' default settings. ``--sweep 10m`` spends up to ten
minutes of probe time trying other LoRA ranks, textual-inversion token counts, noise scales,
learning rates and step counts, and every configuration it runs becomes an ordinary probe row
(``sweep:lora(rank=16)``), gated by ``max_amplification`` like the rest.

The search is one-factor-at-a-time around each probe's defaults, cheapest probes first, so a
small budget still covers every knob of the cheap probes. Before each configuration the sweep
predicts its cost from the slowest finished run of the same probe and skips it when the
prediction would overrun the budget; the first run of a probe is only started while budget is
left, so the overrun is bounded by one configuration.

The worst case over many configurations is biased upwards (it is a maximum of noisy Δs): a
sweep row that fails the gate is a lead to confirm with a fixed-configuration run on fresh
samples, and the report says how many configurations were tried.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from s2l_scan.errors import UsageError

DEFAULT_SPACE: dict[str, dict[str, list[Any]]] = {
    "noise": {"sigma": [2e-4, 3.2e-3, 1.28e-2]},
    "textual_inversion": {"tokens": [2, 4, 8], "lr": [1e-3, 2e-2], "steps": [50, 200]},
    "lora": {"rank": [1, 2, 8, 16], "lr": [1e-4, 3e-4, 3e-3], "steps": [50, 200]},
}
"""Values tried per probe and knob; each differs from the probe's default in one knob only."""

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_budget(text: str, what: str = "sweep budget") -> float:
    """``"90"``, ``"90s"``, ``"10m"``, ``"1.5h"`` → seconds; anything else is a usage error."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"{what} must be a positive duration like 600, 90s, 10m or 1h; "
                         f"got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def candidates(space: dict[str, dict[str, list[Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """(probe, options) pairs, one knob changed per pair, in the order the space lists them."""
    return [(probe, {knob: value}) for probe, knobs in space.items()
            for knob, values in knobs.items() for value in values]


@dataclass
class SweepLog:
    """What the sweep did, for the report and the console."""

    budget_s: float
    tried: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def budgeted(items: list[tuple[str, Any]], budget_s: float, log: SweepLog, *,
             cost_key: Callable[[Any], str],
             clock: Callable[[], float] = time.perf_counter) -> Iterator[Any]:
    """Yield ``item`` of each ``(label, item)`` while its predicted cost fits in the budget.

    The time between one yield and the next is the cost of the yielded item (the caller runs
    it in between); the prediction for an item is the largest cost seen for its ``cost_key``.
    """
    costs: dict[str, float] = {}
    for label, item in items:
        key = cost_key(item)
        predicted = costs.get(key, 0.0)
        if log.seconds >= budget_s or log.seconds + predicted > budget_s:
            log.skipped.append(label)
            continue
        started = clock()
        yield item
        spent = clock() - started
        log.seconds += spent
        log.tried.append(label)
        costs[key] = max(costs.get(key, 0.0), spent)
