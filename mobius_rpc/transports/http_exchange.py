"""The response to one stateless (2026-07-28) POST, written as the runtime produces it.

A stateless request has no session to route through: its POST is the whole
exchange.  :class:`ExchangeResponse` is the stream the runtime serves it on,
and it writes straight to the ASGI ``send`` of that POST instead of going
through an inbox, per-request channels and a task that drains them:

* the answer arrives first (the common case): it is the whole response, one
  JSON body with the HTTP status its error implies, sent without a copy;
* anything arrives before the answer (progress, log messages): the response
  becomes an SSE stream.  sse-starlette runs it in a task of its own, with
  keep-alive pings, and when the client goes away the request is cancelled
  (``host``, the cancel scope the runtime enters around a request that may
  send before its answer, which is every request that can get here).

Messages that belong to no request of the POST have no standalone stream to
go to, and are dropped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from sse_starlette.event import ServerSentEvent
from sse_starlette.sse import EventSourceResponse
from starlette.types import Receive, Scope, Send

from ..core.types import RequestId
from .base import TransportCapabilities
from .http_session import send_whole, status_for

__all__ = ("ExchangeResponse",)

log = logging.getLogger("mobius_rpc.http")

_JSON = b"application/json"


class ExchangeResponse:
    """The RoutedMessageStream of one stateless POST (see the module docstring)."""

    capabilities = TransportCapabilities(routed=True)

    def __init__(self, ids: set[RequestId], scope: Scope, receive: Receive, send: Send, *,
                 spawner: TaskGroup, host: anyio.CancelScope, keepalive: float) -> None:
        self.pending = set(ids)
        #: the POST has its final answer (or its 202), nothing more is written
        self.answered = False
        self._scope = scope
        self._receive = receive
        self._send = send
        self._spawner = spawner
        self._host = host
        self._keepalive = keepalive
        self._events: MemoryObjectSendStream[bytes] | None = None
        self._sse_done: anyio.Event | None = None

    # ------------------------------------------------------- the runtime side

    async def receive(self) -> bytes:
        raise anyio.EndOfStream  # the body was the only message

    async def send(self, message: bytes) -> None:
        await self.send_routed(message, None, ())

    async def send_routed(self, message: bytes, related: RequestId | None,
                          answers: tuple[RequestId, ...]) -> None:
        if related is None or self.answered:
            return
        for answered in answers:
            self.pending.discard(answered)
        events = self._events
        if events is None:
            if not self.pending:
                self.answered = True
                await send_whole(self._send, message, status_for(message), _JSON)
                return
            events = self._open_stream()
        try:
            events.send_nowait(message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the client went away; the message has nowhere to go
        if not self.pending:
            self.answered = True
            events.close()

    async def aclose(self) -> None:
        """The runtime is done with the stream; :meth:`finish` completes the response."""

    # ---------------------------------------------------------- the HTTP side

    async def finish(self) -> None:
        """Complete the response once the runtime returned: end the SSE stream
        (waiting until it is written out), or answer 202 if nothing answered."""
        if self._events is not None:
            self._events.close()
            assert self._sse_done is not None
            await self._sse_done.wait()
        elif not self.answered:
            self.answered = True
            await send_whole(self._send, b"", 202, None)

    def abandon(self) -> None:
        """The runtime failed: stop the SSE stream, if any, without answering."""
        if self._events is not None:
            self._events.close()

    def _open_stream(self) -> MemoryObjectSendStream[bytes]:
        events, messages = anyio.create_memory_object_stream[bytes](math.inf)
        self._events = events
        done = self._sse_done = anyio.Event()
        self._spawner.start_soon(self._stream, messages, done)
        return events

    async def _stream(self, messages: MemoryObjectReceiveStream[bytes],
                      done: anyio.Event) -> None:
        drained = False

        async def sse() -> AsyncIterator[ServerSentEvent]:
            nonlocal drained
            async with messages:
                async for message in messages:
                    yield ServerSentEvent(message.decode(), event="message")
            drained = True

        try:
            await EventSourceResponse(sse(), headers={"X-Accel-Buffering": "no"},
                                      ping=self._keepalive)(self._scope, self._receive,
                                                            self._send)
        except Exception:  # the task group is shared: never let one response end it
            log.exception("a stateless SSE response failed")
        finally:
            if not drained:
                self._host.cancel()  # the client left before the answer: cancel the request
            done.set()
