"""The event store's retention rule, its compact storage, and following streams live."""

from __future__ import annotations

import logging
import tracemalloc
from dataclasses import dataclass, field

import anyio
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobius_rpc.transports.event_store import MemoryEventStore, Retention, StreamHub

SESSIONS = ("s0", "s1")
STREAMS = ("a", "b", "c")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Model:
    """Everything appended to one session, in order, and what the rule says is kept."""

    events: list[tuple[str, int, bytes, float]] = field(default_factory=list)
    next_seq: dict[str, int] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)

    def kept_from(self, bounds: Retention, now: float) -> int:
        """Index of the oldest event kept, stated whole rather than step by step: the
        longest run of newest events within the count and byte bounds (never less than
        the newest one), minus whatever is older than the age bound now."""
        n = len(self.events)
        start = 0
        while n - start > 1 and (n - start > bounds.max_events or sum(
                len(e[2]) for e in self.events[start:]) > bounds.max_bytes):
            start += 1
        aged = sum(1 for e in self.events if e[3] < now - bounds.max_age)
        return max(start, aged)


# Whole seconds and small sizes, so that events often land exactly on a bound.
operations = st.lists(st.one_of(
    st.tuples(st.just("append"), st.sampled_from(SESSIONS), st.sampled_from(STREAMS),
              st.integers(0, 12), st.integers(0, 3)),
    st.tuples(st.just("finish"), st.sampled_from(SESSIONS), st.sampled_from(STREAMS),
              st.just(0), st.integers(0, 3)),
    st.tuples(st.just("drop"), st.sampled_from(SESSIONS), st.just(""), st.just(0),
              st.integers(0, 3)),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(max_events=st.integers(1, 8), max_bytes=st.integers(1, 60),
       max_age=st.integers(1, 8), ops=operations)
def test_retention_keeps_exactly_what_the_bounds_allow(
        max_events: int, max_bytes: int, max_age: int,
        ops: list[tuple[str, str, str, int, int]]) -> None:
    bounds = Retention(max_events, max_bytes, max_age)
    clock = Clock()
    store = MemoryEventStore(bounds, clock=clock)
    models = {session: Model() for session in SESSIONS}
    counter = 0
    for op, session, stream, size, dt in ops:
        clock.now += dt
        model = models[session]
        if op == "append":
            counter += 1
            data = b"%04d" % counter + b"x" * size  # distinct, 4 + size bytes
            if stream in model.finished:  # callers never reuse a finished stream's name
                if store.span(session, stream) is not None:  # still known: refused
                    with pytest.raises(ValueError):
                        store.append(session, stream, data)
                continue
            seq = store.append(session, stream, data)
            assert seq == model.next_seq.get(stream, 1)
            model.next_seq[stream] = seq + 1
            model.events.append((stream, seq, data, clock.now))
        elif op == "finish":
            store.finish(session, stream)
            if stream in model.next_seq:
                model.finished.add(stream)
        else:
            store.drop(session)
            models[session] = Model()
        for name, held in models.items():
            kept = held.events[held.kept_from(bounds, clock.now):]
            for s in STREAMS:
                mine = [(seq, data) for st_name, seq, data, _ in kept if st_name == s]
                last = held.next_seq.get(s, 1) - 1
                if s not in held.next_seq or (s in held.finished and not mine):
                    # never appended to, or finished with nothing left: forgotten
                    assert store.span(name, s) is None
                    assert store.after(name, s, 0) is None
                    assert store.finished(name, s)
                    continue
                first = mine[0][0] if mine else last + 1
                assert store.span(name, s) == (first, last)
                assert store.after(name, s, first - 1) == mine
                assert store.after(name, s, last) == []
                assert store.after(name, s, last + 1) is None
                if first >= 2:
                    assert store.after(name, s, first - 2) is None  # a gap: never replayed
                assert store.finished(name, s) == (s in held.finished)
            count, size_now = store.usage(name)
            assert (count, size_now) == (len(kept), sum(len(e[2]) for e in kept))
            assert count <= 1 or (count <= max_events and size_now <= max_bytes)


def test_bounds_must_be_positive() -> None:
    for bad in ({"max_events": 0}, {"max_bytes": 0}, {"max_age": 0.0},
                {"max_age": float("nan")}):
        with pytest.raises(ValueError):
            Retention(**bad)


def test_events_are_stored_at_their_exact_size() -> None:
    """orjson's result carries its whole working buffer; the store keeps a copy the
    size of the JSON (measured in allocated bytes, not with sys.getsizeof, which
    reports only the length)."""
    store = MemoryEventStore(Retention(max_events=5000))
    message = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {
        "progressToken": "t1", "progress": 1, "total": 3, "message": "step 1 of 3"}}
    events = [orjson.dumps(message) for _ in range(2000)]
    assert 100 < len(events[0]) < 200
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for data in events:
            store.append("s", "a", data)
        del data
        events.clear()  # only the store's copies remain (if it copied)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # about 110 bytes of JSON, a bytes header and three references per event
    assert grown / 2000 < 400, f"{grown / 2000:.0f} bytes per event"



@pytest.mark.anyio
async def test_a_reader_slower_than_the_bounds_skips_what_was_evicted(
        caplog: pytest.LogCaptureFixture) -> None:
    hub = StreamHub(MemoryEventStore(Retention(max_events=3)))
    for i in range(1, 11):
        hub.append("s", "s.1", b"%d" % i)
    hub.finish("s", "s.1")
    with caplog.at_level(logging.WARNING, logger="mobius_rpc.http"):
        got = [event async for event in hub.follow("s", "s.1", 0)]
    assert got == [("s.1#8", b"8"), ("s.1#9", b"9"), ("s.1#10", b"10")]
    assert "events 1..7 were evicted" in caplog.text


@pytest.mark.anyio
async def test_following_waits_for_events_and_ends_with_the_stream_or_session() -> None:
    hub = StreamHub(MemoryEventStore())
    hub.open("s", "s.1")
    hub.open("s", "s.get")
    got: list[tuple[str, bytes]] = []
    standalone: list[tuple[str, bytes]] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            async def read() -> None:
                got.extend([event async for event in hub.follow("s", "s.1", 0)])

            async def read_standalone() -> None:
                standalone.extend([event async for event in hub.follow("s", "s.get", 0)])

            tg.start_soon(read)
            tg.start_soon(read_standalone)
            await anyio.sleep(0.01)
            hub.append("s", "s.1", b"one")
            hub.append("s", "s.get", b"note")
            await anyio.sleep(0.01)
            hub.append("s", "s.1", b"two")
            hub.finish("s", "s.1")
            await anyio.sleep(0.01)
            hub.drop("s")  # the session ended: its standalone reader stops too
    assert got == [("s.1#1", b"one"), ("s.1#2", b"two")]
    assert standalone == [("s.get#1", b"note")]
