"""The requests a :class:`~.session.Session` sends, and how their answers come back.

Two ways out, sharing the connection's bookkeeping: :meth:`Outgoing.request`
(and :meth:`Outgoing.wait_for`) park the calling task on a waiter until the
answer, an error, a timeout or the end of the session; :meth:`Outgoing.forward`
has no task at all and hands the answer to a callback from the receive loop
(a gateway relaying a call at the cost of its messages).  The receive loop
(``incoming``) fills in both from what the peer sends; the end of the session
fails them (:meth:`Outgoing._fail_waiters`).  Kept apart from the serving of
incoming requests because it is the other direction of the same connection.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

import anyio

from ..core.errors import ConnectionClosedError, McpError, RequestTimeoutError
from ..core.types import RequestId
from . import parts
from .parts import ForwardDone, ForwardProgress, ProgressCallback, SessionParts, _Forward, _Waiter

__all__ = ("Outgoing",)

log = logging.getLogger("mobius_rpc.runtime")
#: bound here, not imported: see runtime.parts.current_request
current_request = parts.current_request


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


class Outgoing(SessionParts):
    """The part of a :class:`~.session.Session` that sends requests and awaits
    (or forwards) their answers."""

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

    def _fail_waiters(self, error: ConnectionClosedError) -> None:
        for waiter in self._waiters.values():
            if not waiter.done.is_set():
                waiter.error = error
                waiter.done.set()
        forwards, self._forwards = self._forwards, {}
        for forward in forwards.values():
            _forward_done(forward, None, error)
