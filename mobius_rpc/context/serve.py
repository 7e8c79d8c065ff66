"""What ``mobius serve`` runs by default: the context engine for project directories.

The command line stays in :mod:`mobius_rpc.cli`; this builds the server from
its arguments and refuses, in one line, directories that do not exist.  The
index lives in the store ``--store``/``MOBIUS_STORE`` names, by default the
embedded SQLite file under the data directory (``MOBIUS_HOME``), and every
project is indexed in the background from the first request on (initialize
included), so a host's first question usually finds the index ready.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from ..server.app import Server
from ..server.context import Context
from ..storage import store_url
from .engine import EngineLimits
from .surface import build_context_server

__all__ = ("context_server",)


def context_server(roots: Sequence[str], store: str | None, era: str,
                   watch: float | None = None) -> Server | None:
    """The context server for ``roots``, or None after printing why it cannot run."""
    paths: list[Path] = []
    for root in roots:
        path = Path(root)
        if not path.is_dir():
            print(f"mobius serve: not a directory: {root}", file=sys.stderr)
            return None
        paths.append(path.resolve())
    server, engine = build_context_server(paths, store_url=store_url(store),
                                          limits=EngineLimits(watch_seconds=watch),
                                          legacy=era in ("both", "legacy"),
                                          modern=era in ("both", "modern"))

    async def start_indexing(ctx: Context, call_next: Callable[[Context], Awaitable[Any]]
                             ) -> Any:
        engine.start()
        return await call_next(ctx)

    server.use(start_indexing)
    return server
