"""The plain data that goes in and out of a store.

Frozen dataclasses of strings, numbers, bytes, frozensets and JSON-shaped
dicts: nothing here holds an event, a cancel scope, a socket or a protocol
object, so a record means the same thing in memory, in SQLite and in
PostgreSQL, and a record written by one process can be read by another.
Times are seconds since the Unix epoch (``time.time()``), as floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = (
    "SessionRecord",
    "StoredEvent",
    "Replay",
    "Retention",
    "TaskRecord",
    "TaskPage",
    "TERMINAL_STATUSES",
    "Message",
    "SchemaStatus",
    "SweepReport",
)

JsonObject = dict[str, Any]

#: task statuses after which a task never changes again
TERMINAL_STATUSES = frozenset(("completed", "failed", "cancelled"))


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session that outlives the connection (and the process) that created it.

    ``client_info`` and ``capabilities`` are JSON objects as the peer sent them;
    ``subscriptions`` is the set of resource URIs the session subscribed to.
    ``expires_at`` is absolute: :meth:`SessionStore.expire_older_than` removes the
    session once it has passed.
    """

    session_id: str
    created: float
    last_seen: float
    expires_at: float
    protocol_version: str | None = None
    client_info: JsonObject | None = None
    capabilities: JsonObject | None = None
    log_level: str | None = None
    subscriptions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event of a session's stream.

    ``event_id`` increases by one with every event the session stores, whatever
    its stream, so an id alone orders events and ``after=id`` says where to resume.
    """

    event_id: int
    stream: str
    data: bytes
    created: float


@dataclass(frozen=True, slots=True)
class Replay:
    """The answer to "what did this stream carry after event ``after``?".

    ``known`` is False when the stream does not exist or ``after`` is an id the
    session never issued: a resume must be refused.  ``evicted`` is set when
    retention already dropped events of this stream that came after ``after``:
    ``(first, last)`` bounds the session event ids in which they were lost, so a
    caller can refuse the resume and say why instead of replaying with a hole.
    """

    known: bool
    events: tuple[StoredEvent, ...] = ()
    evicted: tuple[int, int] | None = None
    finished: bool = False

    @property
    def complete(self) -> bool:
        """True when ``events`` is exactly everything the stream carried after ``after``."""
        return self.known and self.evicted is None


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of a session's stream history is kept (per session, all its streams).

    After every append what remains is the newest run of events whose count is at
    most ``max_events``, whose sizes sum to at most ``max_bytes`` and (as of the
    append, or of the last sweep) none older than ``max_age`` seconds.
    """

    max_events: int = 1000
    max_bytes: int = 4 * 1024 * 1024
    max_age: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_events < 0 or self.max_bytes < 0 or self.max_age < 0:
            raise ValueError("retention bounds must not be negative")


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A long-running request (2025-11-25 tasks) as data.

    ``result`` and ``error`` are JSON objects (the outcome); ``ttl_ms`` counts from
    ``created`` (None: kept until deleted); ``poll_interval_ms`` is what the
    requester is told to wait between polls.
    """

    task_id: str
    session_id: str
    status: str
    created: float
    updated: float
    poll_interval_ms: int
    ttl_ms: int | None = None
    status_message: str | None = None
    result: JsonObject | None = None
    error: JsonObject | None = None

    @property
    def expires_at(self) -> float | None:
        return None if self.ttl_ms is None else self.created + self.ttl_ms / 1000

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of a session's tasks, oldest first; ``next_cursor`` is None on the last."""

    tasks: tuple[TaskRecord, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A notification between replicas: a channel name and opaque bytes."""

    channel: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where a store is and which migrations it has (``location`` never shows a password)."""

    backend: str
    location: str
    version: int
    latest: int
    pending: tuple[str, ...] = ()
    exists: bool = True

    @property
    def up_to_date(self) -> bool:
        return self.version == self.latest


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one :meth:`Store.sweep` removed."""

    sessions: tuple[str, ...] = ()
    events: int = 0
    tasks: int = 0
    messages: int = 0
