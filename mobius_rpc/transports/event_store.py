"""SSE resumability: the events a session streams, kept while resumption may need them.

Streamable HTTP (2025-03-26 onward) lets a client that lost an SSE stream
reconnect with ``GET`` and ``Last-Event-ID`` and receive what it missed, from
that stream only.  Each stream of a session (one per POST that streams, and
the standalone GET stream) has a name; an event id is ``<stream>#<seq>``, so
it is unique within the session and says which stream to replay.

What a session streams is kept for a while, not for its whole life: one long
session making thousands of streamed POSTs would otherwise hold every one of
them until it ends.  :class:`Retention` bounds each session's history by
count, bytes and age, oldest events going first whatever stream they belong
to; a stream whose events are all gone is forgotten once it is finished, and
a resumption from an event no longer kept is refused rather than replayed
with a hole in it.

:class:`EventStore` is the storage interface, in plain data (strings, ints,
bytes) so that it can move behind an asynchronous storage protocol;
:class:`MemoryEventStore` implements it here.  :class:`StreamHub` adds the
live part: appending wakes readers, and :meth:`StreamHub.follow` yields stored
events and then new ones until the stream is finished.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio

__all__ = ("Event", "EventStore", "MemoryEventStore", "Retention", "StreamHub",
           "is_sequence_number", "parse_event_id")

log = logging.getLogger("mobius_rpc.http")

Event = tuple[int, bytes]  # (sequence number within its stream, data)


def parse_event_id(event_id: str) -> tuple[str, int] | None:
    """(stream, sequence number) of an id we issued, or None for anything else."""
    stream, sep, seq = event_id.rpartition("#")
    if not sep or not stream or not is_sequence_number(seq):
        return None
    return stream, int(seq)


def is_sequence_number(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` takes "²", which ``int`` refuses), and short
    enough to convert (``int`` refuses more than 4,300 digits)."""
    return 0 < len(text) <= 18 and text.isascii() and text.isdigit()


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of one session's event history is kept for resumption.

    After each append the oldest events of the session go until it holds at
    most ``max_events`` events and ``max_bytes`` bytes of event data (the
    newest event always stays, so a single event larger than ``max_bytes``
    still reaches the reader following its stream); events older than
    ``max_age`` seconds go whenever the session's history is touched.

    The defaults keep a few minutes of an ordinary session's history (a
    client reconnects after about a second) and at most one maximum-size
    message (the transport's default body limit) of data per session.
    """

    max_events: int = 1000
    max_bytes: int = 4 * 1024 * 1024
    max_age: float = 300.0

    def __post_init__(self) -> None:
        if self.max_events < 1 or self.max_bytes < 1 or not self.max_age > 0:
            raise ValueError("retention bounds must be positive")


class EventStore(Protocol):
    """Where the events of a session's streams are kept (all plain data)."""

    #: the bounds it keeps each session's history within
    retention: Retention

    def open(self, session: str, stream: str) -> None:
        """Make ``stream`` known before its first event (so a reader can wait on it)."""
        ...

    def append(self, session: str, stream: str, data: bytes) -> int:
        """Store one event (opening the stream if need be); return its sequence number."""
        ...

    def after(self, session: str, stream: str, seq: int) -> list[Event] | None:
        """The events of ``stream`` after ``seq``, oldest first; None when they cannot be
        given exactly: the stream is unknown (or forgotten), some were evicted, or ``seq``
        was never issued."""
        ...

    def span(self, session: str, stream: str) -> tuple[int, int] | None:
        """(oldest retained seq, newest issued seq) of a known stream, else None; the
        first is one more than the second when nothing is retained."""
        ...

    def finish(self, session: str, stream: str) -> None:
        """Mark ``stream`` complete: no more events will be appended.  Its name is not
        used again (once its events are evicted the store forgets it, and would take a
        later append for a new stream)."""
        ...

    def finished(self, session: str, stream: str) -> bool:
        """Whether no more events will come (True for a stream the store does not know)."""
        ...

    def usage(self, session: str) -> tuple[int, int]:
        """(events, bytes of event data) the store holds for ``session``."""
        ...

    def drop(self, session: str) -> None:
        """Forget every stream of ``session`` (it ended)."""
        ...


class _Stream:
    """One stream's retained events: seqs ``first`` .. ``next - 1`` (contiguous).

    A list, not a deque: most streams hold a few events, and an empty deque
    already takes a 64-slot block (about 600 bytes); taking the first of a
    list moves its other pointers, which for the longest stream is 8 KB.
    """

    __slots__ = ("name", "first", "next", "done", "data")

    def __init__(self, name: str) -> None:
        self.name = name
        self.first = 1
        self.next = 1
        self.done = False
        self.data: list[bytes] = []


class _Session:
    """A session's streams, and its retained events in append order (oldest first)."""

    __slots__ = ("streams", "order", "times", "size")

    def __init__(self) -> None:
        self.streams: dict[str, _Stream] = {}
        self.order: deque[_Stream] = deque()  # the stream of each retained event
        self.times: deque[float] = deque()  # when each retained event was appended
        self.size = 0


class MemoryEventStore:
    """Keeps each session's recent events in memory, within ``retention``.

    Events are copied on the way in.  ``orjson.dumps`` writes into a buffer
    it sized in advance (4 KB at least, and for long strings room for their
    worst-case escaping: 8 to 13 times their length here) and hands that buffer
    back as the bytes object with only its length set, so a 130-byte message
    holds 4 KB (``sys.getsizeof`` reports the length, not the allocation).
    ``bytes(memoryview(data))`` makes an exact-size copy (``bytes(data)``
    and ``data[:]`` return the same object).  ``clock`` (seconds, monotonic)
    is there for tests.  Besides the data, each event costs about 50 bytes
    of bookkeeping and each stream about 250.
    """

    def __init__(self, retention: Retention | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.retention = retention or Retention()
        self._clock = clock
        self._sessions: dict[str, _Session] = {}

    # ------------------------------------------------------------ writing

    def open(self, session: str, stream: str) -> None:
        self._stream(session, stream)

    def append(self, session: str, stream: str, data: bytes) -> int:
        entry = self._stream(session, stream)
        if entry.done:
            raise ValueError(f"stream {stream} is finished")
        held = self._sessions[session]
        data = bytes(memoryview(data))  # exact size (see the class docstring)
        seq = entry.next
        entry.next += 1
        entry.data.append(data)
        held.order.append(entry)
        now = self._clock()
        held.times.append(now)
        held.size += len(data)
        bounds = self.retention
        while len(held.order) > 1 and (len(held.order) > bounds.max_events
                                       or held.size > bounds.max_bytes):
            self._evict_oldest(held)
        self._expire(held, now)
        return seq

    def finish(self, session: str, stream: str) -> None:
        held = self._sessions.get(session)
        entry = held.streams.get(stream) if held is not None else None
        if held is None or entry is None:
            return
        entry.done = True
        if not entry.data:
            self._forget(held, entry)

    def drop(self, session: str) -> None:
        self._sessions.pop(session, None)

    # ------------------------------------------------------------ reading

    def after(self, session: str, stream: str, seq: int) -> list[Event] | None:
        entry = self._known(session, stream)
        if entry is None or seq < entry.first - 1 or seq >= entry.next:
            return None
        return list(enumerate(entry.data[seq + 1 - entry.first:], seq + 1))

    def span(self, session: str, stream: str) -> tuple[int, int] | None:
        entry = self._known(session, stream)
        return None if entry is None else (entry.first, entry.next - 1)

    def finished(self, session: str, stream: str) -> bool:
        entry = self._known(session, stream)
        return entry is None or entry.done

    def usage(self, session: str) -> tuple[int, int]:
        held = self._sessions.get(session)
        if held is None:
            return 0, 0
        self._expire(held, self._clock())
        return len(held.order), held.size

    # ------------------------------------------------------------ internals

    def _stream(self, session: str, stream: str) -> _Stream:
        held = self._sessions.get(session)
        if held is None:
            held = self._sessions[session] = _Session()
        entry = held.streams.get(stream)
        if entry is None:
            entry = held.streams[stream] = _Stream(stream)
        return entry

    def _known(self, session: str, stream: str) -> _Stream | None:
        """The stream, after the age bound has been applied to its session."""
        held = self._sessions.get(session)
        if held is None:
            return None
        self._expire(held, self._clock())
        return held.streams.get(stream)

    def _expire(self, held: _Session, now: float) -> None:
        cutoff = now - self.retention.max_age
        while held.times and held.times[0] < cutoff:
            self._evict_oldest(held)

    def _evict_oldest(self, held: _Session) -> None:
        entry = held.order.popleft()
        held.times.popleft()
        held.size -= len(entry.data.pop(0))
        entry.first += 1
        if entry.done and not entry.data:
            self._forget(held, entry)

    @staticmethod
    def _forget(held: _Session, entry: _Stream) -> None:
        if held.streams.get(entry.name) is entry:
            del held.streams[entry.name]


class StreamHub:
    """An event store plus wake-ups, so readers can follow streams live."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._wakeups: dict[tuple[str, str], anyio.Event] = {}

    def _wake(self, session: str, stream: str) -> None:
        event = self._wakeups.pop((session, stream), None)
        if event is not None:
            event.set()

    def open(self, session: str, stream: str) -> None:
        self.store.open(session, stream)

    def append(self, session: str, stream: str, data: bytes) -> str:
        """Store one event and wake the stream's reader; return the event's id."""
        seq = self.store.append(session, stream, data)
        self._wake(session, stream)
        return f"{stream}#{seq}"

    def finish(self, session: str, stream: str) -> None:
        self.store.finish(session, stream)
        self._wake(session, stream)

    def drop(self, session: str) -> None:
        """Forget the session's streams; their readers stop."""
        self.store.drop(session)
        for key in [key for key in self._wakeups if key[0] == session]:
            self._wake(*key)

    async def follow(self, session: str, stream: str, after: int = 0, *,
                     stop: anyio.Event | None = None) -> AsyncIterator[tuple[str, bytes]]:
        """(event id, data) of the stored events after ``after``, then of live ones,
        until the stream finishes or is forgotten (or ``stop`` is set: the rest stays
        stored for a later resumption).

        Whoever resumes from a client's ``Last-Event-ID`` checks first that the
        store can replay from there exactly; events evicted later, before this
        reader got to them (a reader slower than the retention bounds), are
        skipped with a warning, so the reader still gets what is kept.
        """
        seq = after
        while True:
            events = self.store.after(session, stream, seq)
            if events is None:
                span = self.store.span(session, stream)
                if span is None or seq > span[1]:
                    return  # the stream (or its session) is gone
                log.warning("stream %s: events %d..%d were evicted before they were sent",
                            stream, seq + 1, span[0] - 1)
                seq = span[0] - 1
                continue
            if events:
                for seq, data in events:
                    yield f"{stream}#{seq}", data
                if stop is not None and stop.is_set():
                    return
                continue  # others ran while we yielded: look again
            if self.store.finished(session, stream) or (stop is not None and stop.is_set()):
                return
            key = (session, stream)
            wakeup = self._wakeups.get(key)
            if wakeup is None:
                wakeup = self._wakeups[key] = anyio.Event()
            await wait_either(wakeup, stop)


async def wait_either(first: anyio.Event, second: anyio.Event | None) -> None:
    """Wait until one of two events is set (``second`` may be absent).

    Shared by the in-process hub and the store-backed streams, which both park a
    stream follower on "new event" or "stop", whichever comes first.
    """
    if second is None:
        await first.wait()
        return
    async with anyio.create_task_group() as tg:
        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(wait, first)
        tg.start_soon(wait, second)
