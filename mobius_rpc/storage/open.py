"""Choosing a store from a URL: ``open_store``, ``inspect_store``, ``upgrade_store``.

=========================  =============================================================
``None``                   SQLite, the file ``mobius.db`` in :func:`data_dir`
``memory:`` / ``memory:N``  a private in-memory store / the process-wide one called N
``sqlite:///ABS/PATH``     SQLite at an absolute path (``sqlite:REL/PATH``: relative)
``postgresql://...``       PostgreSQL (libpq URL; ``postgres://`` too); needs the
                           ``postgres`` extra (psycopg, psycopg_pool)
=========================  =============================================================

Command lines take the URL from ``--store`` or else the ``MOBIUS_STORE``
environment variable (:func:`store_url`).  Every way a URL can be wrong is a
:class:`~.errors.StoreConfigError` whose message shows the URL with its
password removed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .base import Store
from .common import scrub
from .errors import StoreConfigError
from .records import Retention, SchemaStatus
from .sqlite_db import SqliteDatabase, SqliteOptions

__all__ = ("open_store", "inspect_store", "upgrade_store", "parse_store_url", "StoreUrl",
           "data_dir", "default_sqlite_path", "store_url")

_MEMORY_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_HINT = "use memory:, sqlite:///PATH or postgresql://USER@HOST/DB"


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``MOBIUS_HOME``, else the platform's per-user data directory plus ``mobius``."""
    env = os.environ if environ is None else environ
    if env.get("MOBIUS_HOME"):
        return Path(env["MOBIUS_HOME"]).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "mobius"
    if os.name == "nt":
        base = env.get("LOCALAPPDATA") or env.get("APPDATA")
        return Path(base) / "mobius" if base else Path.home() / "AppData" / "Local" / "mobius"
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore relative values
        return Path(xdg) / "mobius"
    return Path.home() / ".local" / "share" / "mobius"


def default_sqlite_path(environ: Mapping[str, str] | None = None) -> Path:
    return data_dir(environ) / "mobius.db"


def store_url(flag: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The URL a command should use: ``--store``, else ``MOBIUS_STORE``, else the default."""
    env = os.environ if environ is None else environ
    return flag or env.get("MOBIUS_STORE") or None


@dataclass(frozen=True, slots=True)
class StoreUrl:
    backend: str
    target: str  # a memory name, a file path, or a libpq URL
    display: str  # what messages show: never a password


def _redact(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}@{hostport}"
    query = urlencode([(k, "***" if k == "password" else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _postgres(url: str) -> StoreUrl:
    try:
        parts = urlsplit(url)
        display = _redact(url)
    except ValueError as error:
        raise StoreConfigError(f"malformed store URL: {error}") from None
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise StoreConfigError(f"malformed store URL {display}: the port is not a number "
                               "from 1 to 65535") from None
    if parts.fragment:
        raise StoreConfigError(f"malformed store URL {display}: a '#' has no meaning here")
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        raise StoreConfigError("a postgresql:// store needs psycopg: "
                               "pip install 'mobius-rpc[postgres]'") from None
    try:
        conninfo_to_dict(url)
    except Exception as error:  # psycopg.ProgrammingError; its text may quote the password
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StoreConfigError(f"malformed store URL {display}: {scrub(reason, url)}") from None
    return StoreUrl("postgresql", url, display)


def parse_store_url(url: str | None, environ: Mapping[str, str] | None = None) -> StoreUrl:
    """What a store URL names; StoreConfigError for anything we cannot open."""
    if url is None or url == "":
        path = default_sqlite_path(environ)
        return StoreUrl("sqlite", str(path), str(path))
    if url.startswith("memory:"):
        name = url[len("memory:"):]
        if len(name) > 100 or not set(name) <= _MEMORY_NAME:
            raise StoreConfigError(f"malformed store URL {url[:120]!r}: a memory store name is "
                                   "up to 100 letters, digits, '_', '.' or '-'")
        return StoreUrl("memory", name, url)
    if url.startswith("sqlite:"):
        rest = url[len("sqlite:"):]
        if rest.startswith("//"):
            if not rest.startswith("///"):
                raise StoreConfigError(f"malformed store URL {url!r}: a SQLite URL has no "
                                       "host; use sqlite:///ABSOLUTE/PATH or sqlite:RELATIVE")
            rest = "/" + rest.lstrip("/")  # sqlite:///abs and sqlite:////abs alike
        if not rest or "\x00" in rest or "?" in rest:
            raise StoreConfigError(f"malformed store URL {url!r}: expected sqlite:///PATH")
        path = Path(rest).expanduser()
        return StoreUrl("sqlite", str(path), str(path))
    if url.startswith(("postgresql://", "postgres://")):
        return _postgres(url)
    shown = url.split(":", 1)[0][:40] if ":" in url else url[:40]
    raise StoreConfigError(f"unknown store {shown!r}: {_HINT}")


def _pg_database(parsed: StoreUrl, schema: str) -> Any:
    try:
        from .postgres_db import PgDatabase
    except ImportError:
        raise StoreConfigError("a postgresql:// store needs psycopg and psycopg_pool: "
                               "pip install 'mobius-rpc[postgres]'") from None
    return PgDatabase(parsed.target, parsed.display, schema=schema)


def open_store(url: str | None = None, *, migrate: bool = True,
               retention: Retention | None = None, clock: Callable[[], float] = time.time,
               sqlite: SqliteOptions | None = None, schema: str = "mobius",
               environ: Mapping[str, str] | None = None
               ) -> AbstractAsyncContextManager[Store]:
    """Open the store ``url`` names (see the module docstring): ``async with open_store(...)``.

    Migrations run at open unless ``migrate=False`` (then a schema behind the code
    is :class:`~.errors.SchemaOutdated`); a schema ahead of the code is always
    refused (:class:`~.errors.SchemaTooNew`) without writing anything.
    """
    parsed = parse_store_url(url, environ)
    return _open(parsed, migrate=migrate, retention=retention, clock=clock, sqlite=sqlite,
                 schema=schema)


@asynccontextmanager
async def _open(parsed: StoreUrl, *, migrate: bool, retention: Retention | None,
                clock: Callable[[], float], sqlite: SqliteOptions | None,
                schema: str) -> AsyncIterator[Store]:
    if parsed.backend == "memory":
        from .memory import open_memory
        async with open_memory(parsed.target, retention=retention, clock=clock) as memory:
            yield memory
    elif parsed.backend == "sqlite":
        from .sqlite import open_sqlite
        async with open_sqlite(Path(parsed.target), retention=retention, options=sqlite,
                               migrate=migrate, clock=clock) as lite:
            yield lite
    else:
        from .postgres import open_postgres
        async with open_postgres(_pg_database(parsed, schema), retention=retention,
                                 migrate=migrate, clock=clock) as pg:
            yield pg


async def inspect_store(url: str | None = None, *, schema: str = "mobius",
                        environ: Mapping[str, str] | None = None) -> SchemaStatus:
    """The schema status of a store, writing nothing (a missing SQLite file stays missing)."""
    parsed = parse_store_url(url, environ)
    if parsed.backend == "memory":
        from .migrate import LATEST
        return SchemaStatus("memory", parsed.display, LATEST, LATEST)
    if parsed.backend == "sqlite":
        return await SqliteDatabase(Path(parsed.target)).inspect()
    result: SchemaStatus = await _pg_database(parsed, schema).inspect()
    return result


async def upgrade_store(url: str | None = None, *, target: int | None = None,
                        schema: str = "mobius",
                        environ: Mapping[str, str] | None = None) -> SchemaStatus:
    """Apply pending migrations (up to ``target``, default all) under the lock; the new status."""
    parsed = parse_store_url(url, environ)
    if parsed.backend == "memory":
        return await inspect_store(url, environ=environ)
    db: Any = SqliteDatabase(Path(parsed.target)) if parsed.backend == "sqlite" \
        else _pg_database(parsed, schema)
    await db.open(migrate=True, target=target)
    try:
        status: SchemaStatus = await db.inspect()
    finally:
        await db.close()
    return status
