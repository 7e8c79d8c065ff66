"""The PostgreSQL store: state shared by every replica, notifications by LISTEN/NOTIFY.

A message published here goes to this instance's subscribers directly and, with
``pg_notify``, to every other instance listening on the same database and
schema.  NOTIFY carries at most 8000 bytes, so a message whose encoded form
would not fit is parked in the ``outbox`` table in the same transaction and the
notification carries only its id; listeners fetch it before delivering the
next message, which keeps one publisher's order.  Each instance opens its
LISTEN connection when the first subscription begins (before ``subscribe``
returns, so nothing published afterwards is missed) and reconnects with
backoff if it drops; what is published while it is down is not delivered
(at most once, as documented in ``base.Subscription``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import psycopg
from anyio.abc import TaskGroup
from psycopg import sql

from .common import background, check_message
from .errors import StoreError
from .fanout import Fanout, FanoutSubscription
from .postgres_db import PgDatabase
from .records import Message, Retention
from .sql.program import Program
from .sql.store import SqlStore

__all__ = ("PostgresStore", "open_postgres")

log = logging.getLogger("mobius_rpc.storage")

_NOTIFY_LIMIT = 7900  # PostgreSQL refuses payloads of 8000 bytes or more


def _notify(name: str, text: str) -> Program[None]:
    yield "SELECT pg_notify(?, ?)", (name, text)


def _park(name: str, head: str, channel: str, payload: bytes, origin: str,
          now: float) -> Program[None]:
    result = yield ("INSERT INTO outbox (channel, payload, origin, created) "
                    "VALUES (?, ?, ?, ?) RETURNING id", (channel, payload, origin, now))
    yield "SELECT pg_notify(?, ?)", (name, f"{head}@{result.rows[0][0]}")


def _parked(row_id: int) -> Program[bytes | None]:
    result = yield "SELECT payload FROM outbox WHERE id = ?", (row_id,)
    return bytes(result.rows[0][0]) if result.rows else None


def _prune(cutoff: float) -> Program[int]:
    result = yield "DELETE FROM outbox WHERE created < ?", (cutoff,)
    return result.changed


class PostgresChannel:
    def __init__(self, db: PgDatabase, tg: TaskGroup, clock: Callable[[], float]) -> None:
        self._db = db
        self._tg = tg
        self._clock = clock
        self.origin = uuid.uuid4().hex
        self.notify_name = f"mobius_{db.schema}"[:63]
        self.fanout = Fanout(on_subscribe=self._ensure_listener)
        self._listening = False

    async def publish(self, channel: str, payload: bytes) -> None:
        check_message(channel, payload)
        data = bytes(payload)
        head = f"{self.origin}\n{channel}\n"
        text = head + base64.b64encode(data).decode()
        if len(text.encode()) <= _NOTIFY_LIMIT:
            # a single statement outside a transaction: NOTIFY is sent at once
            await self._db.read(lambda: _notify(self.notify_name, text))
        else:
            await self._db.write(lambda: _park(self.notify_name, head, channel, data,
                                               self.origin, self._clock()))
        self.fanout.deliver(Message(channel, data))

    def subscribe(self, *channels: str) -> AbstractAsyncContextManager[FanoutSubscription]:
        for channel in channels:
            check_message(channel, b"")
        return self.fanout.subscribe(*channels)

    async def _listen(self) -> psycopg.AsyncConnection[Any]:
        conn = await self._db.connect()
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.notify_name)))
        except psycopg.Error as error:
            await conn.close()
            raise self._db.failed(error) from None
        return conn

    async def _ensure_listener(self) -> None:
        if self._listening:
            return
        conn = await self._listen()
        self._listening = True
        self._tg.start_soon(self._run_listener, conn)

    async def _run_listener(self, conn: psycopg.AsyncConnection[Any]) -> None:
        delay = 0.1
        while True:
            try:
                async for notice in conn.notifies():
                    await self._receive(notice.payload)
                    delay = 0.1
            except (psycopg.Error, StoreError) as error:
                log.warning("the LISTEN connection to %s failed: %s", self._db.location, error)
            finally:
                with anyio.CancelScope(shield=True):
                    await conn.close()
            while True:
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                try:
                    conn = await self._listen()
                    break
                except StoreError as error:
                    log.warning("reconnecting LISTEN to %s: %s", self._db.location, error)

    async def _receive(self, text: str) -> None:
        origin, _, rest = text.partition("\n")
        channel, _, body = rest.partition("\n")
        if origin == self.origin or not channel:
            return
        if body.startswith("@"):
            payload = await self._db.read(lambda: _parked(int(body[1:])))
            if payload is None:
                return  # pruned before we got to it
        else:
            try:
                payload = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                log.warning("ignoring a malformed notification on %s", self.notify_name)
                return
        self.fanout.deliver(Message(channel, payload))

    async def prune(self, cutoff: float) -> int:
        return await self._db.write(lambda: _prune(cutoff))


class PostgresStore(SqlStore[PostgresChannel]):
    backend = "postgresql"

    def __init__(self, db: PgDatabase, tg: TaskGroup, retention: Retention,
                 clock: Callable[[], float]) -> None:
        super().__init__(db, PostgresChannel(db, tg, clock), retention, clock)
        self.db: PgDatabase = db


@asynccontextmanager
async def open_postgres(db: PgDatabase, *, retention: Retention | None = None,
                        migrate: bool = True, clock: Callable[[], float] = time.time
                        ) -> AsyncIterator[PostgresStore]:
    """Open (migrating unless ``migrate=False``) the store in ``db``."""
    await db.open(migrate=migrate)
    try:
        async with background() as tg:
            store = PostgresStore(db, tg, retention or Retention(), clock)
            try:
                yield store
            finally:
                store.channel.fanout.close()
    finally:
        await db.close()
