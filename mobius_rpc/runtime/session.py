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
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus

from ..core.connection import Connection
from ..core.errors import (
    INTERNAL_ERROR,
    ConnectionClosedError,
    McpError,
    RequestTimeoutError,
)
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
from ..core.jsonrpc import dumps
from ..core.types import RequestId, TransportContext
from ..transports.base import (
    MessageStream,
    OversizedMessage,
    ReceiverAttaching,
    ResponseDetaching,
    RoutedMessageStream,
    UnansweredReporting,
    cancel_scope_type,
    capabilities_of,
)
from .sendlock import SendLock

__all__ = ("Session", "SessionHandler", "ProgressCallback", "TaskRunner", "OwnTasks")

log = logging.getLogger("mobius_rpc.runtime")

#: how long requests cancelled at the end of the grace period get to send their error
_CANCEL_ANSWER_TIMEOUT = 2.0
#: bytes the receive loop lets wait for a stuck flush before it stops reading (a
#: peer that sends and never reads must not grow our memory without bound)
RECEIVE_BACKLOG = 8 * 1024 * 1024

ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None] | None]

#: The incoming request whose handler is running in this task (None elsewhere):
#: what the handler sends belongs to that request, which routed transports use.
current_request: ContextVar[RequestId | None] = ContextVar("current_request", default=None)


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


class TaskRunner(Protocol):
    """Where a session runs work beside its handlers (a request's task, a
    notification's, ``start_soon``), and how that work is stopped.

    A long-lived session owns a task group (:class:`OwnTasks`); a stateless
    exchange borrows the transport's (``runtime.exchange.LentTasks``).
    """

    @property
    def running(self) -> bool:
        """Whether :meth:`start_soon` can start work now."""
        ...

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Start ``func``; raises :class:`ConnectionClosedError` when not running."""
        ...

    def cancel(self) -> None:
        """Stop everything started here (and, for a session's own group, its loop)."""
        ...


class OwnTasks:
    """The task group of a session's :meth:`Session.run`: work ends with the session.

    On asyncio the requests' tasks are plain loop tasks the session keeps
    itself (:meth:`start_request`): a task group's ``start_soon`` costs about
    a tenth of a forwarded call's CPU.  Each such task serves its request
    under the request's own cancel scope, which is how it is cancelled (by
    ``notifications/cancelled``, by :meth:`Session.close` and at the end of
    :meth:`Session.run`, which waits for them), so handlers keep anyio's
    semantics, shields included.
    """

    __slots__ = ("group", "loop", "requests")

    def __init__(self) -> None:
        self.group: TaskGroup | None = None
        #: the asyncio loop :meth:`Session.run` runs in (None on another backend)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.requests: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return self.group is not None

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        if self.group is None:
            raise ConnectionClosedError()
        self.group.start_soon(func, *args)

    def cancel(self) -> None:
        if self.group is not None:
            self.group.cancel_scope.cancel()

    def start_request(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run one request's ``coro`` in a loop task of its own (``loop`` is set)."""
        if self.group is None or self.loop is None:
            coro.close()
            raise ConnectionClosedError()
        task = self.loop.create_task(coro)
        self.requests.add(task)
        task.add_done_callback(self._request_done)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self.requests.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # a task group would end the session on such a failure: so do we
            log.error("a request's task failed", exc_info=task.exception())
            self.cancel()


@dataclass(slots=True)
class _Waiter:
    method: str
    timeout: float
    done: anyio.Event
    result: dict[str, Any] | None = None
    error: McpError | None = None
    on_progress: ProgressCallback | None = None
    #: set by the timer of :meth:`Session.wait_for` when the timeout ran out first
    timed_out: bool = False


#: ``done(result, error)`` of a forwarded request: exactly one of them is None
ForwardDone = Callable[[dict[str, Any] | None, McpError | None], None]
#: progress of a forwarded request, called synchronously from the receive loop
ForwardProgress = Callable[[float, float | None, str | None], None]
#: a request taken over synchronously (``take_request``): called when it is
#: cancelled (by the peer, or because the session ends) before it is answered
TakenCancel = Callable[[], None]


@dataclass(slots=True)
class _Forward:
    """A request we sent whose answer goes to a callback instead of a waiting task
    (see :meth:`Session.forward`)."""

    method: str
    timeout: float
    done: ForwardDone
    on_progress: ForwardProgress | None
    timer: asyncio.TimerHandle | None = None


def _time_out(waiter: _Waiter) -> None:
    """The timer of one request we sent: wake its waiter unless it was answered."""
    if not waiter.done.is_set():
        waiter.timed_out = True
        waiter.done.set()


def _forward_done(forward: _Forward, result: dict[str, Any] | None,
                  error: McpError | None) -> None:
    if forward.timer is not None:
        forward.timer.cancel()
        forward.timer = None
    try:
        forward.done(result, error)
    except Exception:  # a bug of the forwarder must not end the receive loop
        log.exception("the answer of a forwarded %s could not be delivered", forward.method)


class Session:
    """One live connection: a :class:`Connection`, a stream, and a handler."""

    def __init__(self, connection: Connection, stream: MessageStream, handler: SessionHandler,
                 *, clock: Callable[[], float] = time.monotonic,
                 tasks: TaskRunner | None = None, owns_stream: bool = True) -> None:
        """``tasks`` runs the work beside the handlers (default: a task group of
        :meth:`run`'s own); ``owns_stream`` False leaves the stream open at the
        end, for a transport that completes its response itself."""
        self.connection = connection
        self.stream = stream
        self.handler = handler
        self.clock = clock
        #: plain per-session data the layers above keep (log level, subscriptions ...)
        self.state: dict[str, Any] = {}
        own = OwnTasks() if tasks is None else None
        self._own_tasks = own
        self._tasks: TaskRunner = tasks if tasks is not None else own  # type: ignore[assignment]
        self._owns_stream = owns_stream
        self._scopes: dict[RequestId, anyio.CancelScope] = {}
        self._waiters: dict[RequestId, _Waiter] = {}
        #: requests we sent with :meth:`forward`: their answers go to callbacks
        self._forwards: dict[RequestId, _Forward] = {}
        #: received requests the handler took over (``take_request``), with what
        #: cancels each; answered with :meth:`answer_taken`
        self._taken: dict[RequestId, TakenCancel] = {}
        self._taken_events: dict[RequestId, RequestReceived] = {}
        # (offered by long-lived sessions only: a stateless exchange awaits its answer)
        self._taker: Callable[[Session, RequestReceived], TakenCancel | None] | None = \
            getattr(handler, "take_request", None) if tasks is None else None
        #: a flush task is scheduled (see :meth:`flush_now`)
        self._flush_scheduled = False
        #: notifications received whose handling has not ended
        self._notifying = 0
        # Uncontended (the usual case) it is taken without a trip through the loop.
        self._send_lock = SendLock()
        self._closed = False
        #: created only if someone waits for the end (most sessions end unwatched)
        self._finished: anyio.Event | None = None
        self._done = False
        caps = capabilities_of(stream)
        # The stream's optional parts, typed, or None where it states it lacks them
        # (annotations, not typing.cast: a stateless request builds a session each).
        s: Any = stream
        self._routed: RoutedMessageStream | None = s if caps.routed else None
        self._attaching: ReceiverAttaching | None = s if caps.attaches_receiver else None
        self._reporting: UnansweredReporting | None = s if caps.reports_unanswered else None
        self._detaching: ResponseDetaching | None = s if caps.detaches_responses else None
        # Writing without waiting, from synchronous code (see flush_now), where the
        # stream can: ``send_routed_nowait`` on routed streams, else ``send_nowait``.
        self._send_nowait: Callable[[bytes], bool] | None = \
            None if caps.routed else getattr(stream, "send_nowait", None)
        self._send_routed_nowait: Callable[[bytes, RequestId | None, tuple[RequestId, ...]],
                                           bool] | None = \
            getattr(stream, "send_routed_nowait", None) if caps.routed else None
        #: learnt on the first request, in the loop the session runs in
        self._scope_type: type[anyio.CancelScope] | None = None
        #: the backend's Event class, learnt on the first request we send (as the scope's)
        self._event_type: type[anyio.Event] | None = None
        #: requests received and not yet answered (and their answers flushed)
        self._in_flight = 0
        self._idle: anyio.Event | None = None
        #: the peer's input ended: requests we would send could get no answer
        self._input_ended = False
        #: set when the end of input's grace period ran out: the cancelled
        #: requests' error message
        self._stopping: str | None = None
        #: whether our output still reaches the peer after its input ended
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

    def _took(self, event: RequestReceived) -> bool:
        """Whether the handler took ``event`` over synchronously (``take_request``)."""
        taker = self._taker
        if taker is None:
            return False
        cancel = taker(self, event)
        if cancel is None:
            return False
        self._taken[event.id] = cancel
        self._taken_events[event.id] = event
        return True

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

    async def _flush(self) -> bool:
        """Send everything the connection queued; False when the peer is gone."""
        if self._closed:
            return False
        if not self.connection.has_data_to_send():
            return True
        async with self._send_lock:
            routed = self._routed
            try:
                if routed is not None:
                    for data, related, answers in self.connection.routed_data_to_send():
                        await routed.send_routed(data, related, answers)
                else:
                    for data in self.connection.data_to_send():
                        await self.stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                self._closed = True
                return False
        return True

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

    def _fail_waiters(self, error: ConnectionClosedError) -> None:
        for waiter in self._waiters.values():
            if not waiter.done.is_set():
                waiter.error = error
                waiter.done.set()
        forwards, self._forwards = self._forwards, {}
        for forward in forwards.values():
            _forward_done(forward, None, error)

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

    # ------------------------------------------------------------ our requests

    async def request(self, method: str, params: dict[str, Any] | None = None, *,
                      timeout: float | None = None,
                      on_progress: ProgressCallback | None = None,
                      on_id: Callable[[RequestId], None] | None = None) -> dict[str, Any]:
        """Send a request to the peer and wait for its result.

        ``on_id`` is told the request's id once it is queued (a caller that
        must recognise what the peer sends about it).

        :raises McpError: the peer answered with an error (or an invalid result).
        :raises RequestTimeoutError: no answer in time; the peer got
            ``notifications/cancelled``.
        :raises ConnectionClosedError: the session ended first.
        :raises LocalProtocolError: the method is not allowed here (capability).
        Cancelling the caller sends ``notifications/cancelled`` too.
        """
        if self._closed or self._input_ended:
            raise ConnectionClosedError()
        connection = self.connection
        if timeout is None:
            timeout = connection.limits.request_timeout
        now = self.clock()
        request_id = connection.request(method, params, now=now, timeout=timeout,
                                        progress=on_progress is not None,
                                        related=current_request.get())
        if on_id is not None:
            on_id(request_id)
        return await self.wait_for(request_id, method, timeout, on_progress)

    async def wait_for(self, request_id: RequestId, method: str, timeout: float,
                       on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Wait for the answer to a request already queued on the connection."""
        if self._input_ended:  # nothing the peer sends can reach us any more
            raise ConnectionClosedError("the peer closed its side of the stream")
        connection = self.connection
        event_type = self._event_type
        if event_type is None:
            # ``anyio.Event()`` asks which library runs (like a cancel scope) each time
            event_type = self._event_type = type(anyio.Event())
        waiter = _Waiter(method, timeout, event_type(), on_progress=on_progress)
        self._waiters[request_id] = waiter
        # The timeout: on asyncio a timer of the loop's that wakes the waiter (no
        # cancel scope to enter and leave per request, which costs as much as
        # validating the message); elsewhere a scope with that deadline.
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        timer: asyncio.TimerHandle | None = None
        try:
            await self._flush()
            if loop is not None:
                if timeout < math.inf:
                    timer = loop.call_later(max(timeout, 0.0), _time_out, waiter)
                await waiter.done.wait()
            else:
                with anyio.move_on_after(timeout):
                    await waiter.done.wait()
                if not waiter.done.is_set():
                    waiter.timed_out = True
            if waiter.timed_out:
                for event in connection.expire(self.clock() + 1e-9):
                    self._dispatch(event)
                if waiter.result is None and waiter.error is None:
                    connection.cancel(request_id, "request timed out")
                    waiter.error = RequestTimeoutError(method, timeout)
                with anyio.CancelScope(shield=True):
                    await self._flush()
        except anyio.get_cancelled_exc_class():
            connection.cancel(request_id, "cancelled by the caller")
            with anyio.CancelScope(shield=True):
                await self._flush()
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._waiters.pop(request_id, None)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return waiter.result

    # ------------------------------------------- relaying without tasks (a gateway)

    def forward(self, method: str, params: dict[str, Any] | None, *, timeout: float,
                done: ForwardDone, on_progress: ForwardProgress | None = None
                ) -> RequestId:
        """Send a request whose answer goes to ``done(result, error)``, called from
        the receive loop: no task waits for it.

        For relaying a call at the cost of its messages alone (the gateway's
        lane, which answers a request it took over with :meth:`answer_taken`
        from ``done``).  The timeout is a loop timer: when it runs out the peer
        gets ``notifications/cancelled`` and ``done`` a
        :class:`RequestTimeoutError`; the end of the session gives
        :class:`ConnectionClosedError`.  Asyncio only (RuntimeError elsewhere).

        :raises ConnectionClosedError: the session is not running.
        :raises LocalProtocolError: the request is not allowed (or not valid) here.
        """
        own = self._own_tasks
        loop = own.loop if own is not None else None
        if loop is None:
            raise RuntimeError("forwarding needs a session run on asyncio")
        if self._closed or self._input_ended or not self._tasks.running:
            raise ConnectionClosedError()
        request_id = self.connection.request(method, params, now=self.clock(),
                                             timeout=timeout, progress=on_progress is not None)
        forward = _Forward(method, timeout, done, on_progress)
        self._forwards[request_id] = forward
        if timeout < math.inf:
            forward.timer = loop.call_later(max(timeout, 0.0), self._forward_timed_out,
                                            request_id)
        self.flush_now()
        return request_id

    def cancel_forward(self, request_id: RequestId, reason: str) -> None:
        """Give up on a forwarded request: the peer gets ``notifications/cancelled``
        and its ``done`` is not called."""
        forward = self._forwards.pop(request_id, None)
        if forward is None:
            return
        if forward.timer is not None:
            forward.timer.cancel()
        self.connection.cancel(request_id, reason)
        self.flush_now()

    def _forward_timed_out(self, request_id: RequestId) -> None:
        forward = self._forwards.pop(request_id, None)
        if forward is None:
            return
        forward.timer = None
        self.connection.cancel(request_id, "request timed out")
        self.flush_now()
        _forward_done(forward, None, RequestTimeoutError(forward.method, forward.timeout))

    def answer_taken(self, event: RequestReceived, result: dict[str, Any] | None = None,
                     error: McpError | None = None) -> None:
        """Answer a request the handler took over (``take_request``), and send it.

        Ignored when it was cancelled meanwhile (its cancel callback was called), or
        when its id now names another request (the peer may reuse an answered id)."""
        request_id = event.id
        if self._taken_events.get(request_id) is not event:
            return
        del self._taken_events[request_id]
        self._taken.pop(request_id, None)
        method = event.method
        connection = self.connection
        try:
            if error is not None or result is None:
                answered = connection.respond_error(
                    request_id, error or McpError(INTERNAL_ERROR, "no result"))
            else:
                answered = connection.respond(request_id, result)
        except ConnectionClosedError:
            answered = False
        except Exception:
            # as in _answer: a bad answer costs this request, never the session
            log.exception("could not answer request %r", request_id)
            try:
                answered = connection.respond_error(request_id, McpError(
                    INTERNAL_ERROR, f"Internal error while answering {method}"))
            except Exception:
                answered = False
        self._sent_taken(request_id, answered)

    def serve_taken(self, event: RequestReceived) -> bool:
        """Serve a request the handler took over after all, the usual way: in a
        task of its own, through ``handle_request`` (a forwarded call that turned
        out to need what only that path does); False when it is no longer ours
        to serve (cancelled, the session ended)."""
        if self._taken_events.get(event.id) is not event:
            return False
        del self._taken_events[event.id]
        self._taken.pop(event.id, None)
        try:
            self._start_serving(event)
        except ConnectionClosedError:
            self._scopes.pop(event.id, None)
            return False
        return True

    def _cancel_taken(self, request_id: RequestId, error: McpError | None) -> None:
        """A taken request is cancelled: by the peer (``error`` None: no answer), or
        at the end of input's grace period (the peer gets ``error``)."""
        cancel = self._taken.pop(request_id, None)
        if cancel is None:
            return
        self._taken_events.pop(request_id, None)
        try:
            cancel()
        except Exception:
            log.exception("cancelling a taken request failed")
        try:
            # the connection forgets the request (and drops the reply if cancelled)
            answered = self.connection.respond_error(
                request_id, error or McpError(INTERNAL_ERROR, "cancelled"))
        except Exception:
            answered = False
        self._sent_taken(request_id, answered)

    def _sent_taken(self, request_id: RequestId, answered: bool) -> None:
        """A taken request is done with: its answer (if any) goes out, and a stream
        that waits for each answer stops waiting for one that will not come."""
        if not answered and self._reporting is not None:
            self._reporting.unanswered(request_id)
        self.flush_now()
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if self._idle is not None and not self._busy:
            self._idle.set()

    def flush_now(self) -> None:
        """Send what the connection queued, from synchronous code: at once where the
        stream can write without waiting and no flush is under way (which keeps
        the order of messages), else in a task started for it."""
        if self._closed or not self.connection.has_data_to_send():
            return
        if self._send_lock.locked or self._flush_scheduled:
            self._schedule_flush()
            return
        nowait, routed = self._send_nowait, self._send_routed_nowait
        if nowait is None and routed is None:
            self._schedule_flush()
            return
        items = self.connection.routed_data_to_send()
        for index, item in enumerate(items):
            try:
                sent = routed(*item) if routed is not None else nowait(item[0])  # type: ignore[misc]
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError,
                    RuntimeError):
                self._closed = True  # the peer is gone: end the session as _flush would
                self.close()
                return
            if not sent:
                self.connection.requeue(items[index:])
                self._schedule_flush()
                return

    def _schedule_flush(self) -> None:
        if self._flush_scheduled or self._closed or not self._tasks.running:
            return
        self._flush_scheduled = True
        self._spawn(self._scheduled_flush)

    async def _scheduled_flush(self) -> None:
        try:
            # what was queued while a send awaited (flush_now found the flag set) goes too
            while True:
                if not await self._flush():
                    self.close()  # the peer is gone: end the session as the loop would
                    break
                if not self.connection.has_data_to_send():
                    break
        finally:
            self._flush_scheduled = False
            self._maybe_idle()

    async def notify(self, method: str, params: dict[str, Any] | None = None, *,
                     unrelated: bool = False) -> None:
        """Send a notification (validated and capability-checked by the connection).

        It belongs to the request whose handler sends it, unless ``unrelated``
        (pushes such as resource updates, which may be caused by another session).
        """
        if self._closed:
            raise ConnectionClosedError()
        related = None if unrelated else current_request.get()
        self.connection.notify(method, params, related=related)
        await self._flush()

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``func`` in this session's task group: it ends with the session.

        For work that outlives the request that started it (a task-augmented
        tool call).  Raises :class:`ConnectionClosedError` when the session is
        not running.
        """
        if not self._tasks.running or self._closed:
            raise ConnectionClosedError()
        self._spawn(func, *args)

    def notify_soon(self, method: str, params: dict[str, Any] | None = None, *,
                    related: RequestId | None = None) -> None:
        """Queue a notification from synchronous code; a task sends it shortly."""
        if self._closed or not self._tasks.running:
            return
        try:
            self.connection.notify(method, params, related=related)
        except McpError as exc:
            log.warning("not sending %s: %s", method, exc.message)
            return
        self._spawn(self._flush)

    async def send_raw(self, message: dict[str, Any]) -> None:
        """Send an already-built message bypassing the core (tests of broken peers only)."""
        async with self._send_lock:
            await self.stream.send(dumps(message))
