"""The one interface the runtime sees: a stream of framed messages.

A transport only frames bytes.  It hands the runtime one complete message at
a time (one stdio line, one WebSocket frame, one HTTP body) and sends the
runtime's serialized messages out.  It never parses JSON-RPC, never validates
and never decides anything about the protocol: that is the core's job.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ("MessageStream", "RoutedMessageStream", "OVERSIZED")

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
    that belong to no request (list changes, pings).  Stream transports with
    a single channel do not implement this.
    """

    async def send_routed(self, message: bytes, related: str | int | None) -> None: ...
