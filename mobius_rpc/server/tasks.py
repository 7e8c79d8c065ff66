"""Tasks (MCP 2025-11-25, experimental): task-augmented ``tools/call`` and polling.

A client that sends ``tools/call`` with ``params.task`` gets a
``CreateTaskResult`` at once; the tool keeps running in the session's task
group, and the client follows it with ``tasks/get`` (status), ``tasks/result``
(waits for the outcome), ``tasks/list`` and ``tasks/cancel``.  Status changes
are also announced with ``notifications/tasks/status``.

A task record is plain data (:class:`TaskRecord`): the id, status,
timestamps, TTL, and the outcome, so it can be kept in a store.  Tasks belong
to the session that created them; another session cannot see or cancel them.
Records are dropped once their TTL has passed since creation.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from ..core.errors import INTERNAL_ERROR, INVALID_PARAMS, LocalProtocolError, McpError
from ..runtime.session import Session
from .pagination import paginate

__all__ = ("TaskRecord", "TaskManager", "TaskCancelled", "TERMINAL", "TASKS_CAPABILITY")

#: the ``tasks`` capability of a server that runs task-augmented ``tools/call``,
#: lists and cancels tasks (2025-11-25); never mutate it, copy it
TASKS_CAPABILITY: dict[str, Any] = {"list": {}, "cancel": {},
                                    "requests": {"tools": {"call": {}}}}

log = logging.getLogger("mobius_rpc.server")

TERMINAL = frozenset(("completed", "failed", "cancelled"))
RELATED_TASK = "io.modelcontextprotocol/related-task"


class TaskCancelled(Exception):  # noqa: N818 - an outcome, not a failure
    """Raised by a task's work to end the task as ``cancelled`` rather than failed.

    For work that learns it was cancelled elsewhere: a proxy whose task
    follows another server's task, cancelled there, reports the outcome the
    other server reports.
    """

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)
        self.message = message


def outcome(task_id: str, status: str, result: dict[str, Any] | None,
            error: dict[str, Any] | None) -> dict[str, Any]:
    """What ``tasks/result`` answers for a finished task, wherever its record lives.

    One function for the in-memory and the store-backed managers, so that a
    cancelled or failed task is refused the same way on every replica and the
    result always carries the related-task ``_meta`` entry.
    """
    related = {RELATED_TASK: {"taskId": task_id}}
    if status == "cancelled":
        raise McpError(INVALID_PARAMS, f"Task {task_id} was cancelled", related)
    if error is not None:
        raise McpError(error["code"], error["message"], related)
    assert result is not None
    meta = dict(result.get("_meta") or {})
    meta.update(related)
    return {**result, "_meta": meta}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class TaskRecord:
    task_id: str
    status: str
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int
    status_message: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    created_monotonic: float = field(default_factory=time.monotonic)
    done: anyio.Event = field(default_factory=anyio.Event, repr=False)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope, repr=False)

    def wire(self) -> dict[str, Any]:
        """The ``Task`` object of the protocol."""
        out: dict[str, Any] = {"taskId": self.task_id, "status": self.status,
                               "createdAt": self.created_at,
                               "lastUpdatedAt": self.last_updated_at, "ttl": self.ttl_ms,
                               "pollInterval": self.poll_interval_ms}
        if self.status_message:
            out["statusMessage"] = self.status_message
        return out

    def expired(self, now: float) -> bool:
        return self.ttl_ms is not None and now - self.created_monotonic > self.ttl_ms / 1000


class TaskManager:
    """Creates, runs and answers for the tasks of every session of one server."""

    def __init__(self, *, default_ttl_ms: int = 3_600_000, max_ttl_ms: int = 86_400_000,
                 poll_interval_ms: int = 1000, page_size: int = 100) -> None:
        self.default_ttl_ms = default_ttl_ms
        self.max_ttl_ms = max_ttl_ms
        self.poll_interval_ms = poll_interval_ms
        self.page_size = page_size

    def _tasks(self, session: Session) -> dict[str, TaskRecord]:
        tasks: dict[str, TaskRecord] = session.state.setdefault("tasks", {})
        now = time.monotonic()
        for task_id in [t for t, record in tasks.items() if record.expired(now)]:
            del tasks[task_id]
        return tasks

    def _get(self, session: Session, params: dict[str, Any]) -> TaskRecord:
        record = self._tasks(session).get(params["taskId"])
        if record is None:
            raise McpError(INVALID_PARAMS, f"Unknown task: {params['taskId']}")
        return record

    async def begin(self, session: Session, requested: dict[str, Any],
                    run: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """What ``tools/call`` with ``params.task`` calls: :meth:`start` here; a
        manager whose records live in a store writes the record first."""
        return self.start(session, requested, run)

    def start(self, session: Session, requested: dict[str, Any],
              run: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Create a task that runs ``run`` in the background; returns CreateTaskResult."""
        ttl = requested.get("ttl")
        ttl_ms = min(ttl, self.max_ttl_ms) if isinstance(ttl, int) and ttl >= 0 \
            else self.default_ttl_ms
        stamp = _now_iso()
        record = TaskRecord(secrets.token_urlsafe(16), "working", stamp, stamp, ttl_ms,
                            self.poll_interval_ms)
        self._tasks(session)[record.task_id] = record
        session.start_soon(self._run, session, record, run)
        return {"task": record.wire()}

    async def _run(self, session: Session, record: TaskRecord,
                   run: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        try:
            with record.scope:
                try:
                    record.result = await run()
                    self._set(session, record, "failed" if record.result.get("isError")
                              else "completed")
                except TaskCancelled as exc:
                    self._set(session, record, "cancelled", exc.message)
                except McpError as exc:
                    record.error = exc.to_error_object()
                    self._set(session, record, "failed", exc.message)
                except Exception as exc:
                    log.exception("task %s failed", record.task_id)
                    record.error = {"code": INTERNAL_ERROR, "message": "Internal error"}
                    self._set(session, record, "failed", type(exc).__name__)
            if record.scope.cancelled_caught and record.status not in TERMINAL:
                self._set(session, record, "cancelled", "cancelled")
        finally:
            record.done.set()

    def _set(self, session: Session, record: TaskRecord, status: str,
             message: str | None = None) -> None:
        record.status = status
        record.status_message = message
        record.last_updated_at = _now_iso()
        if not session.closed:
            try:
                session.notify_soon("notifications/tasks/status", record.wire())
            except LocalProtocolError:
                pass

    def set_status(self, session: Session, task_id: str, status: str,
                   message: str | None = None) -> None:
        """Move a running task between ``working`` and ``input_required``, with
        ``message`` as its ``statusMessage`` (None: none)."""
        record = self._tasks(session).get(task_id)
        if record is not None and record.status not in TERMINAL:
            self._set(session, record, status, message)

    # ------------------------------------------------------------ the methods

    async def get(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        return self._get(session, params).wire()

    async def result(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        """``tasks/result``: wait for the outcome, then return it (or its error)."""
        record = self._get(session, params)
        await record.done.wait()
        return outcome(record.task_id, record.status, record.result, record.error)

    async def list(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        page, cursor = paginate("tasks", [r.wire() for r in self._tasks(session).values()],
                                params, self.page_size)
        result: dict[str, Any] = {"tasks": list(page)}
        if cursor is not None:
            result["nextCursor"] = cursor
        return result

    async def cancel(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        record = self._get(session, params)
        if record.status in TERMINAL:
            raise McpError(INVALID_PARAMS, f"Task {record.task_id} is already {record.status}")
        self._set(session, record, "cancelled", "cancelled by the client")
        record.scope.cancel()
        return record.wire()
