"""Explicit registries: attacks and probes register themselves by name.

The scan asks a registry for what the configuration selects and never imports an attack by
hand. Third-party packages add attacks through the ``s2l_scan.attacks`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from s2l_scan.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → factory. Refuses duplicates; unknown names list what exists."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self._group = entry_point_group
        self._items: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@ATTACKS.register("loss")``."""

        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return add

    def _load_plugins(self) -> None:
        if self._plugins_loaded or self._group is None:
            return
        self._plugins_loaded = True
        for entry in entry_points(group=self._group):
            entry.load()  # importing the module runs its @register decorators

    def get(self, name: str) -> T:
        """The item registered as ``name``, or a UsageError listing the known names."""
        self._load_plugins()
        try:
            return self._items[name]
        except KeyError:
            known = sorted(self._items)
            raise UsageError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load_plugins()
        return sorted(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
