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
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..core.errors import McpError
from .memory import receive_or_end

__all__ = ("HttpMessageStream", "ResponseChannel", "status_for")

RequestId = str | int
#: how the runtime takes a body in the delivering task: (body, body parsed or None)
Receiver = Callable[[bytes, Any], Awaitable[None]]


@dataclass(eq=False)
class ResponseChannel:
    """What one POST waits on: messages for its requests, until all are answered."""

    pending: set[RequestId]
    send: MemoryObjectSendStream[bytes] = field(repr=False)
    receive: MemoryObjectReceiveStream[bytes] = field(repr=False)
    #: set when the server ends this POST's SSE response early (2025-11-25
    #: polling): the messages still go to the event store, and the client
    #: fetches them with GET and Last-Event-ID
    detached: anyio.Event = field(default_factory=anyio.Event, repr=False)
    #: set while the POST waits in :meth:`first`, so that a message, the end
    #: of the channel or a detach can wake it
    _wakeup: anyio.Event | None = field(default=None, repr=False)

    @classmethod
    def open(cls, ids: set[RequestId]) -> ResponseChannel:
        send, receive = anyio.create_memory_object_stream[bytes](math.inf)
        return cls(set(ids), send, receive)

    def wake(self) -> None:
        """Tell a POST waiting in :meth:`first` that something changed."""
        if self._wakeup is not None:
            self._wakeup.set()

    async def first(self, *, or_detached: bool) -> bytes | None:
        """The first message for this POST; None if ``or_detached`` and it was detached first.

        Racing the receive against ``detached`` in two tasks of a task group
        cost more than the rest of a small request; instead the POST sleeps
        on one event that :meth:`wake` sets.  A message already waiting wins
        over a detach, and the end of the channel raises ``anyio.EndOfStream``.
        """
        while True:
            try:
                return self.receive.receive_nowait()
            except anyio.WouldBlock:
                pass
            if or_detached and self.detached.is_set():
                return None
            self._wakeup = wakeup = anyio.Event()
            try:
                await wakeup.wait()
            finally:
                self._wakeup = None


_NOTIFICATION_PREFIX = b'{"jsonrpc":"2.0","method"'
# The core serializes a single message with "jsonrpc" then "id" first and the
# member that says what it is next; reading the id from that head saves
# parsing a whole result (which may be large) only to find its id.
_HEAD = re.compile(rb'\{"jsonrpc":"2\.0","id":(-?\d+|"(?:[^"\\]|\\.)*"),"(result|error|method)":')


def _answered_ids(message: bytes) -> list[RequestId]:
    """The ids a serialized response (or batch of responses) answers."""
    if message.startswith(_NOTIFICATION_PREFIX):
        # The core serializes notifications with these leading keys (progress
        # and log messages are most of a stream): no need to parse them again.
        return []
    head = _HEAD.match(message)
    if head is not None:
        if head.group(2) == b"method":
            return []  # a request of ours, not an answer
        answered: RequestId = orjson.loads(head.group(1))
        return [answered]
    try:
        decoded = orjson.loads(message)
    except orjson.JSONDecodeError:
        return []
    items = decoded if isinstance(decoded, list) else [decoded]
    return [item["id"] for item in items if isinstance(item, dict) and "method" not in item
            and isinstance(item.get("id"), (str, int))]


class HttpMessageStream:
    """A RoutedMessageStream fed by POST bodies and drained by response streams."""

    def __init__(self, unrouted: Callable[[bytes], None] | None = None) -> None:
        self._in_send, self._in_receive = anyio.create_memory_object_stream[bytes](math.inf)
        self._routes: dict[RequestId, ResponseChannel] = {}
        # Without a standalone stream (a stateless request) unrelated messages
        # have nowhere to go and are dropped.
        self._unrouted = unrouted or (lambda message: None)
        self.closed = False
        # Set by the runtime once it runs (attach_receiver); bodies queued
        # before that (``_backlog``) are read by its receive loop first.
        self._receiver: Receiver | None = None
        self._backlog = 0

    # --------------------------------------------------------- the HTTP side

    def open_channel(self, ids: set[RequestId]) -> ResponseChannel:
        """Register a POST's request ids before its body is delivered."""
        channel = ResponseChannel.open(ids)
        for request_id in ids:
            self._routes[request_id] = channel
        return channel

    def detach_response(self, request_id: RequestId) -> bool:
        """End the SSE response carrying ``request_id`` now; False if there is none."""
        channel = self._routes.get(request_id)
        if channel is None:
            return False
        channel.detached.set()
        channel.wake()
        return True

    def close_channel(self, channel: ResponseChannel) -> None:
        """The POST is done (answered, or its client left): forget its routes."""
        for request_id in list(channel.pending):
            if self._routes.get(request_id) is channel:
                del self._routes[request_id]
        channel.send.close()
        channel.receive.close()

    async def deliver(self, body: bytes, decoded: Any = None) -> None:
        """Hand one POST body (a message or a batch; ``decoded`` if already parsed) on.

        When the runtime has attached a receiver the body is digested in the
        POST's own task, saving the hop through the session's receive loop
        (a queue, a task switch and a second parse of the body).  Until then,
        and while bodies queued earlier are still unread, it is queued, so
        that bodies reach the runtime in the order they were delivered.
        """
        receiver = self._receiver
        if receiver is not None and not self._backlog:
            await receiver(body, decoded)
            return
        self._backlog += 1
        try:
            await self._in_send.send(body)
        except BaseException:
            self._backlog -= 1
            raise

    # ------------------------------------------------------- the runtime side

    def attach_receiver(self, receiver: Receiver) -> None:
        """Digest later bodies with ``receiver`` in the delivering task (see :meth:`deliver`)."""
        self._receiver = receiver

    async def receive(self) -> bytes:
        body = await receive_or_end(self._in_receive)
        # Counted down in the same step as the body leaves the queue: the
        # runtime digests it before any other task can deliver past it.
        self._backlog -= 1
        return body

    async def send(self, message: bytes) -> None:
        await self.send_routed(message, None)

    async def send_routed(self, message: bytes, related: RequestId | None) -> None:
        channel = self._routes.get(related) if related is not None else None
        if channel is not None:
            try:
                channel.send.send_nowait(message)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the client went away; the answer has nowhere to go
            for answered in _answered_ids(message):
                channel.pending.discard(answered)
                self._routes.pop(answered, None)
            if not channel.pending:
                channel.send.close()
            channel.wake()
            return
        self._unrouted(message)

    async def aclose(self) -> None:
        self.closed = True
        self._receiver = None
        self._in_send.close()
        self._in_receive.close()
        for channel in set(self._routes.values()):
            channel.send.close()
            channel.wake()
        self._routes.clear()


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
