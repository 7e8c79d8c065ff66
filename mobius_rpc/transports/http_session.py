"""The message stream behind one Streamable HTTP session (or one modern request).

An HTTP session is not one connection but many requests: every POST carries
client messages in, and its response (JSON or an SSE stream) carries out the
answers to the requests in that POST plus whatever their handlers send; a
GET opens a standalone stream for everything else.  :class:`HttpMessageStream`
is the :class:`~mobius_rpc.transports.base.RoutedMessageStream` the runtime
sees; it hands each outgoing message to the channel of the request it
belongs to, or else to ``unrouted`` (the session's standalone stream, which
stores it until a GET delivers it).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import orjson

from ..core.errors import McpError
from ..core.types import RequestId, TransportContext, TransportKind
from .base import Receiver, TransportCapabilities
from .memory import receive_or_end

__all__ = ("HttpMessageStream", "ResponseChannel", "send_whole", "status_for")

#: until a POST delivers one, the context of a session's messages
_NO_POST = TransportContext(TransportKind.STREAMABLE_HTTP)


class ResponseChannel:
    """What one POST waits on: messages for its requests, until all are answered.

    One is made per POST, so it is a deque and a wake-up event rather than
    an anyio memory stream pair (which, with its events, cost more than the
    JSON work of a small request).  One consumer at a time reads it: the
    POST in :meth:`first`, then whoever iterates it.
    """

    __slots__ = ("pending", "on_early", "_messages", "_ended", "_closed", "_detached",
                 "_detached_event", "_wakeup")

    def __init__(self, ids: set[RequestId]) -> None:
        self.pending = set(ids)
        #: set while the POST's own task serves its request (see
        #: :meth:`HttpMessageStream.deliver`): called once, as soon as something
        #: has to be written before the request returns (a message that is not
        #: the last answer, or a detach), to start writing the response elsewhere
        self.on_early: Callable[[], None] | None = None
        self._messages: deque[bytes] = deque()
        self._ended = False  # nothing more will be put
        self._closed = False  # nobody reads any more: puts are dropped
        self._detached = False
        self._detached_event: anyio.Event | None = None
        #: set while the consumer waits, so that a message, the end or a detach wakes it
        self._wakeup: anyio.Event | None = None

    # ------------------------------------------------------------ producing

    def put(self, message: bytes) -> None:
        if not self._closed:
            self._messages.append(message)

    def end(self) -> None:
        """No more messages will come (all answered, or the session ended)."""
        self._ended = True

    def close(self) -> None:
        """The POST is done with it: what is still put is dropped."""
        self._ended = self._closed = True
        self._messages.clear()

    def detach(self) -> None:
        """The server ends this POST's SSE response early (2025-11-25 polling):
        the messages still go to the event store, and the client fetches them
        with GET and Last-Event-ID."""
        self._detached = True
        if self._detached_event is not None:
            self._detached_event.set()

    @property
    def detached(self) -> anyio.Event:
        """An event set on :meth:`detach` (made on first use; most POSTs never need it)."""
        if self._detached_event is None:
            self._detached_event = anyio.Event()
            if self._detached:
                self._detached_event.set()
        return self._detached_event

    def wake(self) -> None:
        """Tell a consumer waiting on this channel that something changed."""
        if self._wakeup is not None:
            self._wakeup.set()
        elif self.on_early is not None and (self.pending or self._detached):
            start, self.on_early = self.on_early, None
            start()

    # ------------------------------------------------------------ consuming

    @property
    def buffered(self) -> int:
        return len(self._messages)

    async def first(self, *, or_detached: bool) -> bytes | None:
        """The first message for this POST; None if ``or_detached`` and it was detached first.

        A message already waiting wins over a detach, and the end of the
        channel raises ``anyio.EndOfStream``.
        """
        while True:
            if self._messages:
                return self._messages.popleft()
            if self._ended:
                raise anyio.EndOfStream
            if or_detached and self._detached:
                return None
            await self._wait()

    def __aiter__(self) -> ResponseChannel:
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self._messages:
                return self._messages.popleft()
            if self._ended:
                raise StopAsyncIteration
            await self._wait()

    async def _wait(self) -> None:
        self._wakeup = wakeup = anyio.Event()
        try:
            await wakeup.wait()
        finally:
            self._wakeup = None


class HttpMessageStream:
    """A RoutedMessageStream fed by POST bodies and drained by response streams.

    The runtime takes a body either in the POST's task (its attached
    receiver, given the POST's context) or from :meth:`receive`, after which
    ``transport_context`` is that body's POST's.
    """

    capabilities = TransportCapabilities(routed=True, attaches_receiver=True,
                                         reports_unanswered=True, detaches_responses=True)

    #: for a session replicas share: the prefix of our request ids, the record the
    #: session is taken up from (None: a new one) and how the server refreshes its
    #: state when another replica changed it (see ``server.relay``)
    id_prefix: str | None = None
    session_id: str | None = None
    restored: Any = None
    on_state: Callable[[Any], None] | None = None

    def __init__(self, unrouted: Callable[[bytes], None] | None = None, *,
                 unrouted_async: Callable[[bytes], Awaitable[None]] | None = None) -> None:
        self._in_send, self._in_receive = anyio.create_memory_object_stream[
            tuple[bytes, TransportContext]](math.inf)
        self.transport_context = _NO_POST
        self._routes: dict[RequestId, ResponseChannel] = {}
        # Without a standalone stream (a stateless request) unrelated messages
        # have nowhere to go and are dropped.
        self._unrouted = unrouted or (lambda message: None)
        #: instead, where unrelated messages are stored before the send returns
        self._unrouted_async = unrouted_async
        self.closed = False
        # Set by the runtime once it runs (attach_receiver); bodies queued
        # before that (``_backlog``) are read by its receive loop first.
        self._receiver: Receiver | None = None
        self._backlog = 0

    # --------------------------------------------------------- the HTTP side

    def open_channel(self, ids: set[RequestId]) -> ResponseChannel:
        """Register a POST's request ids before its body is delivered."""
        channel = ResponseChannel(ids)
        for request_id in ids:
            self._routes[request_id] = channel
        return channel

    def detach_response(self, request_id: RequestId) -> bool:
        """End the SSE response carrying ``request_id`` now; False if there is none."""
        channel = self._routes.get(request_id)
        if channel is None:
            return False
        channel.detach()
        channel.wake()
        return True

    def unanswered(self, request_id: RequestId) -> None:
        """``request_id`` was cancelled and gets no answer: its POST stops waiting for it."""
        channel = self._routes.pop(request_id, None)
        if channel is not None:
            channel.pending.discard(request_id)
            if not channel.pending:
                channel.end()
            channel.wake()

    def close_channel(self, channel: ResponseChannel) -> None:
        """The POST is done (answered, or its client left): forget its routes."""
        for request_id in list(channel.pending):
            if self._routes.get(request_id) is channel:
                del self._routes[request_id]
        channel.close()

    async def deliver(self, body: bytes, decoded: Any = None, *, inline: bool = False,
                      context: TransportContext = _NO_POST) -> None:
        """Hand one POST body (a message or a batch; ``decoded`` if already parsed) on.

        When the runtime has attached a receiver the body is digested in the
        POST's own task, saving the hop through the session's receive loop
        (a queue, a task switch and a second parse of the body).  Until then,
        and while bodies queued earlier are still unread, it is queued, so
        that bodies reach the runtime in the order they were delivered.

        ``inline``: a body holding exactly one request may have that request
        served in this task as well, and then this returns once it is
        answered; the POST sets its channel's ``on_early`` to be told when it
        must start responding before that.
        """
        receiver = self._receiver
        if receiver is not None and not self._backlog:
            await receiver(body, decoded, inline, context)
            return
        self._backlog += 1
        try:
            await self._in_send.send((body, context))
        except BaseException:
            self._backlog -= 1
            raise

    # ------------------------------------------------------- the runtime side

    def attach_receiver(self, receiver: Receiver) -> None:
        """Digest later bodies with ``receiver`` in the delivering task (see :meth:`deliver`)."""
        self._receiver = receiver

    async def receive(self) -> bytes:
        body, self.transport_context = await receive_or_end(self._in_receive)
        # Counted down in the same step as the body leaves the queue: the
        # runtime digests it before any other task can deliver past it.
        self._backlog -= 1
        return body

    async def send(self, message: bytes) -> None:
        await self.send_routed(message, None, ())

    async def send_routed(self, message: bytes, related: RequestId | None,
                          answers: tuple[RequestId, ...]) -> None:
        if not self.send_routed_nowait(message, related, answers):
            assert self._unrouted_async is not None
            await self._unrouted_async(message)

    def send_routed_nowait(self, message: bytes, related: RequestId | None,
                           answers: tuple[RequestId, ...]) -> bool:
        """:meth:`send_routed` from synchronous code; False (nothing sent) for an
        unrelated message that is stored asynchronously (replicated sessions)."""
        channel = self._routes.get(related) if related is not None else None
        if channel is not None:
            channel.put(message)  # dropped if the client went away
            for answered in answers:
                channel.pending.discard(answered)
                self._routes.pop(answered, None)
            if not channel.pending:
                channel.end()
            channel.wake()
            return True
        if self._unrouted_async is not None:
            return False
        self._unrouted(message)
        return True

    async def aclose(self) -> None:
        self.closed = True
        self._receiver = None
        self._in_send.close()
        self._in_receive.close()
        for channel in set(self._routes.values()):
            channel.end()
            channel.wake()
        self._routes.clear()


async def send_whole(send: Callable[[dict[str, Any]], Awaitable[None]], body: bytes,
                     status: int, media_type: bytes | None,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Write a complete response to ASGI ``send`` (no Starlette ``Response`` to build)."""
    raw = [(b"content-length", str(len(body)).encode())]
    if media_type is not None:
        raw.append((b"content-type", media_type))
    if headers:
        raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def status_for(message: bytes) -> int:
    """2026-07-28: a request's error answer carries its HTTP status (400, 404 ...)."""
    if b'"error"' not in message:
        return 200  # no error member anywhere, so not an error answer: skip the parse
    try:
        decoded = orjson.loads(message)
    except orjson.JSONDecodeError:
        return 200
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
        return McpError.from_error_object(decoded["error"]).http_status_hint
    return 200
