"""The SQLite store: the embedded default, one file under the data directory.

Notifications between replicas on one file: a message published through a
store instance is delivered to that instance's subscribers directly, and is
also written to the ``outbox`` table; every other instance (another process,
or another store opened on the same file) that has subscribers polls the table
for ids above the last it saw, every ``poll_interval`` seconds (0.2 by default),
so a message crosses processes within about one interval.  Pollers run only
while someone subscribes, and :meth:`SqliteStore.sweep` prunes messages older
than ``outbox_retention`` seconds.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
from anyio.abc import TaskGroup

from .common import background, check_message
from .errors import StoreError
from .fanout import Fanout, FanoutSubscription
from .records import Message, Retention
from .sql.program import Program
from .sql.store import SqlStore
from .sqlite_db import SqliteDatabase, SqliteOptions

__all__ = ("SqliteStore", "open_sqlite")

log = logging.getLogger("mobius_rpc.storage")

_BATCH = 500


def _insert(channel: str, payload: bytes, origin: str, now: float) -> Program[None]:
    yield ("INSERT INTO outbox (channel, payload, origin, created) VALUES (?, ?, ?, ?)",
           (channel, payload, origin, now))


def _last_id() -> Program[int]:
    result = yield "SELECT COALESCE(MAX(id), 0) FROM outbox", ()
    return int(result.rows[0][0])


def _since(position: int) -> Program[list[tuple[int, str, str, bytes]]]:
    result = yield ("SELECT id, channel, origin, payload FROM outbox WHERE id > ? "
                    "ORDER BY id LIMIT ?", (position, _BATCH))
    return [(int(r[0]), r[1], r[2], bytes(r[3])) for r in result.rows]


def _prune(cutoff: float) -> Program[int]:
    result = yield "DELETE FROM outbox WHERE created < ?", (cutoff,)
    return result.changed


class SqliteChannel:
    def __init__(self, db: SqliteDatabase, tg: TaskGroup, clock: Callable[[], float]) -> None:
        self._db = db
        self._tg = tg
        self._clock = clock
        #: identifies this instance's rows, which its own poller skips
        self.origin = uuid.uuid4().hex
        self.fanout = Fanout(on_subscribe=self._ensure_poller)
        self._polling = False
        self._position = 0

    async def publish(self, channel: str, payload: bytes) -> None:
        check_message(channel, payload)
        data = bytes(payload)
        await self._db.write(lambda: _insert(channel, data, self.origin, self._clock()))
        self.fanout.deliver(Message(channel, data))

    def subscribe(self, *channels: str) -> AbstractAsyncContextManager[FanoutSubscription]:
        for channel in channels:
            check_message(channel, b"")
        return self.fanout.subscribe(*channels)

    async def _ensure_poller(self) -> None:
        if self._polling:
            return
        # the position is taken before the subscription is handed out, so nothing
        # another process publishes after subscribe() returns can be skipped
        self._position = await self._db.read(_last_id)
        self._polling = True
        self._tg.start_soon(self._poll)

    async def _poll(self) -> None:
        interval = self._db.options.poll_interval
        while True:
            if not self.fanout.active:
                await anyio.sleep(interval)
                if not self.fanout.active:
                    self._polling = False
                    return
            try:
                rows = await self._db.read(lambda: _since(self._position))
            except StoreError as error:
                log.warning("polling the outbox of %s failed: %s", self._db.location, error)
                rows = []
            for row_id, channel, origin, payload in rows:
                self._position = row_id
                if origin != self.origin:
                    self.fanout.deliver(Message(channel, payload))
            if len(rows) < _BATCH:
                await anyio.sleep(interval)

    async def prune(self, cutoff: float) -> int:
        return await self._db.write(lambda: _prune(cutoff))


class SqliteStore(SqlStore[SqliteChannel]):
    backend = "sqlite"

    def __init__(self, db: SqliteDatabase, tg: TaskGroup, retention: Retention,
                 clock: Callable[[], float]) -> None:
        super().__init__(db, SqliteChannel(db, tg, clock), retention, clock)
        self.db: SqliteDatabase = db


@asynccontextmanager
async def open_sqlite(path: Path, *, retention: Retention | None = None,
                      options: SqliteOptions | None = None, migrate: bool = True,
                      clock: Callable[[], float] = time.time) -> AsyncIterator[SqliteStore]:
    """Open (creating and migrating unless ``migrate=False``) the SQLite store at ``path``."""
    db = SqliteDatabase(path, options)
    await db.open(migrate=migrate)
    try:
        async with background() as tg:
            store = SqliteStore(db, tg, retention or Retention(), clock)
            try:
                yield store
            finally:
                store.channel.fanout.close()
    finally:
        await db.close()
