"""Sessions and their subscriptions, in SQL (see ``base.SessionStore``).

A session past its ``expires_at`` is invisible at once (get, touch, subscribe
and ``subscribers`` all compare with the clock); ``expire_older_than`` only
reclaims the rows.  Subscribing is a row of its own so that two replicas adding
URIs to one session at the same time both win; the no-op ``UPDATE`` of the
session row first locks it (on PostgreSQL) so a concurrent ``put`` or
``delete`` cannot interleave.
"""

from __future__ import annotations

from collections.abc import Callable

from ..common import dump_json, load_json
from ..records import SessionRecord
from .program import Program, Runner

__all__ = ("SqlSessionStore",)

_COLUMNS = ("s.session_id, s.created, s.last_seen, s.expires_at, s.protocol_version, "
            "s.client_info, s.capabilities, s.log_level")


def _get(session_id: str, now: float) -> Program[SessionRecord | None]:
    result = yield (f"SELECT {_COLUMNS}, u.uri FROM sessions s "
                    "LEFT JOIN session_subscriptions u ON u.session_id = s.session_id "
                    "WHERE s.session_id = ? AND s.expires_at >= ?", (session_id, now))
    if not result.rows:
        return None
    first = result.rows[0]
    return SessionRecord(
        session_id=first[0], created=first[1], last_seen=first[2], expires_at=first[3],
        protocol_version=first[4], client_info=load_json(first[5]),
        capabilities=load_json(first[6]), log_level=first[7],
        subscriptions=frozenset(row[8] for row in result.rows if row[8] is not None))


def _put(record: SessionRecord) -> Program[None]:
    yield ("INSERT INTO sessions (session_id, protocol_version, client_info, capabilities, "
           "log_level, created, last_seen, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (session_id) DO UPDATE SET protocol_version = excluded.protocol_version, "
           "client_info = excluded.client_info, capabilities = excluded.capabilities, "
           "log_level = excluded.log_level, created = excluded.created, "
           "last_seen = excluded.last_seen, expires_at = excluded.expires_at",
           (record.session_id, record.protocol_version, dump_json(record.client_info),
            dump_json(record.capabilities), record.log_level, record.created,
            record.last_seen, record.expires_at))
    yield "DELETE FROM session_subscriptions WHERE session_id = ?", (record.session_id,)
    for uri in sorted(record.subscriptions):
        yield ("INSERT INTO session_subscriptions (session_id, uri) VALUES (?, ?)",
               (record.session_id, uri))


def _touch(session_id: str, last_seen: float, expires_at: float, now: float) -> Program[bool]:
    result = yield ("UPDATE sessions SET last_seen = ?, expires_at = ? "
                    "WHERE session_id = ? AND expires_at >= ?",
                    (last_seen, expires_at, session_id, now))
    return result.changed > 0


def _set_log_level(session_id: str, level: str | None, now: float) -> Program[bool]:
    result = yield ("UPDATE sessions SET log_level = ? WHERE session_id = ? AND expires_at >= ?",
                    (level, session_id, now))
    return result.changed > 0


def _lock_live(session_id: str, now: float) -> Program[bool]:
    result = yield ("UPDATE sessions SET last_seen = last_seen "
                    "WHERE session_id = ? AND expires_at >= ?", (session_id, now))
    return result.changed > 0


def _subscribe(session_id: str, uri: str, now: float) -> Program[bool]:
    if not (yield from _lock_live(session_id, now)):
        return False
    yield ("INSERT INTO session_subscriptions (session_id, uri) VALUES (?, ?) "
           "ON CONFLICT (session_id, uri) DO NOTHING", (session_id, uri))
    return True


def _unsubscribe(session_id: str, uri: str, now: float) -> Program[bool]:
    if not (yield from _lock_live(session_id, now)):
        return False
    yield ("DELETE FROM session_subscriptions WHERE session_id = ? AND uri = ?",
           (session_id, uri))
    return True


def _subscribers(uri: str, now: float) -> Program[list[str]]:
    result = yield ("SELECT u.session_id FROM session_subscriptions u "
                    "JOIN sessions s ON s.session_id = u.session_id "
                    "WHERE u.uri = ? AND s.expires_at >= ?", (uri, now))
    return sorted(row[0] for row in result.rows)  # code point order on every backend


def _delete(session_id: str) -> Program[bool]:
    # subscriptions go by ON DELETE CASCADE (foreign keys are on in every connection)
    result = yield "DELETE FROM sessions WHERE session_id = ?", (session_id,)
    return result.changed > 0


def _expire(cutoff: float) -> Program[list[str]]:
    found = yield "SELECT session_id FROM sessions WHERE expires_at < ?", (cutoff,)
    gone: list[str] = []
    for (session_id,) in found.rows:
        # re-checked per row: on PostgreSQL another replica may have touched it meanwhile
        result = yield ("DELETE FROM sessions WHERE session_id = ? AND expires_at < ?",
                        (session_id, cutoff))
        if result.changed:
            gone.append(session_id)
    return sorted(gone)


class SqlSessionStore:
    def __init__(self, runner: Runner, clock: Callable[[], float]) -> None:
        self._run = runner
        self._clock = clock

    async def get(self, session_id: str) -> SessionRecord | None:
        return await self._run.read(lambda: _get(session_id, self._clock()))

    async def put(self, record: SessionRecord) -> None:
        await self._run.write(lambda: _put(record))

    async def touch(self, session_id: str, last_seen: float, expires_at: float) -> bool:
        return await self._run.write(
            lambda: _touch(session_id, last_seen, expires_at, self._clock()))

    async def set_log_level(self, session_id: str, level: str | None) -> bool:
        return await self._run.write(lambda: _set_log_level(session_id, level, self._clock()))

    async def subscribe(self, session_id: str, uri: str) -> bool:
        return await self._run.write(lambda: _subscribe(session_id, uri, self._clock()))

    async def unsubscribe(self, session_id: str, uri: str) -> bool:
        return await self._run.write(lambda: _unsubscribe(session_id, uri, self._clock()))

    async def subscribers(self, uri: str) -> list[str]:
        return await self._run.read(lambda: _subscribers(uri, self._clock()))

    async def delete(self, session_id: str) -> bool:
        return await self._run.write(lambda: _delete(session_id))

    async def expire_older_than(self, cutoff: float) -> list[str]:
        return await self._run.write(lambda: _expire(cutoff))
