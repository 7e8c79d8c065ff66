"""The one interface the runtime sees: a stream of framed messages.

A transport only frames bytes.  It hands the runtime one complete message at
a time (one stdio line, one WebSocket frame, one HTTP body) and sends the
runtime's serialized messages out.  It never parses JSON-RPC, never validates
and never decides anything about the protocol: that is the core's job.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import anyio

__all__ = ("MessageStream", "RoutedMessageStream", "OVERSIZED", "cancel_scope_type")

#: What ``receive`` returns in place of a message that broke the transport's
#: size limit; the runtime answers it with an error instead of parsing it.
OVERSIZED = b"\x00oversized"


class MessageStream(Protocol):
    async def receive(self) -> bytes:
        """The next complete message.

        :raises anyio.EndOfStream: the peer closed its side.
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

    async def send_routed(self, message: bytes, related: str | int | None,
                          answers: tuple[str | int, ...]) -> None: ...


def cancel_scope_type() -> type[anyio.CancelScope]:
    """The running backend's own ``CancelScope`` class; call it inside the event loop.

    ``anyio.CancelScope()`` asks which async library is running (sniffio,
    then the current task) on every call: about 4 us here, as long as
    validating a message.  Calling the class that one such scope has makes
    the same kind of scope without asking, so code that makes a scope per
    request learns the class once per event loop it serves.
    """
    return type(anyio.CancelScope())
