"""What every part of a :class:`~.session.Session` shares: its state, declared once.

A session is one object, but its code falls into parts that read best apart:
the serving of what the peer sends (``incoming``), requests the handler took
over (``taken``), the requests we send (``outgoing``), the sending of what
the connection queued (``sending``), and the session's life and public face
(``session``).  Each part is a mixin of :class:`Session`, so a call from one
part to another is a plain method call on ``self``, exactly as when the
session was a single class: the per-request path gains no call and no
indirection from the split.

:class:`SessionParts` is the base they all inherit: it declares (for the
type checker; it adds nothing at run time) the attributes
``Session.__init__`` sets, and the methods one part calls in another.  It
also holds the records of the requests we send (:class:`_Waiter`,
:class:`_Forward`), which are part of that state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ..core.connection import Connection
from ..core.errors import McpError
from ..core.events import Event, NotificationReceived, RequestReceived, SessionInitialized
from ..core.types import RequestId
from ..transports.base import (
    MessageStream,
    ReceiverAttaching,
    ResponseDetaching,
    RoutedMessageStream,
    UnansweredReporting,
)
from .runners import OwnTasks, TaskRunner
from .sendlock import SendLock

__all__ = ("SessionParts", "ProgressCallback", "TakenCancel", "ForwardDone", "ForwardProgress",
           "current_request")

ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None] | None]
#: a request taken over synchronously (``take_request``): called when it is
#: cancelled (by the peer, or because the session ends) before it is answered
TakenCancel = Callable[[], None]

#: The incoming request whose handler is running in this task (None elsewhere):
#: what the handler sends belongs to that request, which routed transports use.
#: The parts that use it bind it with an assignment (``current_request =
#: parts.current_request``) rather than an import: CPython 3.11 compiles
#: ``name.get()`` on an imported name as an attribute load and a call, which
#: makes a bound method each time, where a plain global gets a method call.
current_request: ContextVar[RequestId | None] = ContextVar("current_request", default=None)


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


@dataclass(slots=True)
class _Forward:
    """A request we sent whose answer goes to a callback instead of a waiting task
    (see :meth:`Session.forward`)."""

    method: str
    timeout: float
    done: ForwardDone
    on_progress: ForwardProgress | None
    timer: asyncio.TimerHandle | None = None


class _Handler(Protocol):
    """What the parts call of the session's handler: ``session.SessionHandler``,
    but with the session typed ``Any``, as the parts cannot name ``Session``
    (it is made of them; the layering test allows no import cycle, not even
    one for typing).  At run time the session passed is always ``self``."""

    async def handle_request(self, session: Any,
                             request: RequestReceived) -> dict[str, Any]: ...

    async def handle_notification(self, session: Any,
                                  notification: NotificationReceived) -> None: ...

    def session_initialized(self, session: Any, event: SessionInitialized) -> None: ...

    def session_closed(self, session: Any) -> None: ...

    def may_send_early(self, request: RequestReceived) -> bool: ...


class SessionParts:
    """The state of a session, as ``Session.__init__`` sets it up."""

    connection: Connection
    stream: MessageStream
    handler: _Handler  # a SessionHandler (as Session declares it)
    clock: Callable[[], float]
    #: plain per-session data the layers above keep (log level, subscriptions ...)
    state: dict[str, Any]
    #: the task group of :meth:`~.session.Session.run` (None in a stateless exchange)
    _own_tasks: OwnTasks | None
    _tasks: TaskRunner
    _owns_stream: bool
    #: cancel scopes of the received requests being served
    _scopes: dict[RequestId, anyio.CancelScope]
    #: requests we sent whose answers a task awaits
    _waiters: dict[RequestId, _Waiter]
    #: requests we sent with :meth:`forward`: their answers go to callbacks
    _forwards: dict[RequestId, _Forward]
    #: received requests the handler took over (``take_request``), with what
    #: cancels each; answered with :meth:`answer_taken`
    _taken: dict[RequestId, TakenCancel]
    _taken_events: dict[RequestId, RequestReceived]
    # (offered by long-lived sessions only: a stateless exchange awaits its answer)
    _taker: Callable[[Any, RequestReceived], TakenCancel | None] | None
    #: a flush task is scheduled (see :meth:`flush_now`)
    _flush_scheduled: bool
    #: notifications received whose handling has not ended
    _notifying: int
    # Uncontended (the usual case) it is taken without a trip through the loop.
    _send_lock: SendLock
    _closed: bool
    #: created only if someone waits for the end (most sessions end unwatched)
    _finished: anyio.Event | None
    _done: bool
    # The stream's optional parts, typed, or None where it states it lacks them.
    _routed: RoutedMessageStream | None
    _attaching: ReceiverAttaching | None
    _reporting: UnansweredReporting | None
    _detaching: ResponseDetaching | None
    # Writing without waiting, from synchronous code (see flush_now), where the
    # stream can: ``send_routed_nowait`` on routed streams, else ``send_nowait``.
    _send_nowait: Callable[[bytes], bool] | None
    _send_routed_nowait: Callable[[bytes, RequestId | None, tuple[RequestId, ...]], bool] | None
    #: learnt on the first request, in the loop the session runs in
    _scope_type: type[anyio.CancelScope] | None
    #: the backend's Event class, learnt on the first request we send (as the scope's)
    _event_type: type[anyio.Event] | None
    #: requests received and not yet answered (and their answers flushed)
    _in_flight: int
    _idle: anyio.Event | None
    #: the peer's input ended: requests we would send could get no answer
    _input_ended: bool
    #: set when the end of input's grace period ran out: the cancelled
    #: requests' error message
    _stopping: str | None
    #: whether our output still reaches the peer after its input ended
    _answers_after_end: bool

    if TYPE_CHECKING:
        # What one part calls in another (defined in the module named).

        def close(self) -> None: ...  # session
        def _spawn(self, func: Callable[..., Coroutine[Any, Any, Any]],
                   *args: Any) -> None: ...  # session
        def _dispatch(self, event: Event) -> None: ...  # incoming
        def _start_serving(self, event: RequestReceived) -> None: ...  # incoming
        def _maybe_idle(self) -> None: ...  # incoming
        def _took(self, event: RequestReceived) -> bool: ...  # taken
        def _cancel_taken(self, request_id: RequestId,
                          error: McpError | None) -> None: ...  # taken
        async def _flush(self) -> bool: ...  # sending
        def flush_now(self) -> None: ...  # sending
