"""Opening the security store that lives in a storage URL.

Security shares the database of :mod:`mobius_rpc.storage` (``--store URL``,
``$MOBIUS_STORE``, else the SQLite file in the data directory): on SQLite and
PostgreSQL its tables come with the storage migrations and
:class:`~.sql_store.SqlSecurityStore` runs on the store's ``db``; a ``memory:``
store gets a :class:`~.store.MemorySecurityStore`, shared process-wide by the
memory store's name the way the storage parts are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..storage import Store, open_store
from .sql_store import SqlSecurityStore
from .store import MemorySecurityStore, SecurityStore

__all__ = ("security_store_for", "open_security_store")

_memory: dict[str, MemorySecurityStore] = {}


def security_store_for(store: Store) -> SecurityStore:
    """The security store on ``store``'s database."""
    db = getattr(store, "db", None)
    if db is not None:
        # PostgreSQL: replicas hear of each other's revocations by NOTIFY (see .epoch);
        # SQLite needs no channel (data_version sees every process's commits)
        channel = store.channel if store.backend == "postgresql" else None
        return SqlSecurityStore(db, channel=channel)
    if store.location in ("memory:", ""):
        return MemorySecurityStore()  # a private memory store: a private security store
    return _memory.setdefault(store.location, MemorySecurityStore())


@asynccontextmanager
async def open_security_store(url: str | None = None, **options: Any
                              ) -> AsyncIterator[tuple[Store, SecurityStore]]:
    """``async with open_security_store(url) as (store, security)``: both on one database
    (migrated at open, as :func:`~mobius_rpc.storage.open_store` does)."""
    async with open_store(url, **options) as store:
        yield store, security_store_for(store)
