"""Data-parallel scans: shard work units across processes, gather the results on rank 0.

Under ``accelerate launch -m s2l_scan ...`` or ``torchrun -m s2l_scan ...`` every process runs
the same scan with the same inputs. The environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``) says which process this is; :func:`world` joins the process group (gloo: the
results gathered are small Python objects, and gloo works on every device). Work is cut into
units in one canonical order that does not depend on the number of processes; unit ``i`` runs
on rank ``i % world_size``, and :meth:`World.gather` puts every unit's result back in canonical
order on rank 0. Each unit computes exactly what the single process computes for it (same
batches, same seeds), so rank 0 builds the same report a single process builds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class World:
    """This process's place among the scan's processes (``size == 1``: no distribution)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mine(self, unit: int) -> bool:
        """Whether unit number ``unit`` of the canonical order runs on this process."""
        return unit % self.size == self.rank

    def map(self, fn: Callable[[T], R], units: Sequence[T]) -> list[R] | None:
        """``[fn(u) for u in units]`` computed across processes; the list on rank 0 only.

        Other ranks get None. With one process this is a plain loop.
        """
        mine = {i: fn(unit) for i, unit in enumerate(units) if self.mine(i)}
        if self.size == 1:
            return [mine[i] for i in range(len(units))]
        gathered = self.gather(mine)
        if gathered is None:
            return None
        merged: dict[int, Any] = {}
        for part in gathered:
            merged.update(part)
        return [merged[i] for i in range(len(units))]

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` (picklable), in rank order, on rank 0; None elsewhere."""
        if self.size == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.size if self.is_main else None
        dist.gather_object(value, out, dst=0)
        return out

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def world() -> World:
    """The current world: from ``RANK`` / ``WORLD_SIZE`` (set by accelerate or torchrun).

    Joins the default process group (gloo) on first use when there are several processes.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return World(rank=dist.get_rank(), size=dist.get_world_size())


def finish() -> None:
    """Leave the process group joined by :func:`world`, if any."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    """A TCP port free on this machine now (for a local launcher's ``--master-port``)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
