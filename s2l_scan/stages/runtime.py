"""Where a scan's units of work are kept and who computes them, behind one small interface.

A *unit* is a piece of work whose result is stored under a content key (:mod:`s2l_scan.units`):
an attack's scores on one sample set, a domain's generations, one (probe, domain). Under a
data-parallel launch (:mod:`s2l_scan.parallel`) the units are shared out across processes;
rank 0 alone reads the store and collects the results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from s2l_scan.config import ScanConfig
from s2l_scan.parallel import World, world
from s2l_scan.progress import ProgressFn, quiet
from s2l_scan.units import Arrays, UnitStore

T = TypeVar("T")
R = TypeVar("R")


def unit_store(config: ScanConfig) -> UnitStore:
    """The scan's store of finished units; off with ``cache = "off"``."""
    if config.cache == "off":
        return UnitStore(None)
    if config.cache_dir is not None:
        return UnitStore(Path(config.cache_dir).expanduser())
    from s2l_scan.reference.cache import cache_root

    return UnitStore(cache_root() / "units")


@dataclass
class Runtime:
    """The unit store, the process world and the progress display of one scan."""

    store: UnitStore = field(default_factory=lambda: UnitStore(None))
    world: World = field(default_factory=World)
    progress: ProgressFn = quiet  # progress(stage, done, total): see s2l_scan.progress
    generated: dict[str, np.ndarray] = field(default_factory=dict)
    """The released model's generations this process holds, by unit key: the SP sets that are
    extraction's images read them here, with the unit store on or off."""

    @classmethod
    def for_config(cls, config: ScanConfig, progress: ProgressFn = quiet) -> Runtime:
        """The configured store, in the world this process was launched in."""
        return cls(unit_store(config), world(), progress)

    def map_counted(self, stage: str, fn: Callable[[T], R], units: Sequence[T]
                    ) -> list[R] | None:
        """:meth:`map`, reporting ``stage`` progress over this process's share of ``units``."""
        total = sum(self.world.mine(i) for i in range(len(units)))
        done = 0
        self.progress(stage, 0, total)

        def counted(unit: T) -> R:
            nonlocal done
            result = fn(unit)
            done += 1
            self.progress(stage, done, total)
            return result

        return self.map(counted, units)

    @property
    def is_main(self) -> bool:
        return self.world.is_main

    def map(self, fn: Callable[[T], R], units: Sequence[T]) -> list[R] | None:
        """``fn`` over ``units``, shared out across processes; the results on rank 0."""
        return self.world.map(fn, units)

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every process."""
        result: T = self.world.broadcast(value)
        return result

    def get_or_compute(self, kind: str, key: str, compute: Callable[[], tuple[Arrays, Any]]
                       ) -> tuple[Arrays, Any]:
        """One unit, from the store when it is there (this process alone)."""
        return self.store.get_or_compute(kind, key, compute)

    def shared_units(self, kind: str, keys: list[str],
                     compute: Callable[[list[int]], list[Arrays] | None]) -> list[Arrays] | None:
        """The arrays of the units ``keys`` of ``kind`` on rank 0 (None on other ranks):
        stored units are read, the missing ones computed by ``compute(positions)`` and stored.

        ``compute`` may share its work out across processes (a collective call, returning the
        arrays in order on rank 0 only): rank 0 alone reads the store and tells every process
        which units are missing, so all of them make the same calls even while another process
        writes to the store.
        """
        found = [self.store.load(kind, key) for key in keys] if self.is_main else []
        missing = self.broadcast([i for i, unit in enumerate(found) if unit is None])
        computed = compute(missing) if missing else []
        if computed is None or not self.is_main:
            return None
        for i, arrays in zip(missing, computed, strict=True):
            self.store.save(kind, keys[i], arrays)
            found[i] = (arrays, None)
        self.store.record(reused=len(keys) - len(missing), computed=len(missing))
        return [unit[0] for unit in found if unit is not None]

    def count_other_ranks(self) -> None:
        """Add the units the other processes reused and computed to rank 0's counts, so the
        run block counts the whole scan."""
        counts = self.world.gather((self.store.reused, self.store.computed))
        for reused, computed in (counts or [])[1:]:
            self.store.record(reused=reused, computed=computed)

    def stats(self) -> dict[str, str]:
        return self.store.stats()
