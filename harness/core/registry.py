"""A typed name -> object registry, lazy and with misses that suggest close names.

Objects register by decorator when their module is imported, or are published under an
entry-point group ("name = module:attr", as in pyproject.toml): the entry points are read (no
import) on the first lookup that misses, and a published object's module is imported only when its
name is asked for (cf. lm-evaluation-harness's lazy "module:Class" placeholders). What loads must
be of the registry's base type, if it has one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from harness.errors import SpecError

T = TypeVar("T")


class Registry(Generic[T]):
    """Objects registered by name, plus any published under an entry-point group."""

    def __init__(self, kind: str, entry_point_group: str | None = None, *, base: type | None = None) -> None:
        self.kind = kind
        self._group = entry_point_group
        self._base = base
        self._items: dict[str, T] = {}
        self._published: dict[str, EntryPoint] | None = None

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def _entry_points(self) -> dict[str, EntryPoint]:
        if self._published is None:
            found = entry_points(group=self._group) if self._group else ()
            self._published = {ep.name: ep for ep in found}
        return self._published

    def _load(self, name: str) -> T:
        ep = self._entry_points()[name]
        try:
            obj = ep.load()
        except (ImportError, AttributeError) as exc:
            raise SpecError(f"{self.kind} {name!r} is published as {ep.value!r}, which does not load: "
                            f"{exc.__class__.__name__}: {exc}") from None
        if self._base is not None and not (isinstance(obj, type) and issubclass(obj, self._base)):
            raise SpecError(f"{self.kind} {name!r} ({ep.value}) is not a {self._base.__name__}")
        return self._items.setdefault(name, obj)

    def get(self, name: str) -> T:
        """Return the object named `name`; raises SpecError with close names on a miss."""
        if name in self._items:
            return self._items[name]
        if name in self._entry_points():
            return self._load(name)
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        where = f" (plugins register under the entry-point group {self._group!r})" if self._group else ""
        raise SpecError(f"unknown {self.kind} {name!r}{hint} known: {', '.join(known) or 'none'}{where}")

    def names(self) -> list[str]:
        """Every name, registered or published, without importing anything."""
        return sorted(set(self._items) | set(self._entry_points()))
