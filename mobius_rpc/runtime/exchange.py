"""A session that serves one self-contained message in the caller's task.

A stateless 2026-07-28 request (one HTTP POST) carries everything it needs
and gets one answer.  Served like a long-lived :class:`Session` it paid for a
receive loop, a task group, a task per request and the hand-offs between
them, which cost several times what the request itself does.
:class:`ExchangeSession` awaits the handler directly in the task that
delivered the message and returns once the answer is sent.

The caller lends a cancel scope, not yet entered, as ``scope`` (the HTTP
transport cancels it when the client leaves a streamed answer), and
:meth:`close` cancels it too.  The exchange enters it around its request
only when the handler says the request may send something before its answer
(:meth:`SessionHandler.may_send_early`): only such a request can turn into
a stream the client leaves, and nothing else can ask to cancel a stateless
request (it cannot receive ``notifications/cancelled``).  Entering a cancel
scope costs about as much as validating the message, so a plain request
(a tool without a context, a list) is served without one.

Work that has to run beside the handler (``notify_soon``, ``start_soon``)
goes to a task group the caller lends, usually the transport's long-lived
one, each piece under its own cancel scope so that it still ends with the
session, as it would in a session's own task group.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..core.connection import Connection
from ..core.errors import ConnectionClosedError
from ..core.events import Event, NotificationReceived, RequestReceived
from ..core.types import TransportContext
from ..transports.base import MessageStream
from .session import Session, SessionHandler

__all__ = ("ExchangeSession", "LentTasks")

log = logging.getLogger("mobius_rpc.runtime")


class LentTasks:
    """A :class:`~.session.TaskRunner` on a task group the transport lends.

    The group is shared with other exchanges, so each piece of work runs
    under a cancel scope of its own that ends with this exchange; cancelling
    also cancels the caller's ``host`` scope (a request that may send before
    its answer runs inside it).
    """

    __slots__ = ("spawner", "host", "serving", "background")

    def __init__(self, spawner: TaskGroup, host: anyio.CancelScope | None) -> None:
        self.spawner = spawner
        self.host = host
        self.serving = False
        self.background: set[anyio.CancelScope] = set()

    @property
    def running(self) -> bool:
        return self.serving

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        if not self.serving:
            raise ConnectionClosedError()
        scope = anyio.CancelScope()
        self.background.add(scope)
        self.spawner.start_soon(self._run, scope, func, args)

    async def _run(self, scope: anyio.CancelScope,
                   func: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...]) -> None:
        # An error here must end this piece of work, not the shared group.
        try:
            with scope:
                await func(*args)
        except Exception:
            log.exception("background work of a stateless request failed")
        finally:
            self.background.discard(scope)

    def cancel_background(self) -> None:
        for scope in self.background:
            scope.cancel()

    def cancel(self) -> None:
        """What can be stopped: the background work, and a request that may
        send before its answer (the others run to the end; their answer is
        dropped)."""
        if self.host is not None:
            self.host.cancel()
        self.cancel_background()


class ExchangeSession(Session):
    """A :class:`Session` for exactly one incoming message (a stateless exchange).

    It overrides nothing: its tasks are a :class:`LentTasks`, the stream is
    left to the transport, and :meth:`serve_once` is the whole of its life.
    """

    def __init__(self, connection: Connection, stream: MessageStream, handler: SessionHandler,
                 spawner: TaskGroup, *, scope: anyio.CancelScope | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        tasks = LentTasks(spawner, scope)
        super().__init__(connection, stream, handler, clock=clock, tasks=tasks,
                         owns_stream=False)
        self._lent = tasks

    async def serve_once(self, data: bytes, decoded: Any = None,
                         transport: TransportContext | None = None) -> None:
        """Digest ``data`` (already parsed as ``decoded``, if given) and serve it.

        Requests are handled one after another in this task; returns when
        every answer has been sent (or :meth:`close` was called), after
        cancelling whatever the handlers left running.
        """
        lent = self._lent
        lent.serving = True
        try:
            events = self.connection.receive(data, self.clock(), decoded=decoded,
                                             transport=transport)
            host = lent.host
            if host is not None and self._may_need_cancelling(events):
                with host:
                    await self._serve_events(events)
            else:
                await self._serve_events(events)
        finally:
            lent.serving = False
            if lent.background:
                lent.cancel_background()
            await self._finish()

    def _may_need_cancelling(self, events: list[Event]) -> bool:
        may_send_early = self.handler.may_send_early
        for event in events:  # a loop: any() would build a generator per request
            if type(event) is RequestReceived and may_send_early(event):
                return True
        return False

    async def _serve_events(self, events: list[Event]) -> None:
        host = self._lent.host
        for event in events:
            if self._closed:
                break
            if isinstance(event, RequestReceived):
                if host is not None:  # guarded by it, if it may need cancelling
                    await self._serve_request(event, None)
                else:  # its cancel scope is the one close() cancels
                    scope = self._scopes[event.id] = self._new_scope()
                    await self._serve_request(event, scope)
            elif isinstance(event, NotificationReceived):
                await self._serve_notification(event)
            else:
                self._dispatch(event)
        await self._flush()
