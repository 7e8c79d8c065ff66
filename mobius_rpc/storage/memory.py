"""The memory store: the same behaviour as the databases, in dictionaries.

For tests and for embedding without a database.  ``memory:`` opens a private
store; ``memory:NAME`` opens the store of that name shared by every opener in
this process while any of them keeps it open, which is how two in-process
"replicas" share state in a test (later openers share the first opener's
retention and clock).  Nothing survives the process.

Every rule the SQL stores apply (event ids, retention, expiry, terminal task
statuses, cursors) is written again here rather than shared, on purpose: the
contract suite runs the same cases against all three, so a rule one backend
gets wrong shows up as a difference.
"""

from __future__ import annotations

import time
from bisect import bisect_right, insort
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace

from .common import (
    check_after,
    check_limit,
    check_message,
    decode_cursor,
    encode_cursor,
    json_copy,
    sweep_parts,
)
from .errors import StoreConflict, StreamFinished
from .fanout import Fanout, FanoutSubscription
from .migrate import LATEST
from .records import (
    Message,
    Replay,
    Retention,
    SchemaStatus,
    SessionRecord,
    StoredEvent,
    SweepReport,
    TaskPage,
    TaskRecord,
)

__all__ = ("MemoryStore", "open_memory")

Clock = Callable[[], float]


class MemorySessions:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._records: dict[str, SessionRecord] = {}

    def _live(self, session_id: str) -> SessionRecord | None:
        record = self._records.get(session_id)
        return record if record is not None and record.expires_at >= self._clock() else None

    async def get(self, session_id: str) -> SessionRecord | None:
        return self._live(session_id)

    async def put(self, record: SessionRecord) -> None:
        self._records[record.session_id] = replace(
            record, subscriptions=frozenset(record.subscriptions),
            client_info=json_copy(record.client_info),
            capabilities=json_copy(record.capabilities))

    async def touch(self, session_id: str, last_seen: float, expires_at: float) -> bool:
        record = self._live(session_id)
        if record is None:
            return False
        self._records[session_id] = replace(record, last_seen=last_seen, expires_at=expires_at)
        return True

    async def set_log_level(self, session_id: str, level: str | None) -> bool:
        record = self._live(session_id)
        if record is None:
            return False
        self._records[session_id] = replace(record, log_level=level)
        return True

    async def subscribe(self, session_id: str, uri: str) -> bool:
        record = self._live(session_id)
        if record is None:
            return False
        self._records[session_id] = replace(record, subscriptions=record.subscriptions | {uri})
        return True

    async def unsubscribe(self, session_id: str, uri: str) -> bool:
        record = self._live(session_id)
        if record is None:
            return False
        self._records[session_id] = replace(record, subscriptions=record.subscriptions - {uri})
        return True

    async def subscribers(self, uri: str) -> list[str]:
        now = self._clock()
        return sorted(r.session_id for r in self._records.values()
                      if uri in r.subscriptions and r.expires_at >= now)

    async def delete(self, session_id: str) -> bool:
        return self._records.pop(session_id, None) is not None

    async def expire_older_than(self, cutoff: float) -> list[str]:
        gone = sorted(sid for sid, r in self._records.items() if r.expires_at < cutoff)
        for session_id in gone:
            del self._records[session_id]
        return gone


@dataclass
class _Stream:
    last_id: int
    evicted_through: int = 0
    finished: bool = False


@dataclass
class _Log:
    last_id: int = 0
    events: deque[StoredEvent] = field(default_factory=deque)
    total_bytes: int = 0
    streams: dict[str, _Stream] = field(default_factory=dict)

    def evict_through(self, floor: int) -> int:
        """Drop every event with an id up to ``floor``; how many went."""
        count = 0
        while self.events and self.events[0].event_id <= floor:
            event = self.events.popleft()
            self.total_bytes -= len(event.data)
            self.streams[event.stream].evicted_through = event.event_id
            count += 1
        return count


class MemoryEvents:
    def __init__(self, retention: Retention, clock: Clock) -> None:
        self._retention = retention
        self._clock = clock
        self._logs: dict[str, _Log] = {}

    async def append(self, session_id: str, stream: str, data: bytes) -> int:
        log = self._logs.setdefault(session_id, _Log())
        state = log.streams.get(stream)
        if state is not None and state.finished:
            raise StreamFinished(f"stream {stream!r} of session {session_id!r} is finished")
        now = self._clock()
        log.last_id += 1
        event = StoredEvent(log.last_id, stream, bytes(data), now)
        log.events.append(event)
        log.total_bytes += len(event.data)
        if state is None:
            log.streams[stream] = _Stream(log.last_id)
        else:
            state.last_id = log.last_id
        self._apply_retention(log, now)
        return event.event_id

    def _apply_retention(self, log: _Log, now: float) -> None:
        bounds = self._retention
        floor = log.last_id - bounds.max_events
        excess = log.total_bytes - bounds.max_bytes
        for event in log.events:
            if excess <= 0:
                break
            excess -= len(event.data)
            floor = max(floor, event.event_id)
        cutoff = now - bounds.max_age
        if log.events and log.events[0].created < cutoff:
            floor = max(floor, max(e.event_id for e in log.events if e.created < cutoff))
        log.evict_through(floor)

    async def finish(self, session_id: str, stream: str) -> None:
        log = self._logs.setdefault(session_id, _Log())
        log.streams.setdefault(stream, _Stream(0)).finished = True

    async def replay(self, session_id: str, stream: str, after: int = 0) -> Replay:
        check_after(after)
        log = self._logs.get(session_id)
        state = None if log is None else log.streams.get(stream)
        if log is None or state is None or after > log.last_id:
            return Replay(known=False)
        events = tuple(e for e in log.events if e.stream == stream and e.event_id > after)
        evicted = (after + 1, state.evicted_through) if state.evicted_through > after else None
        return Replay(known=True, events=events, evicted=evicted, finished=state.finished)

    async def delete_session(self, session_id: str) -> None:
        self._logs.pop(session_id, None)

    async def expire_older_than(self, cutoff: float) -> int:
        count = 0
        for log in self._logs.values():
            old = [e.event_id for e in log.events if e.created < cutoff]
            if old:
                count += log.evict_through(max(old))
        return count


class MemoryTasks:
    """Tasks by id, plus each session's (created, task_id) keys kept sorted for paging."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._tasks: dict[str, TaskRecord] = {}
        self._order: dict[str, list[tuple[float, str]]] = {}

    def _visible(self, record: TaskRecord, now: float) -> bool:
        expires = record.expires_at
        return expires is None or expires >= now

    def _live(self, session_id: str, task_id: str) -> TaskRecord | None:
        record = self._tasks.get(task_id)
        if record is None or record.session_id != session_id:
            return None
        return record if self._visible(record, self._clock()) else None

    async def create(self, record: TaskRecord) -> None:
        if record.task_id in self._tasks:
            raise StoreConflict(f"task {record.task_id!r} already exists")
        self._tasks[record.task_id] = replace(record, result=json_copy(record.result),
                                              error=json_copy(record.error))
        insort(self._order.setdefault(record.session_id, []), (record.created, record.task_id))

    async def get(self, session_id: str, task_id: str) -> TaskRecord | None:
        return self._live(session_id, task_id)

    async def update_status(self, session_id: str, task_id: str, status: str, *,
                            message: str | None = None, result: dict[str, object] | None = None,
                            error: dict[str, object] | None = None) -> TaskRecord | None:
        record = self._live(session_id, task_id)
        if record is None or record.terminal:
            return record
        record = replace(record, status=status, status_message=message, updated=self._clock(),
                         result=record.result if result is None else json_copy(result),
                         error=record.error if error is None else json_copy(error))
        self._tasks[task_id] = record
        return record

    async def list(self, session_id: str, *, cursor: str | None = None,
                   limit: int = 100) -> TaskPage:
        check_limit(limit)
        keys = self._order.get(session_id, [])
        position = 0 if cursor is None else bisect_right(keys, decode_cursor(cursor))
        now = self._clock()
        page: list[TaskRecord] = []
        for key in keys[position:]:
            record = self._tasks[key[1]]
            if self._visible(record, now):
                page.append(record)
                if len(page) > limit:
                    break
        more = len(page) > limit
        page = page[:limit]
        return TaskPage(tuple(page),
                        encode_cursor(page[-1].created, page[-1].task_id) if more else None)

    async def expire(self, now: float) -> int:
        gone = [t for t in self._tasks.values()
                if t.expires_at is not None and t.expires_at < now]
        for record in gone:
            del self._tasks[record.task_id]
            keys = self._order[record.session_id]
            keys.remove((record.created, record.task_id))
            if not keys:
                del self._order[record.session_id]
        return len(gone)


class MemoryChannel:
    def __init__(self) -> None:
        self.fanout = Fanout()

    async def publish(self, channel: str, payload: bytes) -> None:
        check_message(channel, payload)
        self.fanout.deliver(Message(channel, bytes(payload)))

    def subscribe(self, *channels: str) -> AbstractAsyncContextManager[FanoutSubscription]:
        for channel in channels:
            check_message(channel, b"")
        return self.fanout.subscribe(*channels)


class MemoryStore:
    """All four parts in memory (see the module docstring for sharing by name)."""

    backend = "memory"

    def __init__(self, name: str = "", *, retention: Retention | None = None,
                 clock: Clock = time.time) -> None:
        self.location = f"memory:{name}"
        self.retention = retention or Retention()
        self.clock = clock
        self.sessions = MemorySessions(clock)
        self.events = MemoryEvents(self.retention, clock)
        self.tasks = MemoryTasks(clock)
        self.channel = MemoryChannel()

    async def schema(self) -> SchemaStatus:
        return SchemaStatus(self.backend, self.location, LATEST, LATEST)

    async def sweep(self, now: float | None = None) -> SweepReport:
        return await sweep_parts(self.clock() if now is None else now, self.retention,
                                 self.sessions, self.events, self.tasks)


_shared: dict[str, tuple[MemoryStore, int]] = {}


@asynccontextmanager
async def open_memory(name: str = "", *, retention: Retention | None = None,
                      clock: Clock = time.time) -> AsyncIterator[MemoryStore]:
    """A private store (no name) or the process-wide store called ``name``."""
    if not name:
        yield MemoryStore(retention=retention, clock=clock)
        return
    store, users = _shared.get(name, (None, 0))
    if store is None:
        store = MemoryStore(name, retention=retention, clock=clock)
    _shared[name] = (store, users + 1)
    try:
        yield store
    finally:
        current, count = _shared[name]
        if count <= 1:
            del _shared[name]
            current.channel.fanout.close()
        else:
            _shared[name] = (current, count - 1)
