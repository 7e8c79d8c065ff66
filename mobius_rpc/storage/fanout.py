"""Delivery of channel messages to the subscribers inside one process.

Every backend delivers a message published in this store instance straight to
its own subscribers through a :class:`Fanout` (no database round trip, and the
order of one publisher is kept); what differs is how messages from other
replicas arrive (nothing for memory, an outbox table polled for SQLite,
``LISTEN`` for PostgreSQL) before they are handed to the same fanout.

A subscriber owns a bounded buffer.  Publishing never waits for a slow
subscriber: a message that does not fit is dropped for that subscriber and
counted, which is the at-most-once contract of :class:`~.base.Subscription`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .records import Message

__all__ = ("Fanout", "FanoutSubscription")

DEFAULT_BUFFER = 1000


class FanoutSubscription:
    """Async iteration over the messages of some channels (see ``base.Subscription``)."""

    def __init__(self, channels: frozenset[str], buffer: int) -> None:
        self.channels = channels
        self.dropped = 0
        self._send: MemoryObjectSendStream[Message]
        self._receive: MemoryObjectReceiveStream[Message]
        self._send, self._receive = anyio.create_memory_object_stream[Message](buffer)

    def offer(self, message: Message) -> None:
        try:
            self._send.send_nowait(message)
        except anyio.WouldBlock:
            self.dropped += 1
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def __aiter__(self) -> FanoutSubscription:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    def close(self) -> None:
        self._send.close()
        self._receive.close()


class Fanout:
    """The subscribers of one store instance, by channel.

    ``on_subscribe`` runs (awaited) before a subscription is handed out, so a
    backend can start listening for other replicas first: nothing published
    after ``subscribe`` returns can be missed because a listener was late.
    """

    def __init__(self, *, buffer: int = DEFAULT_BUFFER,
                 on_subscribe: Callable[[], Awaitable[None]] | None = None) -> None:
        self._buffer = buffer
        self._on_subscribe = on_subscribe
        self._subscribers: set[FanoutSubscription] = set()

    @property
    def active(self) -> bool:
        return bool(self._subscribers)

    def deliver(self, message: Message) -> None:
        for subscriber in list(self._subscribers):
            if message.channel in subscriber.channels:
                subscriber.offer(message)

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[FanoutSubscription]:
        if not channels:
            raise ValueError("subscribe to at least one channel")
        if self._on_subscribe is not None:
            await self._on_subscribe()
        subscription = FanoutSubscription(frozenset(channels), self._buffer)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)
            subscription.close()

    def close(self) -> None:
        """End every subscription's iteration (the store is closing)."""
        for subscriber in list(self._subscribers):
            subscriber._send.close()
