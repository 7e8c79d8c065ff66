"""The interfaces of what persists: async, plain data in and out.

A :class:`Store` is four parts over one database: sessions, the events of
their streams, task records, and a channel that carries notifications between
replicas sharing the database.  The memory, SQLite and PostgreSQL stores
implement exactly these protocols with the same behaviour (one contract test
suite runs against all three), so callers depend on nothing below them.

Why async everywhere, even for the memory store: a caller written against the
protocol must not change when the store becomes a database behind a network.
Why plain data: a record crosses processes, so it cannot hold anything that is
only meaningful inside one (an event to wait on, a cancel scope, a stream).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from .records import (
    Message,
    Replay,
    SchemaStatus,
    SessionRecord,
    SweepReport,
    TaskPage,
    TaskRecord,
)

__all__ = ("SessionStore", "EventStore", "TaskStore", "Subscription", "Channel", "Store")

#: the largest payload :meth:`Channel.publish` accepts, on every backend
MAX_MESSAGE_BYTES = 1024 * 1024


class SessionStore(Protocol):
    async def get(self, session_id: str) -> SessionRecord | None:
        """The record, subscriptions included; None when unknown or deleted."""
        ...

    async def put(self, record: SessionRecord) -> None:
        """Create or replace the whole record (its subscriptions become exactly the set)."""
        ...

    async def touch(self, session_id: str, last_seen: float, expires_at: float) -> bool:
        """Note activity and push the expiry back; False when the session is unknown."""
        ...

    async def set_log_level(self, session_id: str, level: str | None) -> bool:
        """Change only the log level (a put would race a concurrent subscribe);
        False when the session is unknown."""
        ...

    async def subscribe(self, session_id: str, uri: str) -> bool:
        """Add one URI atomically (safe against a concurrent put elsewhere); False if unknown."""
        ...

    async def unsubscribe(self, session_id: str, uri: str) -> bool:
        """Remove one URI; False when the session is unknown."""
        ...

    async def subscribers(self, uri: str) -> list[str]:
        """Ids of the sessions subscribed to ``uri``, sorted."""
        ...

    async def delete(self, session_id: str) -> bool:
        """Forget the session; False when it was not there."""
        ...

    async def expire_older_than(self, cutoff: float) -> list[str]:
        """Delete every session whose ``expires_at`` is before ``cutoff``; their ids, sorted."""
        ...


class EventStore(Protocol):
    async def append(self, session_id: str, stream: str, data: bytes) -> int:
        """Store one event and return its id: one more than the session's previous event.

        Applies the store's :class:`~mobius_rpc.storage.records.Retention` to the
        session before it returns (in the same transaction on SQLite; on PostgreSQL
        the append is one statement and eviction, when a bound is passed, a second
        transaction right after it). Raises
        :class:`~mobius_rpc.storage.errors.StreamFinished` for a finished stream.
        """
        ...

    async def finish(self, session_id: str, stream: str) -> None:
        """Mark a stream complete: nothing more will be appended to it."""
        ...

    async def replay(self, session_id: str, stream: str, after: int = 0) -> Replay:
        """The stream's stored events with ids above ``after``, oldest first."""
        ...

    async def delete_session(self, session_id: str) -> None:
        """Forget every stream of the session (it ended or expired)."""
        ...

    async def expire_older_than(self, cutoff: float) -> int:
        """Evict, session by session, the oldest events created before ``cutoff``; how many."""
        ...


class TaskStore(Protocol):
    async def create(self, record: TaskRecord) -> None:
        """Store a new task; :class:`~mobius_rpc.storage.errors.StoreConflict` if the id exists."""
        ...

    async def get(self, session_id: str, task_id: str) -> TaskRecord | None:
        """The task if it belongs to ``session_id`` (another session's task is not there)."""
        ...

    async def update_status(self, session_id: str, task_id: str, status: str, *,
                            message: str | None = None, result: dict[str, object] | None = None,
                            error: dict[str, object] | None = None) -> TaskRecord | None:
        """Move a task to ``status`` and return the record as it now is.

        A task in a terminal status never changes: the call returns it unchanged.
        None when the session has no such task.
        """
        ...

    async def list(self, session_id: str, *, cursor: str | None = None,
                   limit: int = 100) -> TaskPage:
        """The session's tasks oldest first, ``limit`` at a time; ValueError on a bad cursor."""
        ...

    async def expire(self, now: float) -> int:
        """Delete every task whose TTL has passed at ``now``; how many."""
        ...


class Subscription(Protocol):
    """Messages published after the subscription began, in publish order per publisher.

    Delivery is at most once: a subscriber that falls more than its buffer behind
    loses the overflow (counted in ``dropped``), and a replica that is down misses
    what was published meanwhile.  Durable state belongs in records, not messages.
    """

    dropped: int

    def __aiter__(self) -> AsyncIterator[Message]: ...

    async def __anext__(self) -> Message: ...


class Channel(Protocol):
    async def publish(self, channel: str, payload: bytes) -> None:
        """Send ``payload`` to every subscriber of ``channel`` in every replica."""
        ...

    def subscribe(self, *channels: str) -> AbstractAsyncContextManager[Subscription]:
        """Receive what is published to any of ``channels`` while the context is open."""
        ...


class Store(Protocol):
    """One database: its parts, its schema, and the periodic cleanup."""

    @property
    def backend(self) -> str:
        """``memory``, ``sqlite`` or ``postgresql``."""
        ...

    @property
    def location(self) -> str:
        """Where the data is (a path, or a URL without its password)."""
        ...

    @property
    def sessions(self) -> SessionStore: ...

    @property
    def events(self) -> EventStore: ...

    @property
    def tasks(self) -> TaskStore: ...

    @property
    def channel(self) -> Channel: ...

    async def schema(self) -> SchemaStatus:
        """The applied and the latest schema version."""
        ...

    async def sweep(self, now: float | None = None) -> SweepReport:
        """Remove what expired: sessions (and their streams), old events, tasks, messages."""
        ...
