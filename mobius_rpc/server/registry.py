"""What the tool, resource and prompt registries share: named entries in
registration order, and one callback whenever the set changes.

The callback is how ``list_changed`` notifications happen for free: the
server passes one that drops its cached capabilities and tells every session
(and ``subscriptions/listen`` stream) that the list changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

__all__ = ("Registry", "Listed")


class Listed(Protocol):
    """An entry that can describe itself in a list result."""

    def definition(self) -> dict[str, Any]: ...


T = TypeVar("T", bound=Listed)


class Registry(Generic[T]):
    """Entries by key (a name, or a URI), in the order they were added."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._entries: dict[str, T] = {}
        self._on_change = on_change

    def _put(self, key: str, entry: T) -> T:
        """Add ``entry`` under ``key`` (replacing one of the same key) and say so."""
        self._entries[key] = entry
        self._on_change()
        return entry

    def remove(self, key: str) -> bool:
        """Remove the entry under ``key``; whether there was one."""
        if self._entries.pop(key, None) is None:
            return False
        self._on_change()
        return True

    def get(self, key: str) -> T | None:
        return self._entries.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._entries.values()))

    def definitions(self) -> list[dict[str, Any]]:
        """Every entry as a list result shows it, in registration order."""
        return [entry.definition() for entry in self._entries.values()]
