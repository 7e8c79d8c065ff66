"""``mobius serve --http --store URL``: legacy sessions in a store replicas share.

Without ``--store`` (and without ``MOBIUS_STORE``) Streamable HTTP keeps its
sessions in the process, the fastest path and the right one for a single
server.  With a store URL (``postgresql://...`` for replicas on several
hosts, ``sqlite:///PATH`` for processes on one host, ``memory:`` for tests)
every process started on the same store serves every session; see
docs/replicas.md.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .storage import Retention, open_store
from .transports.event_store import Retention as MemoryRetention
from .transports.http_shared import SharedSessions

__all__ = ("add_store_arguments", "store_url_of", "shared_sessions")

ENV = "MOBIUS_STORE"


def add_store_arguments(serve: argparse.ArgumentParser) -> None:
    """The options of shared sessions; ``--store`` itself is serve's one store option."""
    serve.add_argument("--session-ttl", type=float, default=1800.0, metavar="S",
                       help="--http with a named store: seconds a session lives after its "
                            "last request (1800)")


def store_url_of(args: argparse.Namespace) -> str | None:
    """The store named by ``--store`` or ``$MOBIUS_STORE``; None when neither names one.

    Only a named store shares legacy sessions: the embedded default store is one
    process's, and keeping its sessions in memory is the fastest path.
    """
    url: str | None = args.store or os.environ.get(ENV) or None
    return url


@asynccontextmanager
async def shared_sessions(url: str | None, retention: MemoryRetention,
                          session_ttl: float) -> AsyncIterator[SharedSessions | None]:
    """The shared-session host on the store ``url`` names (None without a URL).

    Raises a ``StoreError`` (one line, naming what failed) when the store cannot
    be opened, and ValueError for a TTL that is not a positive number.
    """
    if url is None:
        yield None
        return
    if not session_ttl > 0 or session_ttl == float("inf"):
        raise ValueError(f"--session-ttl must be a finite number above 0: {session_ttl!r}")
    bounds = Retention(retention.max_events, retention.max_bytes, retention.max_age)
    async with open_store(url, retention=bounds) as store:
        yield SharedSessions(store, session_ttl=session_ttl)
