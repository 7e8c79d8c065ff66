"""PostgreSQL: the connection pool, running programs, errors, migrations.

psycopg 3 (async) with ``psycopg_pool``.  Our tables live in their own schema
(``mobius`` unless told otherwise), selected with ``search_path`` on every
pooled connection, so they never collide with an application's tables in a
shared database and a schema holding anything else is refused as not ours.

Before the pool opens, one direct connection is made: the pool would retry in
the background and report only a timeout, while the direct attempt says what
failed (refused, unknown host, wrong password, missing database), which is the
one-line error a user needs.  Migrations run on that connection in one
transaction under ``pg_advisory_lock``, so replicas starting together
apply them once; the others wait and then find the schema current.

Write programs run in a ``READ COMMITTED`` transaction; their first statement
locks the row they are about (an upsert or a no-op update), which serialises
writers of one session or task without table locks.  Serialization failures
and deadlocks (none are expected) are retried a few times, and so is a
transaction whose pooled connection turns out dead before COMMIT is sent.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .common import scrub
from .errors import NotOurDatabase, SchemaOutdated, StoreError, StoreUnavailable
from .migrate import LATEST, apply_program, check_not_newer
from .records import SchemaStatus
from .sql.program import Program, Result

__all__ = ("PgDatabase",)

T = TypeVar("T")
_RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)
_RECONNECTS = 2  # attempts on a fresh connection after a pooled one turned out dead


def _reason(error: BaseException) -> str:
    """The informative line of a libpq error, without its hints."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    for prefix in ("connection failed: ",):
        text = text.removeprefix(prefix)
    return text.replace("FATAL:  ", "").replace("FATAL: ", "")


class PgDatabase:
    """One PostgreSQL database (and schema); implements ``sql.program.Runner``."""

    dialect = "postgresql"

    def __init__(self, conninfo: str, display: str, *, schema: str = "mobius",
                 min_size: int = 1, max_size: int = 10, connect_timeout: float = 5.0) -> None:
        self.conninfo = conninfo
        self.location = display if schema == "mobius" else f"{display} (schema {schema})"
        self.schema = schema
        self.connect_timeout = connect_timeout
        self._kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(conninfo):
            self._kwargs["connect_timeout"] = max(1, round(connect_timeout))
        self._pool = AsyncConnectionPool(conninfo, min_size=min_size, max_size=max_size,
                                         open=False, kwargs=self._kwargs,
                                         configure=self._configure, timeout=30.0,
                                         name="mobius-storage")
        self._pg_sql: dict[str, str] = {}
        digest = hashlib.sha256(f"mobius_rpc.storage:{schema}".encode()).digest()
        self.lock_key = int.from_bytes(digest[:8], "big", signed=True)

    # -- errors ----------------------------------------------------------------------

    def unavailable(self, error: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"cannot connect to PostgreSQL at {self.location}: "
                                f"{scrub(_reason(error), self.conninfo)}")

    def failed(self, error: BaseException) -> StoreError:
        if isinstance(error, psycopg.OperationalError | PoolTimeout | OSError):
            return self.unavailable(error)
        return StoreError(f"PostgreSQL at {self.location}: "
                          f"{scrub(_reason(error), self.conninfo)}")

    # -- connections -----------------------------------------------------------------

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        """A new connection outside the pool (migrations, LISTEN), search_path set."""
        try:
            with anyio.fail_after(self.connect_timeout + 5):
                conn = await psycopg.AsyncConnection.connect(self.conninfo, **self._kwargs)
        except TimeoutError:
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {self.location}: no answer "
                                   f"within {self.connect_timeout + 5:g} s") from None
        except (psycopg.Error, OSError) as error:
            raise self.unavailable(error) from None
        try:
            await self._configure(conn)
        except psycopg.Error as error:
            await conn.close()
            raise self.failed(error) from None
        return conn

    async def _version(self, conn: psycopg.AsyncConnection[Any]) -> int:
        ledger = sql.SQL("{}.mobius_schema").format(sql.Identifier(self.schema))
        cursor = await conn.execute("SELECT to_regclass(%s)", (ledger.as_string(conn),))
        row = await cursor.fetchone()
        if row is None or row[0] is None:
            cursor = await conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "ORDER BY table_name", (self.schema,))
            tables = [r[0] for r in await cursor.fetchall()]
            if tables:
                shown = ", ".join(tables[:4]) + (", ..." if len(tables) > 4 else "")
                raise NotOurDatabase(f"schema {self.schema} of {self.location} holds tables "
                                     f"that are not ours ({shown}); it was left untouched")
            return 0
        cursor = await conn.execute(sql.SQL("SELECT COALESCE(MAX(version), 0) FROM {}")
                                    .format(ledger))
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self, conn: psycopg.AsyncConnection[Any], goal: int) -> None:
        # A session-level lock taken before the transaction begins: a transaction that
        # began before another replica's migration committed could still see that
        # replica's new schema as missing in the catalogue caches, and refuse it.
        await conn.execute("SELECT pg_advisory_lock(%s)", (self.lock_key,))
        try:
            async with conn.transaction():
                version = await self._version(conn)  # again, under the lock
                check_not_newer(version, self.location)
                if version >= goal:
                    return
                await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}")
                                   .format(sql.Identifier(self.schema)))
                await self._drive(conn, apply_program(self.dialect, version, time.time(),
                                                      goal))
        finally:
            try:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (self.lock_key,))
            except psycopg.Error:
                pass  # a broken connection: closing it releases the lock anyway

    async def open(self, *, migrate: bool = True, target: int | None = None) -> None:
        """Connect, refuse a schema that is newer or not ours, migrate, open the pool."""
        goal = LATEST if target is None else target
        conn = await self.connect()
        try:
            version = await self._version(conn)
            check_not_newer(version, self.location)
            if version < goal:
                if not migrate:
                    raise SchemaOutdated(f"{self.location} has schema version {version}, "
                                         f"this code needs {goal}: run `mobius db upgrade`")
                await self._migrate(conn, goal)
        except psycopg.Error as error:
            raise self.failed(error) from None
        finally:
            await conn.close()
        try:
            await self._pool.open(wait=True, timeout=self.connect_timeout + 5)
        except BaseException as error:
            with anyio.CancelScope(shield=True):
                await self._pool.close()
            if isinstance(error, PoolTimeout | psycopg.Error):
                raise self.unavailable(error) from None
            raise

    async def inspect(self) -> SchemaStatus:
        """The schema status, reading only."""
        conn = await self.connect()
        try:
            version = await self._version(conn)
        except psycopg.Error as error:
            raise self.failed(error) from None
        finally:
            await conn.close()
        check_not_newer(version, self.location)
        return SchemaStatus("postgresql", self.location, version, LATEST,
                            pending=tuple(f"{m:04d}" for m in range(version + 1, LATEST + 1)))

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._pool.close()

    # -- running programs ------------------------------------------------------------

    def _translate(self, text: str) -> str:
        found = self._pg_sql.get(text)
        if found is None:
            if "%" in text:
                raise ValueError("SQL for the store must not contain '%'")
            found = self._pg_sql[text] = text.replace("?", "%s")
        return found

    async def _drive(self, conn: psycopg.AsyncConnection[Any], program: Program[T]) -> T:
        try:
            statement = next(program)
            while True:
                text, params = statement
                cursor = await conn.execute(self._translate(text), params)
                rows = await cursor.fetchall() if cursor.description is not None else []
                statement = program.send(Result(rows, cursor.rowcount))
        except StopIteration as done:
            value: T = done.value
            return value

    async def write(self, make: Callable[[], Program[T]]) -> T:
        delay = 0.005
        for attempt in range(8):
            committing = False
            try:
                async with self._pool.connection() as conn:
                    async with conn.transaction():
                        value = await self._drive(conn, make())
                        committing = True
                    return value
            except _RETRYABLE as error:
                if attempt == 7:
                    raise self.failed(error) from None
            except psycopg.OperationalError as error:
                # A pooled connection that died (a server restart, an idle timeout) fails
                # before COMMIT is sent, when nothing can have been committed: run the
                # transaction again on a fresh connection.  A failure during COMMIT has
                # an unknown outcome and is not retried.
                if committing or attempt >= _RECONNECTS:
                    raise self.failed(error) from None
                await self._discard_dead()
            except (psycopg.Error, PoolTimeout) as error:
                raise self.failed(error) from None
            await anyio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    async def read(self, make: Callable[[], Program[T]]) -> T:
        """Run a program outside a transaction (single statements; also NOTIFY)."""
        for attempt in range(_RECONNECTS + 1):
            try:
                async with self._pool.connection() as conn:
                    return await self._drive(conn, make())
            except psycopg.OperationalError as error:
                if attempt >= _RECONNECTS:
                    raise self.failed(error) from None
                await self._discard_dead()
            except (psycopg.Error, PoolTimeout) as error:
                raise self.failed(error) from None
        raise AssertionError("unreachable")

    async def _discard_dead(self) -> None:
        """After one pooled connection died, test the idle others (a restart kills all)."""
        try:
            await self._pool.check()
        except (psycopg.Error, PoolTimeout):
            pass
