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
from ..transports.base import MessageStream
from .session import Session, SessionHandler

__all__ = ("ExchangeSession",)

log = logging.getLogger("mobius_rpc.runtime")


def _always(request: RequestReceived) -> bool:
    return True


class ExchangeSession(Session):
    """A :class:`Session` for exactly one incoming message (a stateless exchange)."""

    def __init__(self, connection: Connection, stream: MessageStream, handler: SessionHandler,
                 spawner: TaskGroup, *, scope: anyio.CancelScope | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(connection, stream, handler, clock=clock)
        self._spawner = spawner
        #: the caller's scope, entered around a request that may need cancelling
        #: (None: each request gets a scope of its own)
        self._host = scope
        #: a handler that does not say which requests may send early: all may
        self._may_send_early: Callable[[RequestReceived], bool] = getattr(
            handler, "may_send_early", _always)
        self._serving = False
        self._background: set[anyio.CancelScope] = set()

    async def serve_once(self, data: bytes, decoded: Any = None) -> None:
        """Digest ``data`` (already parsed as ``decoded``, if given) and serve it.

        Requests are handled one after another in this task; returns when
        every answer has been sent (or :meth:`close` was called), after
        cancelling whatever the handlers left running.
        """
        self._serving = True
        try:
            events = self.connection.receive(data, self.clock(), decoded=decoded)
            host = self._host
            if host is not None and self._may_need_cancelling(events):
                with host:
                    await self._serve_events(events)
            else:
                await self._serve_events(events)
        finally:
            self._serving = False
            for scope in self._background:
                scope.cancel()
            await self._finish()

    def _may_need_cancelling(self, events: list[Event]) -> bool:
        for event in events:  # a loop: any() would build a generator per request
            if type(event) is RequestReceived and self._may_send_early(event):
                return True
        return False

    async def _serve_events(self, events: list[Event]) -> None:
        for event in events:
            if self._closed:
                break
            if isinstance(event, RequestReceived):
                if self._host is not None:  # guarded by it, if it may need cancelling
                    await self._serve_request(event, None)
                else:  # its cancel scope is the one close() cancels
                    scope = self._scopes[event.id] = self._new_scope()
                    await self._serve_request(event, scope)
            elif isinstance(event, NotificationReceived):
                await self._serve_notification(event)
            else:
                self._dispatch(event)
        await self._flush()

    async def _finish(self) -> None:
        # The stream is the transport's: it completes the response after we return.
        self._shutdown()
        self._done = True
        if self._finished is not None:
            self._finished.set()

    @property
    def _running(self) -> bool:
        return self._serving

    def _spawn(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        if not self._serving:
            raise ConnectionClosedError()
        scope = anyio.CancelScope()
        self._background.add(scope)
        self._spawner.start_soon(self._run_background, scope, func, args)

    async def _run_background(self, scope: anyio.CancelScope,
                              func: Callable[..., Coroutine[Any, Any, Any]],
                              args: tuple[Any, ...]) -> None:
        # The task group is shared with other exchanges: an error here must
        # end this piece of work, not the group.
        try:
            with scope:
                await func(*args)
        except Exception:
            log.exception("background work of a stateless request failed")
        finally:
            self._background.discard(scope)

    def close(self) -> None:
        """Stop serving: what the handlers started beside themselves is cancelled,
        and so is a request that may send before its answer (the others cannot
        be interrupted: they run to the end, and their answer is dropped)."""
        self._closed = True
        if self._host is not None:
            self._host.cancel()
        for scope in self._scopes.values():
            scope.cancel()
        for scope in self._background:
            scope.cancel()
