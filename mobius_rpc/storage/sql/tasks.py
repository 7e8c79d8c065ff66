"""Task records in SQL (see ``base.TaskStore``).

The terminal-status rule is part of the ``UPDATE``'s ``WHERE``, so it holds
between replicas without a lock: of two replicas finishing the same task, the
first to commit wins and the second one's update matches no row.  An expired
task is invisible at once; :meth:`SqlTaskStore.expire` reclaims the rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..common import check_limit, decode_cursor, dump_json, encode_cursor, load_json
from ..errors import StoreConflict
from ..records import TERMINAL_STATUSES, TaskPage, TaskRecord
from .program import Program, Runner

__all__ = ("SqlTaskStore",)

_COLUMNS = ("task_id, session_id, status, created, updated, poll_interval_ms, ttl_ms, "
            "status_message, result, error")
_VISIBLE = "(expires_at IS NULL OR expires_at >= ?)"
_TERMINAL = ", ".join(f"'{status}'" for status in sorted(TERMINAL_STATUSES))


def _record(row: tuple[Any, ...]) -> TaskRecord:
    return TaskRecord(task_id=row[0], session_id=row[1], status=row[2], created=row[3],
                      updated=row[4], poll_interval_ms=int(row[5]),
                      ttl_ms=None if row[6] is None else int(row[6]), status_message=row[7],
                      result=load_json(row[8]), error=load_json(row[9]))


def _create(record: TaskRecord) -> Program[None]:
    result = yield (f"INSERT INTO tasks ({_COLUMNS}, expires_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (task_id) DO NOTHING",
                    (record.task_id, record.session_id, record.status, record.created,
                     record.updated, record.poll_interval_ms, record.ttl_ms,
                     record.status_message, dump_json(record.result), dump_json(record.error),
                     record.expires_at))
    if result.changed == 0:
        raise StoreConflict(f"task {record.task_id!r} already exists")


def _get(session_id: str, task_id: str, now: float) -> Program[TaskRecord | None]:
    result = yield (f"SELECT {_COLUMNS} FROM tasks WHERE task_id = ? AND session_id = ? "
                    f"AND {_VISIBLE}", (task_id, session_id, now))
    return _record(result.rows[0]) if result.rows else None


def _update(session_id: str, task_id: str, status: str, message: str | None,
            result_json: str | None, error_json: str | None,
            now: float) -> Program[TaskRecord | None]:
    yield ("UPDATE tasks SET status = ?, status_message = ?, updated = ?, "
           "result = COALESCE(?, result), error = COALESCE(?, error) "
           f"WHERE task_id = ? AND session_id = ? AND {_VISIBLE} "
           f"AND status NOT IN ({_TERMINAL})",
           (status, message, now, result_json, error_json, task_id, session_id, now))
    return (yield from _get(session_id, task_id, now))


def _list(session_id: str, cursor: str | None, limit: int, now: float,
          collate: str) -> Program[TaskPage]:
    # ids compare by code point on both databases (PostgreSQL's default collation
    # would follow the locale), so the order of tasks created at the same instant
    # is the same everywhere
    if cursor is None:
        rows = yield (f"SELECT {_COLUMNS} FROM tasks WHERE session_id = ? AND {_VISIBLE} "
                      f"ORDER BY created, task_id{collate} LIMIT ?", (session_id, now, limit + 1))
    else:
        created, task_id = decode_cursor(cursor)
        rows = yield (f"SELECT {_COLUMNS} FROM tasks WHERE session_id = ? AND {_VISIBLE} "
                      f"AND (created > ? OR (created = ? AND task_id{collate} > ?)) "
                      f"ORDER BY created, task_id{collate} LIMIT ?",
                      (session_id, now, created, created, task_id, limit + 1))
    tasks = tuple(_record(row) for row in rows.rows[:limit])
    more = len(rows.rows) > limit
    return TaskPage(tasks, encode_cursor(tasks[-1].created, tasks[-1].task_id) if more else None)


def _expire(now: float) -> Program[int]:
    result = yield ("DELETE FROM tasks WHERE expires_at IS NOT NULL AND expires_at < ?", (now,))
    return result.changed


class SqlTaskStore:
    def __init__(self, runner: Runner, clock: Callable[[], float]) -> None:
        self._run = runner
        self._clock = clock
        self._collate = ' COLLATE "C"' if runner.dialect == "postgresql" else ""

    async def create(self, record: TaskRecord) -> None:
        await self._run.write(lambda: _create(record))

    async def get(self, session_id: str, task_id: str) -> TaskRecord | None:
        return await self._run.read(lambda: _get(session_id, task_id, self._clock()))

    async def update_status(self, session_id: str, task_id: str, status: str, *,
                            message: str | None = None, result: dict[str, object] | None = None,
                            error: dict[str, object] | None = None) -> TaskRecord | None:
        result_json, error_json = dump_json(result), dump_json(error)
        return await self._run.write(lambda: _update(session_id, task_id, status, message,
                                                     result_json, error_json, self._clock()))

    async def list(self, session_id: str, *, cursor: str | None = None,
                   limit: int = 100) -> TaskPage:
        check_limit(limit)
        if cursor is not None:
            decode_cursor(cursor)  # a bad cursor is a ValueError before any I/O
        return await self._run.read(lambda: _list(session_id, cursor, limit, self._clock(),
                                                    self._collate))

    async def expire(self, now: float) -> int:
        return await self._run.write(lambda: _expire(now))
