"""The runtime: drives a sans-I/O :class:`Connection` over a :class:`MessageStream`.

:class:`Session` owns the I/O side of one connection: the receive loop, one
task per incoming request (so a slow or failing handler never blocks the
loop), cancel scopes for ``notifications/cancelled``, waiters for the requests
we send (with their timeouts and progress callbacks), and the single place
where exceptions from handlers become wire errors.

Per request the hot path holds one cancel scope (the incoming request's) and
one task: on asyncio a plain loop task (see :class:`OwnTasks`), and the
timeout of a request we send is a loop timer, not a scope of its own.

Whoever runs a session supplies the task group::

    async with anyio.create_task_group() as tg:
        await tg.start(session.run)

``run`` returns when the peer closes the stream or the session is closed;
outstanding requests then fail with :class:`ConnectionClosedError`.

This module holds the session's life (set-up, the receive loop, the end of
input, shutdown) and its public face; the rest of the class is mixed in from
the modules of its parts (see ``runtime.parts``): ``incoming`` (serving what
the peer sends), ``taken`` (requests the handler takes over), ``outgoing``
(the requests we send) and ``sending`` (writing to the stream).  The names
other layers import from here stay importable from here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from ..core.connection import Connection
from ..core.errors import INTERNAL_ERROR, ConnectionClosedError, McpError
from ..core.events import (
    ErrorReceived,
    Event,
    NotificationReceived,
    RequestReceived,
    SessionInitialized,
)
from ..core.types import RequestId
from ..transports.base import MessageStream, OversizedMessage, capabilities_of
from .incoming import Incoming
from .outgoing import Outgoing
from .parts import ForwardDone as ForwardDone
from .parts import ForwardProgress as ForwardProgress
from .parts import ProgressCallback
from .parts import TakenCancel as TakenCancel
from .parts import current_request as current_request
from .runners import OwnTasks, TaskRunner
from .sending import Sending
from .sendlock import SendLock
from .taken import Taken

__all__ = ("Session", "SessionHandler", "ProgressCallback", "TaskRunner", "OwnTasks")

log = logging.getLogger("mobius_rpc.runtime")

#: how long requests cancelled at the end of the grace period get to send their error
_CANCEL_ANSWER_TIMEOUT = 2.0
#: bytes the receive loop lets wait for a stuck flush before it stops reading (a
#: peer that sends and never reads must not grow our memory without bound)
RECEIVE_BACKLOG = 8 * 1024 * 1024


class SessionHandler(Protocol):
    """What the server (or client) layer implements to serve a session."""

    async def handle_request(self, session: Session, request: RequestReceived) -> dict[str, Any]:
        """Return the result, or raise :class:`McpError` for an error reply."""
        ...

    async def handle_notification(self, session: Session,
                                  notification: NotificationReceived) -> None: ...

    def session_initialized(self, session: Session, event: SessionInitialized) -> None: ...

    def session_closed(self, session: Session) -> None: ...

    def may_send_early(self, request: RequestReceived) -> bool:
        """Whether handling ``request`` may send anything before its answer
        (progress, log messages, requests to the peer) or wait on the peer.

        True is always safe.  A stateless exchange makes only such requests
        cancellable (a cancel scope costs about as much as validating the
        message): the others are answered without a chance to be cancelled,
        as nothing can ask for it before their answer.
        """
        ...


class Session(Incoming, Taken, Outgoing, Sending):
    """One live connection: a :class:`Connection`, a stream, and a handler."""

    handler: SessionHandler

    def __init__(self, connection: Connection, stream: MessageStream, handler: SessionHandler,
                 *, clock: Callable[[], float] = time.monotonic,
                 tasks: TaskRunner | None = None, owns_stream: bool = True) -> None:
        """``tasks`` runs the work beside the handlers (default: a task group of
        :meth:`run`'s own); ``owns_stream`` False leaves the stream open at the
        end, for a transport that completes its response itself."""
        # (each attribute is declared, and described, in runtime.parts.SessionParts)
        self.connection = connection
        self.stream = stream
        self.handler = handler
        self.clock = clock
        self.state = {}
        own = OwnTasks() if tasks is None else None
        self._own_tasks = own
        self._tasks = tasks if tasks is not None else own  # type: ignore[assignment]
        self._owns_stream = owns_stream
        self._scopes = {}
        self._waiters = {}
        self._forwards = {}
        self._taken = {}
        self._taken_events = {}
        self._taker = getattr(handler, "take_request", None) if tasks is None else None
        self._flush_scheduled = False
        self._notifying = 0
        self._send_lock = SendLock()
        self._closed = False
        self._finished = None
        self._done = False
        caps = capabilities_of(stream)
        # The stream's optional parts, typed, or None where it states it lacks them
        # (declared types, not typing.cast: a stateless request builds a session each).
        s: Any = stream
        self._routed = s if caps.routed else None
        self._attaching = s if caps.attaches_receiver else None
        self._reporting = s if caps.reports_unanswered else None
        self._detaching = s if caps.detaches_responses else None
        self._send_nowait = None if caps.routed else getattr(stream, "send_nowait", None)
        self._send_routed_nowait = \
            getattr(stream, "send_routed_nowait", None) if caps.routed else None
        self._scope_type = None
        self._event_type = None
        self._in_flight = 0
        self._idle = None
        self._input_ended = False
        self._stopping = None
        self._answers_after_end = caps.answers_after_end_of_input

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until the stream ends or :meth:`close` is called."""
        own = self._own_tasks
        if own is None:
            raise RuntimeError("this session runs in tasks lent to it; it has no loop to run")
        try:
            own.loop = asyncio.get_running_loop()
        except RuntimeError:
            own.loop = None
        try:
            async with anyio.create_task_group() as tg:
                own.group = tg
                if self._attaching is not None:
                    self._attaching.attach_receiver(self._take)
                task_status.started()
                if await self._receive_loop() and self._busy:
                    await self._drain_in_flight()
                tg.cancel_scope.cancel()
        finally:
            own.group = None
            if own.requests:
                await self._stop_requests(own)
            await self._finish()

    async def _stop_requests(self, own: OwnTasks) -> None:
        """End the requests' own tasks as the task group ends its tasks: cancelled,
        nothing more sent (the group has stopped everything else), waited for."""
        self._closed = True
        for scope in list(self._scopes.values()):
            scope.cancel()
        with anyio.CancelScope(shield=True):
            _, stuck = await asyncio.wait(list(own.requests), timeout=_CANCEL_ANSWER_TIMEOUT)
            for task in stuck:  # past its scope, e.g. a send that never drains
                task.cancel()
            while own.requests:
                await asyncio.wait(list(own.requests))

    async def _finish(self) -> None:
        """Fail what is still waiting, close the stream (if ours), and say we are done."""
        self._shutdown()
        if self._owns_stream:
            with anyio.CancelScope(shield=True):
                try:
                    await self.stream.aclose()
                except Exception:  # the peer may already be gone
                    pass
        self._done = True
        if self._finished is not None:
            self._finished.set()

    def _spawn(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Start ``func`` in a task that ends with the session."""
        self._tasks.start_soon(func, *args)

    async def _receive_loop(self) -> bool:
        """Digest messages until the input ends; True when it ended cleanly
        on a stream whose sending side still works (see :meth:`_drain_in_flight`)."""
        connection = self.connection
        stream = self.stream
        while True:
            try:
                data = await stream.receive()
            except anyio.EndOfStream:
                return self._answers_after_end and not self._closed
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return False
            except OversizedMessage as exc:
                events: list[Event] = connection.refuse_oversized(exc.limit)
            else:
                # The context of the message just received (None from a stream that
                # keeps none: handlers then see an in-process context).
                events = connection.receive(data, self.clock(), transport=getattr(
                    stream, "transport_context", None))
            for event in events:
                self._dispatch(event)
            if connection.has_data_to_send():
                # Never wait on a send here: a peer blocked writing to us (its pipe
                # full because we stopped reading) would never drain ours.  What
                # cannot be written at once goes from a flush task ...
                self.flush_now()
                if self._flush_scheduled and connection.queued_bytes() > RECEIVE_BACKLOG:
                    # ... unless that much waits: a peer that sends and does not
                    # read is not read from until our output moves again.
                    await self._flush()
            if self._closed:
                return False

    async def _drain_in_flight(self) -> None:
        """The peer's input ended but our output still reaches it (stdin closed
        after the last request): answer what was received before that.

        Nothing the peer could still send can arrive, so requests we are
        waiting on fail at once (a handler waiting for sampling ends instead of
        timing out).  Requests being served get ``end_of_input_grace`` seconds
        to finish; those still running are cancelled and answered with an
        error, so that no request the peer sent goes unanswered in silence.
        """
        self._input_ended = True
        self._fail_waiters(ConnectionClosedError("the peer closed its side of the stream"))
        grace = self.connection.limits.end_of_input_grace
        with anyio.move_on_after(grace):
            await self._wait_idle()
        if not self._busy:
            return
        log.warning("end of input: %d request(s) still running after %.1f s; cancelling them",
                    len(self._scopes) + len(self._taken), grace)
        self._stopping = (f"Request cancelled: the peer closed its input and the request did "
                          f"not finish within the grace period of {grace:g} s")
        for scope in list(self._scopes.values()):
            scope.cancel()
        for request_id in list(self._taken):
            self._cancel_taken(request_id, McpError(INTERNAL_ERROR, self._stopping))
        with anyio.move_on_after(_CANCEL_ANSWER_TIMEOUT):  # answering an error is quick
            await self._wait_idle()

    def _shutdown(self) -> None:
        self._closed = True
        for event in self.connection.close():
            waiter = self._waiters.get(event.id) if isinstance(event, ErrorReceived) else None
            if waiter is not None and isinstance(event, ErrorReceived):
                waiter.error = event.error
                waiter.done.set()
        self._fail_waiters(ConnectionClosedError())
        for scope in self._scopes.values():
            scope.cancel()  # requests served in their callers' tasks end with the session
        for cancel in list(self._taken.values()):
            try:
                cancel()  # e.g. a forwarded call: cancelled where it runs
            except Exception:
                log.exception("cancelling a taken request failed")
        self._taken.clear()
        self._taken_events.clear()
        self.handler.session_closed(self)

    def close(self) -> None:
        """Stop serving: the receive loop and every request handler are cancelled
        (in a stateless exchange, what its lent tasks can cancel: see
        ``runtime.exchange.LentTasks``)."""
        if self._own_tasks is None:
            self._closed = True
        self._tasks.cancel()
        for scope in self._scopes.values():
            scope.cancel()

    def detach_response(self, request_id: RequestId) -> bool:
        """End the response that carries ``request_id`` now, before its answer,
        where the transport can resume it later (2025-11-25 Streamable HTTP
        polling); False where it cannot."""
        return self._detaching is not None and self._detaching.detach_response(request_id)

    async def wait_finished(self) -> None:
        """Wait until :meth:`run` has returned and the stream is closed."""
        if self._done:
            await anyio.lowlevel.checkpoint()
            return
        if self._finished is None:
            self._finished = anyio.Event()
        await self._finished.wait()

    @property
    def closed(self) -> bool:
        return self._closed

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``func`` in this session's task group: it ends with the session.

        For work that outlives the request that started it (a task-augmented
        tool call).  Raises :class:`ConnectionClosedError` when the session is
        not running.
        """
        if not self._tasks.running or self._closed:
            raise ConnectionClosedError()
        self._spawn(func, *args)
