"""What ``mobius serve`` runs by default: the context engine for project directories.

The command line stays in :mod:`mobius_rpc.cli`; this builds the server from
its arguments and refuses, in one line, directories that do not exist.  The
index lives in the store ``--store``/``MOBIUS_STORE`` names, by default the
embedded SQLite file under the data directory (``MOBIUS_HOME``), and every
project is indexed in the background from the first request on (initialize
included), so a host's first question usually finds the index ready.

Each project belongs to an organization: ``--org ORG`` for every ``DIR``,
``--project DIR=ORG`` for one (repeatable, so one ``--http`` server serves
projects of several organizations).  ``ORG`` is an organization's id or name in
the store.  Without one, a project belongs to the serving identity's
organization: on stdio the local user's ``personal:USER`` (the OS user, or
``--user``; made in the store on first start, see :mod:`mobius_rpc.security.local`); on HTTP with
authentication the organization of the store's owner (the one the first start
creates).  On HTTP with authentication an ``ORG`` the store does not know is
refused at start.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from ..security.open import open_security_store, security_store_for
from ..security.principal import Role
from ..security.serving import os_user
from ..security.store import SecurityStore
from ..server.app import Server
from ..server.context import Context
from ..storage import StoreError, store_url
from .engine import EngineLimits
from .surface import build_context_server

__all__ = ("context_server", "owner_org", "resolve_org", "split_project")


def split_project(spec: str) -> tuple[str, str]:
    """``DIR=ORG`` as (DIR, ORG); ValueError when either side is empty."""
    root, _, org = spec.rpartition("=")
    if not root or not org:
        raise ValueError(f"--project {spec!r}: use DIR=ORG")
    return root, org


async def resolve_org(security: SecurityStore, ref: str) -> str | None:
    """The id of the organization ``ref`` (an id, or a name only one has)."""
    found = await security.get_organization(ref)
    if found is not None:
        return found.id
    named = [o.id for o in await security.list_organizations() if o.name == ref]
    return named[0] if len(named) == 1 else None


async def owner_org(store: Any) -> str | None:
    """The serving identity's organization on HTTP: the first organization the OS
    user owns, else the one the store's first user owns (the first start's owner)."""
    security = security_store_for(store)
    me = os_user()
    users = sorted(await security.list_users(), key=lambda u: (u.name != me, u.created_at,
                                                                u.id))
    for user in users:
        owned = sorted((m for m in await security.list_memberships(user_id=user.id)
                        if m.role == Role.OWNER.value), key=lambda m: (m.created_at, m.org_id))
        if owned:
            return owned[0].org_id
    return None


def _resolve_all(url: str | None, refs: list[str | None], strict: bool) -> list[str | None]:
    """Organization ids for ``refs`` (None stays None); ``strict``: unknown ones fail."""
    async def go() -> list[str | None]:
        async with open_security_store(url) as (_, security):
            out: list[str | None] = []
            for ref in refs:
                found = await resolve_org(security, ref) if ref is not None else None
                if ref is not None and found is None:
                    if strict:
                        raise ValueError(f"no organization {ref!r} in the store (make it "
                                         "with: mobius org create)")
                    found = ref  # stdio: an organization only named, recorded as given
                out.append(found)
            return out
    return anyio.run(go)


def context_server(roots: Sequence[str], store: str | None, era: str,
                   watch: float | None = None, *, org: str | None = None,
                   projects: Sequence[str] = (), guarded: bool = False) -> Server | None:
    """The context server for ``roots`` (and ``projects``, each ``DIR=ORG``), or None
    after printing why it cannot run.  ``guarded``: served over HTTP with
    authentication, where owners are checked on every request."""
    entries: list[tuple[str, str | None]] = [(root, org) for root in roots]
    try:
        entries += [split_project(spec) for spec in projects]
    except ValueError as error:
        print(f"mobius serve: {error}", file=sys.stderr)
        return None
    if not entries:
        entries = [(".", org)]
    paths: list[Path] = []
    for root, _ in entries:
        path = Path(root)
        if not path.is_dir():
            print(f"mobius serve: not a directory: {root}", file=sys.stderr)
            return None
        paths.append(path.resolve())
    url = store_url(store)
    refs = [ref for _, ref in entries]
    try:
        orgs = _resolve_all(url, refs, guarded) if any(r is not None for r in refs) else refs
    except (StoreError, ValueError) as error:
        print(f"mobius serve: {str(error).splitlines()[0]}", file=sys.stderr)
        return None
    default_org: Callable[[Any], Awaitable[str | None]] | None = owner_org
    if not guarded:
        personal = f"personal:{os_user()}"
        orgs = [o if o is not None else personal for o in orgs]
        default_org = None
    server, engine = build_context_server(paths, store_url=url,
                                          limits=EngineLimits(watch_seconds=watch),
                                          legacy=era in ("both", "legacy"),
                                          modern=era in ("both", "modern"),
                                          orgs=orgs, default_org=default_org)

    async def start_indexing(ctx: Context, call_next: Callable[[Context], Awaitable[Any]]
                             ) -> Any:
        engine.start()
        return await call_next(ctx)

    server.use(start_indexing)
    return server
