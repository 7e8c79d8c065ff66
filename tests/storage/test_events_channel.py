"""Contract: stream events and the replica channel on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import anyio
import pytest

from mobius_rpc.storage import MAX_MESSAGE_BYTES, Message, Retention, Store, StreamFinished

from .conftest import Clock, Target

pytestmark = pytest.mark.anyio


async def test_event_ids_count_up_per_session_across_its_streams(store: Store) -> None:
    ids = [await store.events.append("s1", stream, data)
           for stream, data in [("post-1", b"a"), ("get", b"b"), ("post-1", b""),
                                ("get", b"\x00\xff binary")]]
    assert ids == [1, 2, 3, 4]
    assert await store.events.append("s2", "get", b"other") == 1
    replay = await store.events.replay("s1", "get")
    assert replay.complete and not replay.finished
    assert [(e.event_id, e.stream, e.data) for e in replay.events] == [
        (2, "get", b"b"), (4, "get", b"\x00\xff binary")]
    after = await store.events.replay("s1", "post-1", after=1)
    assert [(e.event_id, e.data) for e in after.events] == [(3, b"")]
    assert (await store.events.replay("s1", "get", after=4)).events == ()


async def test_a_resume_point_we_never_issued_is_unknown(store: Store) -> None:
    await store.events.append("s1", "get", b"x")
    assert not (await store.events.replay("nobody", "get")).known
    assert not (await store.events.replay("s1", "nostream")).known
    assert not (await store.events.replay("s1", "get", after=2)).known
    with pytest.raises(ValueError):
        await store.events.replay("s1", "get", after=-1)


async def test_a_finished_stream_takes_no_more_events(store: Store) -> None:
    await store.events.append("s1", "post", b"answer")
    await store.events.finish("s1", "post")
    with pytest.raises(StreamFinished):
        await store.events.append("s1", "post", b"late")
    replay = await store.events.replay("s1", "post")
    assert replay.finished and [e.data for e in replay.events] == [b"answer"]
    assert await store.events.append("s1", "get", b"still fine") == 2
    await store.events.finish("s1", "empty")
    empty = await store.events.replay("s1", "empty")
    assert empty.complete and empty.finished and empty.events == ()


@pytest.fixture
def bounded(target: Target, clock: Clock) -> object:
    return lambda **bounds: target.open(clock=clock, retention=Retention(**bounds))


async def test_the_count_bound_evicts_the_oldest_and_says_so(bounded: object) -> None:
    async with bounded(max_events=3) as store:  # type: ignore[operator]
        for i in range(5):
            await store.events.append("s1", "get", b"%d" % i)
        replay = await store.events.replay("s1", "get")
        assert [e.event_id for e in replay.events] == [3, 4, 5]
        assert replay.evicted == (1, 2) and not replay.complete
        assert (await store.events.replay("s1", "get", after=2)).complete


async def test_only_the_stream_that_lost_events_is_refused(bounded: object) -> None:
    async with bounded(max_events=2) as store:  # type: ignore[operator]
        await store.events.append("s1", "post", b"p1")  # 1, evicted below
        await store.events.append("s1", "get", b"g1")  # 2
        await store.events.append("s1", "get", b"g2")  # 3
        assert (await store.events.replay("s1", "post")).evicted == (1, 1)
        get = await store.events.replay("s1", "get")
        assert get.complete and [e.data for e in get.events] == [b"g1", b"g2"]


async def test_the_byte_bound_keeps_the_newest_that_fit(bounded: object) -> None:
    async with bounded(max_bytes=10) as store:  # type: ignore[operator]
        async def sizes() -> list[int]:
            return [len(e.data) for e in (await store.events.replay("s1", "get")).events]

        for size in (4, 4, 4, 3):
            await store.events.append("s1", "get", b"x" * size)
        replay = await store.events.replay("s1", "get")
        assert await sizes() == [4, 3] and replay.evicted == (1, 2)
        await store.events.append("s1", "get", b"z" * 3)  # 4 + 3 + 3 = 10: exactly fits
        assert await sizes() == [4, 3, 3]
        await store.events.append("s1", "get", b"w" * 4)  # 14: dropping the 4 is enough
        assert await sizes() == [3, 3, 4]
        big = await store.events.append("s1", "get", b"y" * 11)  # alone over the bound
        assert big == 7 and await sizes() == []
        assert (await store.events.replay("s1", "get", after=6)).evicted == (7, 7)


async def test_the_age_bound_applies_at_append_and_at_sweep(bounded: object,
                                                            clock: Clock) -> None:
    async with bounded(max_age=10) as store:  # type: ignore[operator]
        await store.events.append("s1", "get", b"old")
        clock.advance(5)
        await store.events.append("s1", "get", b"middle")
        clock.advance(6)
        await store.events.append("s1", "get", b"new")
        replay = await store.events.replay("s1", "get")
        assert [e.data for e in replay.events] == [b"middle", b"new"]
        assert replay.evicted == (1, 1)
        assert replay.events[1].created == clock()
        clock.advance(8)
        assert await store.events.expire_older_than(clock() - 10) == 1
        assert [e.data for e in (await store.events.replay("s1", "get")).events] == [b"new"]


async def test_deleting_a_session_forgets_its_streams(store: Store) -> None:
    await store.events.append("s1", "get", b"x")
    await store.events.append("s2", "get", b"y")
    await store.events.delete_session("s1")
    assert not (await store.events.replay("s1", "get")).known
    assert (await store.events.replay("s2", "get")).complete
    assert await store.events.append("s1", "get", b"again") == 1


async def test_two_replicas_appending_to_one_session_get_gapless_ids(target: Target,
                                                                     clock: Clock) -> None:
    ids: list[int] = []

    async def append(store: Store, n: int) -> None:
        for i in range(n):
            ids.append(await store.events.append("s1", f"stream-{i % 3}", b"%d" % i))

    async with target.open(clock=clock) as one, target.open(clock=clock) as two:
        async with anyio.create_task_group() as tg:
            for replica in (one, two, one, two):
                tg.start_soon(append, replica, 15)
        assert sorted(ids) == list(range(1, 61))
        streams = [await two.events.replay("s1", f"stream-{k}") for k in range(3)]
        assert sorted(e.event_id for r in streams for e in r.events) == list(range(1, 61))


async def receive(subscription: object, count: int) -> list[Message]:
    got: list[Message] = []
    with anyio.fail_after(10):
        async for message in subscription:  # type: ignore[attr-defined]
            got.append(message)
            if len(got) == count:
                return got
    return got


async def test_a_subscriber_gets_what_is_published_on_its_channels(store: Store) -> None:
    async with store.channel.subscribe("a", "b") as sub:
        await store.channel.publish("c", b"not for us")
        await store.channel.publish("a", b"1")
        await store.channel.publish("b", b"2")
        assert await receive(sub, 2) == [Message("a", b"1"), Message("b", b"2")]
        assert sub.dropped == 0


async def test_messages_cross_replicas_in_order_large_ones_too(target: Target,
                                                               clock: Clock) -> None:
    large = bytes(range(256)) * 400  # 100 KiB: over PostgreSQL's NOTIFY limit
    async with target.open(clock=clock) as one, target.open(clock=clock) as two:
        async with two.channel.subscribe("replicas") as sub:
            for i in range(30):
                await one.channel.publish("replicas", b"%d" % i)
            await one.channel.publish("replicas", large)
            await one.channel.publish("replicas", b"after")
            got = await receive(sub, 32)
        assert [m.payload for m in got] == [b"%d" % i for i in range(30)] + [large, b"after"]


@pytest.mark.parametrize("channel", ["", "x" * 201, "line\nbreak", "nul\x00"])
async def test_bad_channel_names_are_refused(store: Store, channel: str) -> None:
    with pytest.raises(ValueError, match="channel name"):
        await store.channel.publish(channel, b"x")
    with pytest.raises(ValueError, match="channel name"):
        async with store.channel.subscribe(channel):
            pass


async def test_an_oversized_payload_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="at most"):
        await store.channel.publish("a", b"x" * (MAX_MESSAGE_BYTES + 1))
    with pytest.raises(TypeError):
        await store.channel.publish("a", "text")  # type: ignore[arg-type]
