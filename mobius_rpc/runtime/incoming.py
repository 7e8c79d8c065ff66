"""How a :class:`~.session.Session` serves what the peer sends.

Every event the connection makes of a received message goes through
:meth:`Incoming._dispatch`: a request gets a task of its own under a cancel
scope of its own (so a slow or failing handler never blocks the receive
loop), a notification a task, ``notifications/cancelled`` cancels that
scope, and answers and progress of the requests we sent go to their waiters
or forwards (``outgoing``).  :meth:`Incoming._answer` is the one place where
exceptions from handlers become wire errors.  The receive loop itself and
the session's life stay in ``session``; this is the per-request path, moved
here verbatim as methods of a mixin, so it costs what it did in one class.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from ..core.errors import INTERNAL_ERROR, ConnectionClosedError, McpError, RequestTimeoutError
from ..core.events import (
    CancelRequested,
    ErrorReceived,
    Event,
    MessageRejected,
    NotificationReceived,
    ProgressReceived,
    RequestReceived,
    RequestTimedOut,
    ResponseReceived,
    SessionInitialized,
)
from ..core.types import TransportContext
from ..transports.base import cancel_scope_type
from . import parts
from .outgoing import _forward_done
from .parts import ProgressCallback, SessionParts

__all__ = ("Incoming",)

log = logging.getLogger("mobius_rpc.runtime")
#: bound here, not imported: see runtime.parts.current_request
current_request = parts.current_request


class Incoming(SessionParts):
    """The part of a :class:`~.session.Session` that serves the peer's messages."""

    @property
    def _busy(self) -> bool:
        """Whether a received request is not yet answered: dispatched requests
        hold a scope before their task starts, and count as in flight until
        their answer is flushed; taken ones until answered and flushed."""
        return bool(self._in_flight or self._scopes or self._taken or self._flush_scheduled)

    async def _wait_idle(self) -> None:
        """Wait until no request received by this session is being served."""
        while self._busy:
            self._idle = anyio.Event()
            await self._idle.wait()

    async def _take(self, data: bytes, decoded: Any, inline: bool,
                    transport: TransportContext) -> None:
        """Digest one message in the caller's task: one turn of the receive loop.

        Streams fed by a caller that holds the message anyway (a Streamable
        HTTP POST) attach this, so the message skips the queue and the loop's
        task switch; ``decoded`` is ``data`` already parsed (or a
        :class:`~..core.jsonrpc.Classified`), or None; ``transport`` the
        context of the request that carried it.
        Requests get a task of their own in this session, except that with
        ``inline`` a message holding exactly one request has it served in
        the caller's task (under its own cancel scope, which
        ``notifications/cancelled`` and the end of the session cancel), and
        this returns once it is answered.
        """
        if self._closed:
            return
        events = self.connection.receive(data, self.clock(), decoded=decoded,
                                         transport=transport)
        serve_here: RequestReceived | None = None
        if inline:
            requests = [event for event in events if isinstance(event, RequestReceived)]
            if len(requests) == 1:
                serve_here = requests[0]
        for event in events:
            if event is not serve_here:
                self._dispatch(event)
        if serve_here is not None and self._took(serve_here):
            serve_here = None  # answered from elsewhere: the POST waits for its channel
        if not await self._flush():
            self.close()  # the peer is gone: end the session as the loop would
            return
        if serve_here is not None:
            scope = self._scopes[serve_here.id] = self._new_scope()
            await self._serve_request(serve_here, scope)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            if self._taker is not None and self._took(event):
                return
            self._start_serving(event)
        elif isinstance(event, NotificationReceived):
            self._notifying += 1
            self._spawn(self._serve_notification, event)
        elif isinstance(event, (ResponseReceived, ErrorReceived)):
            waiter = self._waiters.get(event.id)
            if waiter is not None:
                if isinstance(event, ResponseReceived):
                    waiter.result = event.result
                else:
                    waiter.error = event.error
                waiter.done.set()
            elif self._forwards:
                forward = self._forwards.pop(event.id, None)
                if forward is not None:
                    result, error = (event.result, None) if isinstance(
                        event, ResponseReceived) else (None, event.error)
                    own = self._own_tasks
                    if self._notifying and own is not None and own.loop is not None:
                        # Notifications received before the answer (log messages of
                        # the call) are being handled in tasks: let them go first.
                        own.loop.call_soon(_forward_done, forward, result, error)
                    else:
                        _forward_done(forward, result, error)
        elif isinstance(event, CancelRequested):
            running = self._scopes.get(event.id)
            if running is not None:
                running.cancel()
            elif event.id in self._taken:
                self._cancel_taken(event.id, None)
        elif isinstance(event, ProgressReceived):
            waiter = self._waiters.get(event.id)
            if waiter is not None and waiter.on_progress is not None:
                self._spawn(self._call_progress, waiter.on_progress, event)
            elif waiter is None and event.id in self._forwards:
                on_progress = self._forwards[event.id].on_progress
                if on_progress is not None:
                    try:
                        on_progress(event.progress, event.total, event.message)
                    except Exception:
                        log.exception("progress callback failed")
        elif isinstance(event, SessionInitialized):
            self.handler.session_initialized(self, event)
        elif isinstance(event, MessageRejected):
            log.info("rejected a message from the peer: %s", event.error.message)
        elif isinstance(event, RequestTimedOut):
            waiter = self._waiters.get(event.id)
            if waiter is not None:
                waiter.error = RequestTimeoutError(event.method, waiter.timeout)
                waiter.done.set()
            elif event.id in self._forwards:
                forward = self._forwards.pop(event.id)
                _forward_done(forward, None, RequestTimeoutError(event.method, forward.timeout))

    def _start_serving(self, event: RequestReceived) -> None:
        """Serve ``event`` in a task of its own, under a cancel scope of its own."""
        scope = self._new_scope()
        self._scopes[event.id] = scope
        own = self._own_tasks
        if own is not None and own.loop is not None:
            own.start_request(self._serve_request(event, scope))
        else:
            self._spawn(self._serve_request, event, scope)

    def _new_scope(self) -> anyio.CancelScope:
        """A cancel scope for one request (see :func:`cancel_scope_type`)."""
        if self._scope_type is None:
            self._scope_type = cancel_scope_type()
        return self._scope_type()

    async def _serve_request(self, event: RequestReceived,
                             scope: anyio.CancelScope | None) -> None:
        # ``scope`` cancels this request alone (notifications/cancelled); None in
        # a stateless exchange, which enters the caller's scope around a request
        # that may need cancelling (see ExchangeSession).
        current_request.set(event.id)  # this task's context only
        answered = False
        self._in_flight += 1
        try:
            if scope is None:
                answered = await self._answer(event)
            else:
                with scope:
                    answered = await self._answer(event)
                if scope.cancelled_caught:
                    # Cancelled by the peer (the connection drops the reply), or
                    # by the end of input's grace period (the peer gets the error).
                    answered = self.connection.respond_error(
                        event.id, McpError(INTERNAL_ERROR, self._stopping or "cancelled"))
        finally:
            self._scopes.pop(event.id, None)
        try:
            await self._flush()
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._idle is not None:
                self._idle.set()
        if not answered:
            # The peer cancelled it (even if the handler finished first, its answer
            # is dropped), or the session closed: a stream that waits for each
            # answer (an HTTP POST) must not wait for this one.
            if self._reporting is not None:
                self._reporting.unanswered(event.id)

    async def _answer(self, event: RequestReceived) -> bool:
        """Whether an answer was queued (see :meth:`Connection.respond`)."""
        # The one boundary where handler exceptions become wire errors.
        connection = self.connection
        try:
            result = await self.handler.handle_request(self, event)
        except McpError as exc:
            return connection.respond_error(event.id, exc)
        except Exception:
            log.exception("handler for %s failed", event.method)
            return connection.respond_error(event.id, McpError(
                INTERNAL_ERROR, f"Internal error while handling {event.method}"))
        try:
            return connection.respond(event.id, result)
        except ConnectionClosedError:
            return False
        except Exception:
            # A bug of ours in shaping the answer must cost this request, never
            # the session (whose task group would end with it).
            log.exception("could not answer %s", event.method)
            try:
                return connection.respond_error(event.id, McpError(
                    INTERNAL_ERROR, f"Internal error while answering {event.method}"))
            except Exception:
                return False

    async def _serve_notification(self, event: NotificationReceived) -> None:
        try:
            await self.handler.handle_notification(self, event)
        except Exception:
            log.exception("notification handler for %s failed", event.method)
        finally:
            self._notifying -= 1
        await self._flush()

    async def _call_progress(self, callback: ProgressCallback, event: ProgressReceived) -> None:
        try:
            outcome = callback(event.progress, event.total, event.message)
            if outcome is not None:
                await outcome
        except Exception:
            log.exception("progress callback failed")

    def _maybe_idle(self) -> None:
        if self._idle is not None and not self._busy:
            self._idle.set()
