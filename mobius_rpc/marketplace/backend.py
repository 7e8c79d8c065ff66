"""Which marketplace store an open storage ``Store`` gets (SQL programs or memory)."""

from __future__ import annotations

import weakref
from typing import Any

from .sql_store import SqlMarketStore
from .store import MarketStore, MemoryMarketStore

__all__ = ("market_store",)

_memory: weakref.WeakKeyDictionary[Any, MemoryMarketStore] = weakref.WeakKeyDictionary()


def market_store(store: Any) -> MarketStore:
    """The marketplace's store on an open storage ``Store`` (SQL or memory)."""
    db = getattr(store, "db", None)
    if db is not None:
        return SqlMarketStore(db)
    found = _memory.get(store)
    if found is None:
        found = _memory[store] = MemoryMarketStore()
    return found
