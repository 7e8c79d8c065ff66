"""Stream events in SQL, with retention applied as each event is appended.

On SQLite the append and its evictions are one transaction; on PostgreSQL,
where every statement is a network round trip, the append is one statement
(``_APPEND_ONE``) and evictions, once a bound is passed, a second transaction.

The first statement of an append upserts the session's ``event_logs`` row,
which both allocates the next id and (on PostgreSQL) locks the row: appenders
of one session serialize there, so ids are gapless and commit in id order,
and a reader replaying "after N" can never miss an id that commits later.

Events are only ever removed as a prefix of the session's ids (the count
bound, the byte bound and the age bound each give a floor; the highest wins),
so what remains is always the run ``floor_id + 1 .. last_id``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..common import check_after
from ..errors import StoreError, StreamFinished
from ..records import Replay, Retention, StoredEvent
from .program import Program, Runner

__all__ = ("SqlEventStore",)

_CHUNK = 256


def _evict(session_id: str, floor: int, new_floor: int) -> Program[int]:
    """Remove the session's events with ids in (floor, new_floor]; how many went.

    Ids are gapless, so that is ``new_floor - floor`` events; each stream that
    loses some remembers the highest id it lost.
    """
    if new_floor <= floor:
        return 0
    yield ("UPDATE event_streams SET evicted_through = (SELECT MAX(e.event_id) FROM events e "
           "WHERE e.session_id = event_streams.session_id AND e.stream = event_streams.stream "
           "AND e.event_id <= ?) WHERE session_id = ? AND stream IN (SELECT stream FROM events "
           "WHERE session_id = ? AND event_id > ? AND event_id <= ?)",
           (new_floor, session_id, session_id, floor, new_floor))
    yield ("UPDATE event_logs SET floor_id = ?, total_bytes = total_bytes - (SELECT "
           "COALESCE(CAST(SUM(size) AS BIGINT), 0) FROM events WHERE session_id = ? "
           "AND event_id <= ?) WHERE session_id = ?",
           (new_floor, session_id, new_floor, session_id))
    yield "DELETE FROM events WHERE session_id = ? AND event_id <= ?", (session_id, new_floor)
    return new_floor - floor


def _bytes_floor(session_id: str, floor: int, excess: int) -> Program[int]:
    """The smallest floor that frees at least ``excess`` bytes, oldest events first."""
    position = floor
    while excess > 0:
        chunk = yield ("SELECT event_id, size FROM events WHERE session_id = ? AND event_id > ? "
                       "ORDER BY event_id LIMIT ?", (session_id, position, _CHUNK))
        if not chunk.rows:
            break
        for event_id, size in chunk.rows:
            excess -= size
            position = event_id
            if excess <= 0:
                break
    return position


def _append(session_id: str, stream: str, data: bytes, now: float,
            bounds: Retention) -> Program[int]:
    size = len(data)
    yield ("INSERT INTO event_logs (session_id, last_id, floor_id, total_bytes) "
           "VALUES (?, 1, 0, ?) ON CONFLICT (session_id) DO UPDATE SET "
           "last_id = event_logs.last_id + 1, "
           "total_bytes = event_logs.total_bytes + excluded.total_bytes", (session_id, size))
    # with the creation time of the oldest event kept (NULL when there is none yet)
    log = yield ("SELECT l.last_id, l.floor_id, l.total_bytes, (SELECT e.created FROM events e "
                 "WHERE e.session_id = l.session_id AND e.event_id = l.floor_id + 1) "
                 "FROM event_logs l WHERE l.session_id = ?", (session_id,))
    event_id, floor, total, oldest = log.rows[0]
    state = yield ("INSERT INTO event_streams (session_id, stream, last_id, evicted_through, "
                   "finished) VALUES (?, ?, ?, 0, 0) ON CONFLICT (session_id, stream) "
                   "DO UPDATE SET last_id = excluded.last_id WHERE event_streams.finished = 0",
                   (session_id, stream, event_id))
    if state.changed == 0:  # the stream exists and is finished (the caller rolls back)
        raise StreamFinished(f"stream {stream!r} of session {session_id!r} is finished")
    yield ("INSERT INTO events (session_id, event_id, stream, data, size, created) "
           "VALUES (?, ?, ?, ?, ?, ?)", (session_id, event_id, stream, data, size, now))
    yield from _retain(session_id, event_id, floor, total, oldest, now, bounds)
    return int(event_id)


def _retain(session_id: str, event_id: int, floor: int, total: int, oldest: float | None,
            now: float, bounds: Retention) -> Program[int]:
    """Apply the bounds to a session whose log stands at (event_id, floor, total)."""
    new_floor = max(floor, event_id - bounds.max_events)
    if total > bounds.max_bytes:
        new_floor = max(new_floor, (yield from _bytes_floor(session_id, floor,
                                                            total - bounds.max_bytes)))
    cutoff = now - bounds.max_age
    if oldest is not None and oldest < cutoff:
        aged = yield ("SELECT MAX(event_id) FROM events WHERE session_id = ? AND created < ?",
                      (session_id, cutoff))
        new_floor = max(new_floor, aged.rows[0][0])
    evicted: int = yield from _evict(session_id, floor, new_floor)
    return evicted


def _over(event_id: int, floor: int, total: int, oldest: float | None, now: float,
          bounds: Retention) -> bool:
    """Whether a session's log is past one of the bounds (so events must go)."""
    return (event_id - bounds.max_events > floor or total > bounds.max_bytes
            or (oldest is not None and oldest < now - bounds.max_age))


# PostgreSQL: the whole append in one statement, so one round trip outside a
# transaction (a statement is atomic by itself).  The log row's upsert allocates
# the id and locks the row, as in _append; a finished stream makes the stream
# upsert return nothing, no event is inserted, and the last column then fails
# to cast (an expression of a column, so the planner cannot fold it early),
# which aborts the statement and undoes the log's increment.
_APPEND_ONE = (
    "WITH log AS (INSERT INTO event_logs (session_id, last_id, floor_id, total_bytes) "
    "VALUES (?, 1, 0, ?) ON CONFLICT (session_id) DO UPDATE SET "
    "last_id = event_logs.last_id + 1, "
    "total_bytes = event_logs.total_bytes + excluded.total_bytes "
    "RETURNING last_id, floor_id, total_bytes), "
    "st AS (INSERT INTO event_streams (session_id, stream, last_id, evicted_through, finished) "
    "SELECT ?, ?, last_id, 0, 0 FROM log ON CONFLICT (session_id, stream) "
    "DO UPDATE SET last_id = excluded.last_id WHERE event_streams.finished = 0 "
    "RETURNING last_id), "
    "ev AS (INSERT INTO events (session_id, event_id, stream, data, size, created) "
    "SELECT ?, last_id, ?, ?, ?, ? FROM st RETURNING event_id) "
    "SELECT log.last_id, log.floor_id, log.total_bytes, (SELECT e.created FROM events e "
    "WHERE e.session_id = ? AND e.event_id = log.floor_id + 1), "
    "CASE WHEN EXISTS (SELECT 1 FROM ev) THEN 0 "
    "ELSE CAST('finished stream ' || CAST(log.last_id AS TEXT) AS INTEGER) END FROM log")


def _append_one(session_id: str, stream: str, data: bytes, now: float) -> Program[
        tuple[int, int, int, float | None]]:
    result = yield _APPEND_ONE, (session_id, len(data), session_id, stream, session_id, stream,
                                 data, len(data), now, session_id)
    event_id, floor, total, oldest, _ = result.rows[0]
    return int(event_id), int(floor), int(total), oldest


def _retain_locked(session_id: str, now: float, bounds: Retention) -> Program[int]:
    """Apply the bounds after an append that ran on its own (PostgreSQL's one statement)."""
    log = yield ("SELECT l.last_id, l.floor_id, l.total_bytes, (SELECT e.created FROM events e "
                 "WHERE e.session_id = l.session_id AND e.event_id = l.floor_id + 1) "
                 "FROM event_logs l WHERE l.session_id = ? FOR UPDATE OF l", (session_id,))
    if not log.rows:
        return 0
    event_id, floor, total, oldest = log.rows[0]
    evicted: int = yield from _retain(session_id, event_id, floor, total, oldest, now, bounds)
    return evicted


def _is_finished(session_id: str, stream: str) -> Program[bool]:
    result = yield ("SELECT finished FROM event_streams WHERE session_id = ? AND stream = ?",
                    (session_id, stream))
    return bool(result.rows and result.rows[0][0])


def _finish(session_id: str, stream: str) -> Program[None]:
    yield ("INSERT INTO event_logs (session_id, last_id, floor_id, total_bytes) "
           "VALUES (?, 0, 0, 0) ON CONFLICT (session_id) DO UPDATE SET "
           "last_id = event_logs.last_id", (session_id,))
    yield ("INSERT INTO event_streams (session_id, stream, last_id, evicted_through, finished) "
           "VALUES (?, ?, 0, 0, 1) ON CONFLICT (session_id, stream) DO UPDATE SET finished = 1",
           (session_id, stream))


def _replay(session_id: str, stream: str, after: int) -> Program[Replay]:
    # one statement, so one snapshot: the stream's state and its events agree
    result = yield ("SELECT l.last_id, s.last_id, s.evicted_through, s.finished, "
                    "e.event_id, e.data, e.created FROM event_logs l "
                    "LEFT JOIN event_streams s ON s.session_id = l.session_id AND s.stream = ? "
                    "LEFT JOIN events e ON e.session_id = l.session_id AND e.stream = ? "
                    "AND e.event_id > ? WHERE l.session_id = ? ORDER BY e.event_id",
                    (stream, stream, after, session_id))
    if not result.rows:
        return Replay(known=False)
    issued, stream_last, evicted_through, finished = result.rows[0][:4]
    if stream_last is None or after > issued:
        return Replay(known=False)
    events = tuple(StoredEvent(int(row[4]), stream, bytes(row[5]), row[6])
                   for row in result.rows if row[4] is not None)
    evicted = (after + 1, int(evicted_through)) if evicted_through > after else None
    return Replay(known=True, events=events, evicted=evicted, finished=bool(finished))


def _delete_session(session_id: str) -> Program[None]:
    yield "DELETE FROM events WHERE session_id = ?", (session_id,)
    yield "DELETE FROM event_streams WHERE session_id = ?", (session_id,)
    yield "DELETE FROM event_logs WHERE session_id = ?", (session_id,)


def _expire(cutoff: float) -> Program[int]:
    found = yield ("SELECT session_id, MAX(event_id) FROM events WHERE created < ? "
                   "GROUP BY session_id ORDER BY session_id", (cutoff,))
    count = 0
    for session_id, new_floor in found.rows:
        yield ("UPDATE event_logs SET floor_id = floor_id WHERE session_id = ?", (session_id,))
        log = yield "SELECT floor_id FROM event_logs WHERE session_id = ?", (session_id,)
        if log.rows:
            count += yield from _evict(session_id, log.rows[0][0], new_floor)
    return count


class SqlEventStore:
    def __init__(self, runner: Runner, retention: Retention, clock: Callable[[], float]) -> None:
        self._run = runner
        self._retention = retention
        self._clock = clock

    async def append(self, session_id: str, stream: str, data: bytes) -> int:
        payload = bytes(data)
        if self._run.dialect == "postgresql":
            return await self._append_postgresql(session_id, stream, payload)
        return await self._run.write(
            lambda: _append(session_id, stream, payload, self._clock(), self._retention))

    async def _append_postgresql(self, session_id: str, stream: str, payload: bytes) -> int:
        """One round trip; a second transaction only when events must be evicted
        (readers may see the log past its bounds in between, never a hole)."""
        now = self._clock()
        try:
            event_id, floor, total, oldest = await self._run.read(
                lambda: _append_one(session_id, stream, payload, now))
        except StoreError:
            if await self._run.read(lambda: _is_finished(session_id, stream)):
                raise StreamFinished(f"stream {stream!r} of session {session_id!r} "
                                     "is finished") from None
            raise
        if _over(event_id, floor, total, oldest, now, self._retention):
            await self._run.write(lambda: _retain_locked(session_id, now, self._retention))
        return event_id

    async def finish(self, session_id: str, stream: str) -> None:
        await self._run.write(lambda: _finish(session_id, stream))

    async def replay(self, session_id: str, stream: str, after: int = 0) -> Replay:
        check_after(after)
        return await self._run.read(lambda: _replay(session_id, stream, after))

    async def delete_session(self, session_id: str) -> None:
        await self._run.write(lambda: _delete_session(session_id))

    async def expire_older_than(self, cutoff: float) -> int:
        return await self._run.write(lambda: _expire(cutoff))
