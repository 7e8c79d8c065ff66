"""Tasks (2025-11-25) as records in a shared TaskStore, for replicas of one server.

With legacy sessions shared by several processes (``server.relay``), a client
may create a task through one replica and poll it through another.  Each task
is then a :class:`~mobius_rpc.storage.records.TaskRecord` in the store: any
replica answers ``tasks/get``, ``tasks/list``, ``tasks/result`` and
``tasks/cancel`` from it, while the handler runs in the replica that started it.

A handler is code running in one process, so it cannot move: when that process
dies the task cannot be resumed, and it must fail rather than stay ``working``
forever.  The running replica renews the record every ``lease / 3`` seconds (a
status write that only moves ``updated``); a task whose record has not been
renewed for ``lease`` seconds is failed by whichever replica reads it next,
saying why.  A cancel made on another replica is a status write, announced on
the replicas' channel: the running replica stops the handler at once (or, had
the message been lost, at its next renewal).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio

from ..core.errors import INTERNAL_ERROR, INVALID_PARAMS, LocalProtocolError, McpError
from ..runtime.session import Session
from ..storage.base import TaskStore
from ..storage.records import TaskRecord
from .tasks import TaskCancelled, TaskManager, outcome

__all__ = ("SharedTasks",)

log = logging.getLogger("mobius_rpc.server")

_ORPHANED = {"code": INTERNAL_ERROR,
             "message": "Internal error: the server process running this task stopped"}


def _iso(moment: float) -> str:
    stamp = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def wire(record: TaskRecord) -> dict[str, Any]:
    """The protocol's ``Task`` object for a stored record."""
    out: dict[str, Any] = {"taskId": record.task_id, "status": record.status,
                           "createdAt": _iso(record.created),
                           "lastUpdatedAt": _iso(record.updated), "ttl": record.ttl_ms,
                           "pollInterval": record.poll_interval_ms}
    if record.status_message:
        out["statusMessage"] = record.status_message
    return out


def session_id_of(session: Session) -> str:
    session_id = getattr(session.stream, "session_id", None)
    if not isinstance(session_id, str):
        raise McpError(INVALID_PARAMS, "Invalid params: tasks need a shared HTTP session")
    return session_id


class SharedTasks(TaskManager):
    """A :class:`TaskManager` whose records live in ``store`` (see the module docstring)."""

    def __init__(self, store: TaskStore, *, replica: str, lease: float = 15.0,
                 cancelled: Callable[[str], Awaitable[None]] | None = None,
                 **options: Any) -> None:
        super().__init__(**options)
        #: tells the other replicas that a task was cancelled here (see :meth:`stop`)
        self._cancelled = cancelled
        if not lease > 0:
            raise ValueError("lease must be positive")
        self.store = store
        self.replica = replica
        self.lease = lease
        #: the tasks whose handlers run here: id -> (cancel scope, set when it ends)
        self._running: dict[str, tuple[anyio.CancelScope, anyio.Event]] = {}

    async def begin(self, session: Session, requested: dict[str, Any],
                    run: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        ttl = requested.get("ttl")
        ttl_ms = min(ttl, self.max_ttl_ms) if isinstance(ttl, int) and ttl >= 0 \
            else self.default_ttl_ms
        now = time.time()
        record = TaskRecord(f"{self.replica}~{secrets.token_urlsafe(12)}",
                            session_id_of(session), "working", now, now,
                            self.poll_interval_ms, ttl_ms)
        await self.store.create(record)
        scope, done = anyio.CancelScope(), anyio.Event()
        self._running[record.task_id] = (scope, done)
        session.start_soon(self._run_stored, session, record, run, scope, done)
        return {"task": wire(record)}

    async def _run_stored(self, session: Session, record: TaskRecord,
                          run: Callable[[], Awaitable[dict[str, Any]]],
                          scope: anyio.CancelScope, done: anyio.Event) -> None:
        status, message = "failed", None
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        try:
            with scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._renew, record, scope)
                    try:
                        result = await run()
                        status = "failed" if result.get("isError") else "completed"
                    except TaskCancelled as exc:
                        status, message = "cancelled", exc.message
                    except McpError as exc:
                        error, message = exc.to_error_object(), exc.message
                    except Exception as exc:
                        log.exception("task %s failed", record.task_id)
                        error = {"code": INTERNAL_ERROR, "message": "Internal error"}
                        message = type(exc).__name__
                    tg.cancel_scope.cancel()
            if scope.cancelled_caught:
                status, message, result, error = "cancelled", "cancelled", None, None
            with anyio.CancelScope(shield=True):
                await self._store_status(session, record, status, message, result, error)
        finally:
            self._running.pop(record.task_id, None)
            done.set()

    async def _renew(self, record: TaskRecord, scope: anyio.CancelScope) -> None:
        while True:
            await anyio.sleep(self.lease / 3)
            current = await self.store.get(record.session_id, record.task_id)
            if current is None or current.terminal:
                scope.cancel()  # cancelled (or expired) through another replica
                return
            await self.store.update_status(record.session_id, record.task_id, current.status,
                                           message=current.status_message)

    async def _store_status(self, session: Session, record: TaskRecord, status: str,
                            message: str | None, result: dict[str, Any] | None = None,
                            error: dict[str, Any] | None = None) -> None:
        updated = await self.store.update_status(record.session_id, record.task_id, status,
                                                 message=message, result=result, error=error)
        if updated is not None and not session.closed:
            try:
                session.notify_soon("notifications/tasks/status", wire(updated))
            except LocalProtocolError:
                pass

    def set_status(self, session: Session, task_id: str, status: str,
                   message: str | None = None) -> None:
        async def write() -> None:
            current = await self.store.get(session_id_of(session), task_id)
            if current is not None and not current.terminal:
                await self._store_status(session, current, status,
                                         current.status_message if message is None else message)

        if task_id in self._running and not session.closed:
            session.start_soon(write)

    # ------------------------------------------------------------ the methods

    async def _find(self, session: Session, params: dict[str, Any]) -> TaskRecord:
        task_id = params["taskId"]
        record = await self.store.get(session_id_of(session), task_id)
        if record is None:
            raise McpError(INVALID_PARAMS, f"Unknown task: {task_id}")
        if not record.terminal and task_id not in self._running \
                and time.time() - record.updated > self.lease:
            failed = await self.store.update_status(record.session_id, task_id, "failed",
                                                    message="the server process running it "
                                                            "stopped", error=_ORPHANED)
            record = failed or record
        return record

    async def get(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        return wire(await self._find(session, params))

    async def result(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        while True:
            record = await self._find(session, params)
            if record.terminal:
                break
            running = self._running.get(record.task_id)
            if running is not None:
                await running[1].wait()
            else:
                await anyio.sleep(min(record.poll_interval_ms / 1000, 0.5))
        return outcome(record.task_id, record.status, record.result, record.error)

    async def list(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        try:
            page = await self.store.list(session_id_of(session), cursor=params.get("cursor"),
                                         limit=self.page_size)
        except ValueError:
            raise McpError(INVALID_PARAMS, "Invalid params: bad cursor") from None
        result: dict[str, Any] = {"tasks": [wire(record) for record in page.tasks]}
        if page.next_cursor is not None:
            result["nextCursor"] = page.next_cursor
        return result

    async def cancel(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        record = await self._find(session, params)
        if record.terminal:
            raise McpError(INVALID_PARAMS, f"Task {record.task_id} is already {record.status}")
        cancelled = await self.store.update_status(record.session_id, record.task_id,
                                                   "cancelled",
                                                   message="cancelled by the client")
        running = self._running.get(record.task_id)
        if running is not None:
            running[0].cancel()
        elif self._cancelled is not None:
            await self._cancelled(record.task_id)  # the replica running it stops it now
        return wire(cancelled or record)

    def stop(self, task_id: str) -> None:
        """Another replica cancelled ``task_id``: stop its handler if it runs here."""
        running = self._running.get(task_id)
        if running is not None:
            running[0].cancel()
