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


def _origin(item: object) -> str:
    return f"{getattr(item, '__module__', '?')}.{getattr(item, '__qualname__', repr(item))}"


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
            old = self._items.get(name)
            if old is not None and _origin(old) != _origin(item):
                raise ValueError(f"{self.kind} {name!r} is already registered by "
                                 f"{_origin(old)}; {_origin(item)} cannot take the name")
            # The same class from the same module is a re-import (importlib.reload, or pytest's
            # pytester dropping and re-importing modules): the newer object replaces the old.
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
