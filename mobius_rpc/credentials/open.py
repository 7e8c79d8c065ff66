"""Opening the client's token store that lives in a storage URL.

The tokens share the database of :mod:`mobius_rpc.storage` (``--store URL``,
``$MOBIUS_STORE``, else the SQLite file in the data directory): on SQLite and
PostgreSQL their tables come with the storage migrations and
:class:`~.sql_store.SqlTokenStore` runs on the store's ``db``, sealing with
the key of :func:`~mobius_rpc.credentials.sealing.load_client_key` (kept in
the data directory, never in the database).  A ``memory:`` store gets a
:class:`~mobius_rpc.client.oauth.MemoryTokenStore`, shared process-wide by the
memory store's name the way the storage parts are.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from ..client.oauth import MemoryTokenStore, TokenStore
from ..storage import Store, data_dir, open_store
from .sealing import Sealer, load_client_key
from .sql_store import SqlTokenStore

__all__ = ("token_store_for", "open_token_store")

_memory: dict[str, MemoryTokenStore] = {}


def token_store_for(store: Store, *, sealer: Sealer | None = None,
                    environ: Mapping[str, str] | None = None,
                    clock: Callable[[], float] = time.time) -> TokenStore:
    """The token store on ``store``'s database (``sealer`` default: the data directory's key)."""
    db = getattr(store, "db", None)
    if db is not None:
        return SqlTokenStore(
            db, sealer or (lambda: Sealer(load_client_key(data_dir(environ), environ))), clock)
    if store.location in ("memory:", ""):
        return MemoryTokenStore()  # a private memory store: private tokens
    return _memory.setdefault(store.location, MemoryTokenStore())


@asynccontextmanager
async def open_token_store(url: str | None = None, *, sealer: Sealer | None = None,
                           environ: Mapping[str, str] | None = None, **options: Any
                           ) -> AsyncIterator[TokenStore]:
    """``async with open_token_store(url) as tokens``: migrated at open, like
    :func:`~mobius_rpc.storage.open_store`."""
    async with open_store(url, environ=environ, **options) as store:
        yield token_store_for(store, sealer=sealer, environ=environ)
