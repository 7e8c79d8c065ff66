"""The store on an SQL database, the same on SQLite and PostgreSQL but for its channel.

Sessions, events and tasks are the shared programs of this package; only the
notification channel between replicas differs (an outbox polled on SQLite,
LISTEN/NOTIFY on PostgreSQL), so each backend hands its channel in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Generic, Protocol, TypeVar

from ..common import sweep_parts
from ..records import Retention, SchemaStatus, SweepReport
from .events import SqlEventStore
from .program import Runner
from .sessions import SqlSessionStore
from .tasks import SqlTaskStore

__all__ = ("SqlStore", "SqlDatabase", "PrunableChannel", "OUTBOX_RETENTION")

#: how long a notification stays in the outbox for replicas that poll it (seconds)
OUTBOX_RETENTION = 300.0


class SqlDatabase(Runner, Protocol):
    """What the store needs of a backend's database object."""

    location: str

    async def inspect(self) -> SchemaStatus: ...


class PrunableChannel(Protocol):
    async def prune(self, cutoff: float) -> int:
        """Forget notifications older than ``cutoff``; how many went."""
        ...


C = TypeVar("C", bound=PrunableChannel)


class SqlStore(Generic[C]):
    """Sessions, events, tasks and a channel (of type ``C``) on one SQL database."""

    backend = "sql"

    def __init__(self, db: SqlDatabase, channel: C, retention: Retention,
                 clock: Callable[[], float]) -> None:
        self.db = db
        self.location = db.location
        self.retention = retention
        self.clock = clock
        self.sessions = SqlSessionStore(db, clock)
        self.events = SqlEventStore(db, retention, clock)
        self.tasks = SqlTaskStore(db, clock)
        self.channel = channel

    async def schema(self) -> SchemaStatus:
        return await self.db.inspect()

    async def sweep(self, now: float | None = None) -> SweepReport:
        moment = self.clock() if now is None else now
        report = await sweep_parts(moment, self.retention, self.sessions, self.events,
                                   self.tasks)
        pruned = await self.channel.prune(moment - OUTBOX_RETENTION)
        return replace(report, messages=pruned)
