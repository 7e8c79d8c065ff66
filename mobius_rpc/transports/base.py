"""The one interface the runtime sees: a stream of framed messages, and what it can do.

A transport only frames bytes.  It hands the runtime one complete message at
a time (one stdio line, one WebSocket frame, one HTTP body) and sends the
runtime's serialized messages out.  It never parses JSON-RPC, never validates
and never decides anything about the protocol: that is the core's job.

Beyond the three methods of :class:`MessageStream`, a transport states what
else it offers in a :class:`TransportCapabilities` value (its class attribute
``capabilities``) and implements the small protocol each flag names.  The
runtime reads the value once per session instead of probing for methods, and
``tests/test_layering.py`` checks that every transport's flags and methods
agree.  Every message a transport hands over comes with a
:class:`~..core.types.TransportContext` (its ``transport_context`` after
``receive`` returns, or an argument where messages are delivered).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import anyio

from ..core.types import RequestId, TransportContext

__all__ = (
    "MessageStream",
    "Serve",
    "TransportCapabilities",
    "PLAIN",
    "capabilities_of",
    "RoutedMessageStream",
    "ReceiverAttaching",
    "Receiver",
    "UnansweredReporting",
    "ResponseDetaching",
    "OversizedMessage",
    "cancel_scope_type",
)


class MessageStream(Protocol):
    async def receive(self) -> bytes:
        """The next complete message.

        :raises anyio.EndOfStream: the peer closed its side.
        :raises OversizedMessage: the next message broke the size limit; it was
            dropped, the stream goes on.
        """
        ...

    async def send(self, message: bytes) -> None:
        """Send one serialized message (without framing).

        :raises anyio.BrokenResourceError: the peer is gone.
        """
        ...

    async def aclose(self) -> None:
        """Close our side; pending ``receive`` calls end with ``EndOfStream``."""
        ...


#: what a transport calls to serve one connection's stream (``Server.serve``)
Serve = Callable[[MessageStream], Coroutine[Any, Any, None]]


class OversizedMessage(Exception):  # noqa: N818 - an outcome of receive, like EndOfStream
    """``receive`` dropped a message larger than ``limit`` bytes (it never
    holds such a message whole); the runtime answers it with an error."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"message exceeds the size limit of {limit} bytes")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class TransportCapabilities:
    """What a transport offers beyond :class:`MessageStream`, stated by its class.

    * ``routed``: one channel per request (:class:`RoutedMessageStream`).
    * ``attaches_receiver``: the runtime may digest messages in the task
      that delivers them (:class:`ReceiverAttaching`).
    * ``reports_unanswered``: it waits for each request's answer and must be
      told when one will never come (:class:`UnansweredReporting`).
    * ``detaches_responses``: a handler may end its request's response early
      and let the client resume it (:class:`ResponseDetaching`).
    * ``answers_after_end_of_input``: our output still reaches the peer after
      its input ended (stdio), so requests already received are answered.
    """

    routed: bool = False
    attaches_receiver: bool = False
    reports_unanswered: bool = False
    detaches_responses: bool = False
    answers_after_end_of_input: bool = False


#: a stream that offers nothing beyond MessageStream
PLAIN = TransportCapabilities()


def capabilities_of(stream: MessageStream) -> TransportCapabilities:
    """What ``stream`` states it can do (:data:`PLAIN` when it states nothing)."""
    caps = getattr(type(stream), "capabilities", PLAIN)
    return caps if isinstance(caps, TransportCapabilities) else PLAIN


@runtime_checkable
class RoutedMessageStream(MessageStream, Protocol):
    """A stream with one channel per request (Streamable HTTP).

    ``related`` is the id of the peer's request a message belongs to: its
    response, or a notification/request its handler sent; None for messages
    that belong to no request (list changes, pings).  ``answers`` are the ids
    of the peer's requests the message answers (one for a response, several
    for a batch's), so that the stream knows when a request's channel is
    done without parsing the message.  Stream transports with a single
    channel do not implement this.
    """

    async def send_routed(self, message: bytes, related: RequestId | None,
                          answers: tuple[RequestId, ...]) -> None: ...


#: digests one delivered message: (data, decoded or None, inline, context)
Receiver = Callable[[bytes, Any, bool, TransportContext], Awaitable[None]]


@runtime_checkable
class ReceiverAttaching(Protocol):
    """Messages arrive in a caller's task (an HTTP POST) that can digest them
    itself, skipping the receive loop."""

    def attach_receiver(self, receiver: Receiver) -> None: ...


@runtime_checkable
class UnansweredReporting(Protocol):
    """A stream that waits for each request's answer (an HTTP POST)."""

    def unanswered(self, request_id: RequestId) -> None:
        """``request_id`` will get no answer (cancelled): stop waiting for it."""
        ...


@runtime_checkable
class ResponseDetaching(Protocol):
    """A stream whose per-request responses can end early and be resumed."""

    def detach_response(self, request_id: RequestId) -> bool:
        """End the response carrying ``request_id`` now; False if there is none."""
        ...


def cancel_scope_type() -> type[anyio.CancelScope]:
    """The running backend's own ``CancelScope`` class; call it inside the event loop.

    ``anyio.CancelScope()`` asks which async library is running (sniffio,
    then the current task) on every call: about 4 us here, as long as
    validating a message.  Calling the class that one such scope has makes
    the same kind of scope without asking, so code that makes a scope per
    request learns the class once per event loop it serves.
    """
    return type(anyio.CancelScope())
