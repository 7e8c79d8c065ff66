"""SSE resumability: every event a session streams is stored before it is sent.

Streamable HTTP (2025-03-26 onward) lets a client that lost an SSE stream
reconnect with ``GET`` and ``Last-Event-ID`` and receive what it missed, from
that stream only.  Each stream of a session (one per POST that streams, and
the standalone GET stream) has a name; an event id is ``<stream>#<seq>``, so
it is unique within the session and says which stream to replay.

:class:`EventStore` is the storage interface (an in-memory one here, bounded
per stream); :class:`StreamHub` adds the live part: appending wakes readers,
and :meth:`StreamHub.follow` yields stored events and then new ones until the
stream is finished.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import anyio

__all__ = ("EventStore", "MemoryEventStore", "StreamHub", "parse_event_id")

Event = tuple[str, bytes]  # (event id, data)


def parse_event_id(event_id: str) -> tuple[str, int] | None:
    """(stream, sequence number) of an id we issued, or None for anything else."""
    stream, sep, seq = event_id.rpartition("#")
    if not sep or not stream or not seq.isdigit():
        return None
    return stream, int(seq)


class EventStore(Protocol):
    def append(self, stream: str, data: bytes) -> str:
        """Store one event; return its id."""
        ...

    def after(self, stream: str, seq: int) -> list[Event] | None:
        """Events of ``stream`` after ``seq``, oldest first; None if unknown or pruned."""
        ...

    def finish(self, stream: str) -> None:
        """Mark ``stream`` complete: no more events will be appended."""
        ...

    def finished(self, stream: str) -> bool: ...

    def drop(self, prefix: str) -> None:
        """Forget every stream whose name starts with ``prefix`` (a session ended)."""
        ...


@dataclass
class _Stream:
    events: deque[tuple[int, bytes]]
    next_seq: int = 1
    finished: bool = False


@dataclass
class MemoryEventStore:
    """Keeps the last ``per_stream`` events of each stream in memory."""

    per_stream: int = 1000
    _streams: dict[str, _Stream] = field(default_factory=dict)

    def _get(self, stream: str) -> _Stream:
        found = self._streams.get(stream)
        if found is None:
            found = self._streams[stream] = _Stream(deque(maxlen=self.per_stream))
        return found

    def append(self, stream: str, data: bytes) -> str:
        entry = self._get(stream)
        seq = entry.next_seq
        entry.next_seq += 1
        entry.events.append((seq, data))
        return f"{stream}#{seq}"

    def after(self, stream: str, seq: int) -> list[Event] | None:
        entry = self._streams.get(stream)
        if entry is None or seq >= entry.next_seq:
            return None
        if entry.events and seq < entry.events[0][0] - 1:
            return None  # the events right after seq were pruned: cannot resume exactly
        return [(f"{stream}#{s}", data) for s, data in entry.events if s > seq]

    def finish(self, stream: str) -> None:
        self._get(stream).finished = True

    def finished(self, stream: str) -> bool:
        entry = self._streams.get(stream)
        return entry is not None and entry.finished

    def drop(self, prefix: str) -> None:
        for name in [n for n in self._streams if n.startswith(prefix)]:
            del self._streams[name]


class StreamHub:
    """An event store plus wake-ups, so readers can follow streams live."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._wakeups: dict[str, anyio.Event] = {}

    def _wake(self, stream: str) -> None:
        event = self._wakeups.pop(stream, None)
        if event is not None:
            event.set()

    def append(self, stream: str, data: bytes) -> str:
        event_id = self.store.append(stream, data)
        self._wake(stream)
        return event_id

    def finish(self, stream: str) -> None:
        self.store.finish(stream)
        self._wake(stream)

    async def follow(self, stream: str, after: int = 0, *,
                     stop: anyio.Event | None = None) -> AsyncIterator[Event]:
        """Stored events after ``after``, then live ones, until the stream finishes
        (or ``stop`` is set: the rest stays stored for a later resumption).

        :raises LookupError: ``after`` is not a position this stream can resume from.
        """
        seq = after
        while True:
            events = self.store.after(stream, seq)
            if events is None:
                if seq == 0 and not self.store.finished(stream):
                    events = []  # a stream with nothing in it yet
                elif seq == 0:
                    return
                else:
                    raise LookupError(f"cannot resume {stream} after event {seq}")
            for event_id, data in events:
                parsed = parse_event_id(event_id)
                assert parsed is not None
                seq = parsed[1]
                yield event_id, data
            if self.store.finished(stream) and not self.store.after(stream, seq):
                return
            if stop is not None and stop.is_set():
                return
            wakeup = self._wakeups.get(stream)
            if wakeup is None:
                wakeup = self._wakeups[stream] = anyio.Event()
            if self.store.after(stream, seq):  # appended while we were yielding
                continue
            await _either(wakeup, stop)


async def _either(first: anyio.Event, second: anyio.Event | None) -> None:
    """Wait until one of two events is set."""
    if second is None:
        await first.wait()
        return
    async with anyio.create_task_group() as tg:
        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(wait, first)
        tg.start_soon(wait, second)
