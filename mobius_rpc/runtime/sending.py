"""How a :class:`~.session.Session` sends what its connection queued.

The sans-I/O connection only queues bytes; this part writes them to the
stream, through the one send lock that keeps messages whole and in order.
From async code :meth:`Sending._flush` awaits the stream; from synchronous
code (the receive loop, a forward's callback) :meth:`Sending.flush_now`
writes at once where the stream can without waiting, and otherwise leaves
it to a flush task, so the receive loop never blocks on a peer that is not
reading.  Notifications we send go out here too.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from ..core.errors import ConnectionClosedError, McpError
from ..core.jsonrpc import dumps
from ..core.types import RequestId
from . import parts
from .parts import SessionParts

__all__ = ("Sending",)

log = logging.getLogger("mobius_rpc.runtime")
#: bound here, not imported: see runtime.parts.current_request
current_request = parts.current_request


class Sending(SessionParts):
    """The part of a :class:`~.session.Session` that writes to its stream."""

    async def _flush(self) -> bool:
        """Send everything the connection queued; False when the peer is gone."""
        if self._closed:
            return False
        if not self.connection.has_data_to_send():
            return True
        async with self._send_lock:
            routed = self._routed
            try:
                if routed is not None:
                    for data, related, answers in self.connection.routed_data_to_send():
                        await routed.send_routed(data, related, answers)
                else:
                    for data in self.connection.data_to_send():
                        await self.stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                self._closed = True
                return False
        return True

    def flush_now(self) -> None:
        """Send what the connection queued, from synchronous code: at once where the
        stream can write without waiting and no flush is under way (which keeps
        the order of messages), else in a task started for it."""
        if self._closed or not self.connection.has_data_to_send():
            return
        if self._send_lock.locked or self._flush_scheduled:
            self._schedule_flush()
            return
        nowait, routed = self._send_nowait, self._send_routed_nowait
        if nowait is None and routed is None:
            self._schedule_flush()
            return
        items = self.connection.routed_data_to_send()
        for index, item in enumerate(items):
            try:
                sent = routed(*item) if routed is not None else nowait(item[0])  # type: ignore[misc]
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError,
                    RuntimeError):
                self._closed = True  # the peer is gone: end the session as _flush would
                self.close()
                return
            if not sent:
                self.connection.requeue(items[index:])
                self._schedule_flush()
                return

    def _schedule_flush(self) -> None:
        if self._flush_scheduled or self._closed or not self._tasks.running:
            return
        self._flush_scheduled = True
        self._spawn(self._scheduled_flush)

    async def _scheduled_flush(self) -> None:
        try:
            # what was queued while a send awaited (flush_now found the flag set) goes too
            while True:
                if not await self._flush():
                    self.close()  # the peer is gone: end the session as the loop would
                    break
                if not self.connection.has_data_to_send():
                    break
        finally:
            self._flush_scheduled = False
            self._maybe_idle()

    async def notify(self, method: str, params: dict[str, Any] | None = None, *,
                     unrelated: bool = False) -> None:
        """Send a notification (validated and capability-checked by the connection).

        It belongs to the request whose handler sends it, unless ``unrelated``
        (pushes such as resource updates, which may be caused by another session).
        """
        if self._closed:
            raise ConnectionClosedError()
        related = None if unrelated else current_request.get()
        self.connection.notify(method, params, related=related)
        await self._flush()

    def notify_soon(self, method: str, params: dict[str, Any] | None = None, *,
                    related: RequestId | None = None) -> None:
        """Queue a notification from synchronous code; a task sends it shortly."""
        if self._closed or not self._tasks.running:
            return
        try:
            self.connection.notify(method, params, related=related)
        except McpError as exc:
            log.warning("not sending %s: %s", method, exc.message)
            return
        self._spawn(self._flush)

    async def send_raw(self, message: dict[str, Any]) -> None:
        """Send an already-built message bypassing the core (tests of broken peers only)."""
        async with self._send_lock:
            await self.stream.send(dumps(message))
