"""The SSE streams of shared sessions: stored as they are produced, followed live.

Part of :class:`~.http_shared.SharedSessions` (its base class): every event is
appended to the store, wakes this replica's follower of its stream and, through
the channel, the others'; a follower replays the store after its position and
waits for the next wake-up, looking again every ``poll_interval`` seconds
(the channel delivers at most once).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio

from ..framing.http import HttpRefusal
from ..storage.base import Store
from ..storage.errors import StoreError
from ..storage.records import Replay
from .event_store import wait_either

__all__ = ("SharedStreams", "GET_STREAM", "GET_POSITION")

log = logging.getLogger("mobius_rpc.http")

#: the store stream of a session's standalone (GET) SSE stream
GET_STREAM = "get"
#: where the standalone stream's last reader stopped (one small event per GET closed)
GET_POSITION = "get-position"


class SharedStreams:
    """Appending, replaying and following the streams of shared sessions."""

    store: Store
    replica: str
    poll_interval: float
    hosted: dict[str, Any]
    _wakeups: dict[tuple[str, str], anyio.Event]

    async def _publish(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def stream_name(self, hosted: Any) -> str:
        """A name for a POST's SSE stream, unique across replicas."""
        hosted.streams_opened += 1
        return f"{self.replica}.{hosted.streams_opened}"

    async def append(self, session_id: str, stream: str, data: bytes) -> int:
        """Store one event, wake this replica's follower, tell the others."""
        event_id = await self.store.events.append(session_id, stream, data)
        self._wake(session_id, stream)
        await self._publish({"k": "ev", "s": session_id, "st": stream})
        return event_id

    async def finish(self, session_id: str, stream: str) -> None:
        await self.store.events.finish(session_id, stream)
        self._wake(session_id, stream)
        await self._publish({"k": "ev", "s": session_id, "st": stream})

    async def replay(self, session_id: str, stream: str, after: int) -> Replay:
        return await self.store.events.replay(session_id, stream, after)

    async def get_position(self, session_id: str) -> int:
        """The last standalone event a GET delivered, on any replica (0: none)."""
        try:
            replay = await self.replay(session_id, GET_POSITION, 0)
        except StoreError:
            return 0
        if not replay.events:
            return 0
        return int(replay.events[-1].data)

    async def save_get_position(self, session_id: str, position: int) -> None:
        """Remember where a standalone stream stopped, for a GET on another replica
        (a stream of its own: the newest event is always kept)."""
        try:
            await self.store.events.append(session_id, GET_POSITION, b"%d" % position)
        except StoreError as error:
            log.warning("session %s: could not save the GET position: %s", session_id, error)

    def _wake(self, session_id: str, stream: str) -> None:
        event = self._wakeups.pop((session_id, stream), None)
        if event is not None:
            event.set()

    async def follow(self, session_id: str, stream: str, after: int, *,
                     stop: anyio.Event | None = None) -> AsyncIterator[tuple[int, bytes]]:
        """(event id, data) of the stream's events after ``after``, stored then live,
        until it is finished or gone (or ``stop`` is set).  Empty events (the
        markers that make a stream known before its first message) are skipped."""
        position = after
        key = (session_id, stream)
        try:
            while True:
                wakeup = self._wakeups.get(key)
                if wakeup is None:
                    wakeup = self._wakeups[key] = anyio.Event()
                replay = await self.replay(session_id, stream, position)
                if not replay.known:
                    if stream != GET_STREAM or session_id not in self.hosted:
                        return
                    # the standalone stream exists once its first message is stored
                    with anyio.move_on_after(self.poll_interval):
                        await wait_either(wakeup, stop)
                    continue
                if replay.evicted is not None:
                    log.warning("stream %s: events %d..%d were evicted before they were sent",
                                stream, *replay.evicted)
                    position = max(position, replay.evicted[1])
                for event in replay.events:
                    position = event.event_id
                    if event.data:
                        yield event.event_id, event.data
                if replay.finished and not replay.events:
                    return
                if stop is not None and stop.is_set():
                    return
                if replay.events:
                    continue
                with anyio.move_on_after(self.poll_interval):
                    await wait_either(wakeup, stop)
        finally:  # no wake-up left behind for a stream nobody follows any more
            left = self._wakeups.get(key)
            if left is not None and not left.is_set():
                del self._wakeups[key]

    async def resumable(self, session_id: str, last_event: str) -> tuple[str, int]:
        """(stream, event id) to resume after ``Last-Event-ID``, or why it cannot be."""
        stream, sep, number = last_event.rpartition("#")
        if not sep or not stream or not (number.isascii() and number.isdigit()
                                         and 0 < len(number) <= 18):
            raise HttpRefusal(400, "Bad Request: unknown Last-Event-ID")
        after = int(number)
        if stream == GET_POSITION:
            raise HttpRefusal(400, "Bad Request: unknown Last-Event-ID")
        replay = await self.replay(session_id, stream, after)
        if not replay.known:
            raise HttpRefusal(400, "Bad Request: unknown Last-Event-ID")
        if replay.evicted is not None:
            raise HttpRefusal(410, f"Gone: the stream of Last-Event-ID {last_event} is no "
                                   "longer retained; it cannot be replayed")
        return stream, after
