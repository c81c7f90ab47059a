"""A typed name -> object registry whose misses suggest close names."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from harness.errors import SpecError

T = TypeVar("T")


class Registry(Generic[T]):
    """Objects registered by name, plus any published under an entry-point group."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self._group = entry_point_group
        self._items: dict[str, T] = {}
        self._loaded_entry_points = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points or not self._group:
            return
        self._loaded_entry_points = True
        for ep in entry_points(group=self._group):
            if ep.name not in self._items:
                self._items[ep.name] = ep.load()

    def get(self, name: str) -> T:
        """Return the object named `name`; raises SpecError with close names on a miss."""
        if name not in self._items:
            self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._items, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            where = f" (plugins register under the entry-point group {self._group!r})" if self._group else ""
            raise SpecError(
                f"unknown {self.kind} {name!r}{hint} known: {', '.join(sorted(self._items)) or 'none'}{where}"
            ) from None

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)
