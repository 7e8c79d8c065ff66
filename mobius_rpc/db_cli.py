"""``mobius db status`` and ``mobius db upgrade``: look at and migrate the store.

The store is ``--store URL``, else ``$MOBIUS_STORE``, else the SQLite file in
the data directory (``$MOBIUS_HOME``, else the platform's user data directory);
see :mod:`mobius_rpc.storage.open` for the URL forms.  ``status`` writes
nothing (a missing SQLite file is reported, not created; on SQLite it also runs
``PRAGMA quick_check``).  ``upgrade`` applies the pending migrations under the
migration lock.  Exit status: 0 on success, 2 with a one-line error (never a
traceback, never a password) when the store cannot be used.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ("add_db_parser",)


def add_db_parser(sub: Any) -> None:
    db = sub.add_parser("db", help="the store: schema status and migrations")
    actions = db.add_subparsers(dest="action", required=True)
    for action, text in (("status", "show the store's schema version (writes nothing)"),
                         ("upgrade", "apply pending migrations")):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("--store", metavar="URL",
                            help="memory:, sqlite:///PATH or postgresql://... "
                                 "(default: $MOBIUS_STORE, else the SQLite file in the "
                                 "data directory)")
        parser.add_argument("--json", action="store_true", help="print the status as JSON")
        parser.set_defaults(func=run_db_command)


def _describe(status: Any, *, upgraded_from: int | None = None) -> str:
    lines = [f"store: {status.backend} {status.location}"]
    if not status.exists:
        lines.append(f"schema: none yet (0 of {status.latest}); created on first use or by "
                     "`mobius db upgrade`")
        return "\n".join(lines)
    lines.append(f"schema: version {status.version} of {status.latest}")
    if upgraded_from is not None:
        lines.append(f"upgraded: {upgraded_from} -> {status.version}"
                     if upgraded_from != status.version else "upgraded: nothing to do")
    if status.pending:
        lines.append(f"pending: {', '.join(status.pending)} (run `mobius db upgrade`)")
    else:
        lines.append("up to date")
    return "\n".join(lines)


def run_db_command(args: argparse.Namespace) -> int:
    import anyio

    from .storage import StoreError, inspect_store, store_url, upgrade_store

    url = store_url(args.store)

    async def run() -> tuple[Any, int | None]:
        if args.action == "status":
            return await inspect_store(url), None
        before = await inspect_store(url)
        return await upgrade_store(url), before.version

    try:
        status, before = anyio.run(run)
    except StoreError as error:
        print(f"mobius db {args.action}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps({"backend": status.backend, "location": status.location,
                          "exists": status.exists, "version": status.version,
                          "latest": status.latest, "pending": list(status.pending)}))
    else:
        print(_describe(status, upgraded_from=before))
    return 0
