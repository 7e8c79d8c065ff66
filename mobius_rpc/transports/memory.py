"""An in-memory pair of message streams: two peers in one process.

Everything above the transports is tested on this pair first; it behaves like
a real transport (messages are bytes, closing one end ends the other's
receive) but has no framing or syscalls.
"""

from __future__ import annotations

import math
from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..core.types import memory_context
from .base import TransportCapabilities

__all__ = ("MemoryStream", "memory_pair", "receive_or_end")

T = TypeVar("T")


async def receive_or_end(stream: MemoryObjectReceiveStream[T]) -> T:
    """The next item, or ``EndOfStream`` once the stream is closed on either side.

    Transports built on memory streams use it so that closing, from whichever
    side, looks the same to the runtime: the end of the stream.
    """
    try:
        return await stream.receive()
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        raise anyio.EndOfStream from None


class MemoryStream:
    capabilities = TransportCapabilities()

    def __init__(self, outgoing: MemoryObjectSendStream[bytes],
                 incoming: MemoryObjectReceiveStream[bytes]) -> None:
        self._outgoing = outgoing
        self._incoming = incoming
        self.transport_context = memory_context()

    async def receive(self) -> bytes:
        return await receive_or_end(self._incoming)

    async def send(self, message: bytes) -> None:
        await self._outgoing.send(message)

    async def aclose(self) -> None:
        await self._outgoing.aclose()
        await self._incoming.aclose()


def memory_pair(buffer: float = math.inf) -> tuple[MemoryStream, MemoryStream]:
    """Two connected streams: what one sends, the other receives."""
    a_send, b_receive = anyio.create_memory_object_stream[bytes](buffer)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](buffer)
    return MemoryStream(a_send, a_receive), MemoryStream(b_send, b_receive)
