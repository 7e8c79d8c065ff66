"""Contract: sessions and tasks behave the same on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import anyio
import pytest

from mobius_rpc.storage import SessionRecord, Store, StoreConflict, TaskRecord

from .conftest import Clock, Target

pytestmark = pytest.mark.anyio

NOW = 1_000_000.0


def session(session_id: str = "s1", **changes: object) -> SessionRecord:
    fields: dict[str, object] = {
        "session_id": session_id, "created": NOW - 5, "last_seen": NOW - 1,
        "expires_at": NOW + 60, "protocol_version": "2025-11-25",
        "client_info": {"name": "client", "version": "1.0", "nested": {"a": [1, 2.5, None]}},
        "capabilities": {"sampling": {}, "roots": {"listChanged": True}},
        "log_level": "info", "subscriptions": frozenset({"file:///a", "file:///b"})}
    fields.update(changes)
    return SessionRecord(**fields)  # type: ignore[arg-type]


def task(task_id: str, session_id: str = "s1", **changes: object) -> TaskRecord:
    fields: dict[str, object] = {"task_id": task_id, "session_id": session_id,
                                 "status": "working", "created": NOW, "updated": NOW,
                                 "poll_interval_ms": 500, "ttl_ms": 60_000}
    fields.update(changes)
    return TaskRecord(**fields)  # type: ignore[arg-type]


async def test_a_session_round_trips_exactly(store: Store) -> None:
    record = session()
    await store.sessions.put(record)
    assert await store.sessions.get("s1") == record
    bare = session("s2", protocol_version=None, client_info=None, capabilities=None,
                   log_level=None, subscriptions=frozenset())
    await store.sessions.put(bare)
    assert await store.sessions.get("s2") == bare
    assert await store.sessions.get("nobody") is None


async def test_put_replaces_the_whole_record_and_its_subscriptions(store: Store) -> None:
    await store.sessions.put(session())
    replacement = session(log_level="debug", subscriptions=frozenset({"file:///c"}),
                          client_info={"name": "other"})
    await store.sessions.put(replacement)
    assert await store.sessions.get("s1") == replacement
    assert await store.sessions.subscribers("file:///a") == []
    assert await store.sessions.subscribers("file:///c") == ["s1"]


async def test_a_value_that_is_not_json_is_refused_everywhere(store: Store) -> None:
    with pytest.raises(TypeError):
        await store.sessions.put(session(client_info={"bad": {1, 2}}))
    assert await store.sessions.get("s1") is None


async def test_touch_moves_last_seen_and_expiry(store: Store) -> None:
    await store.sessions.put(session())
    assert await store.sessions.touch("s1", NOW + 1, NOW + 500)
    found = await store.sessions.get("s1")
    assert found is not None and (found.last_seen, found.expires_at) == (NOW + 1, NOW + 500)
    assert found.subscriptions == session().subscriptions
    assert not await store.sessions.touch("unknown", NOW, NOW + 1)


async def test_subscriptions_are_added_and_removed_one_by_one(store: Store) -> None:
    await store.sessions.put(session(subscriptions=frozenset()))
    await store.sessions.put(session("s0", subscriptions=frozenset()))
    assert await store.sessions.subscribe("s1", "res://x")
    assert await store.sessions.subscribe("s1", "res://x")  # idempotent
    assert await store.sessions.subscribe("s0", "res://x")
    assert await store.sessions.subscribers("res://x") == ["s0", "s1"]
    assert await store.sessions.unsubscribe("s1", "res://x")
    assert await store.sessions.subscribers("res://x") == ["s0"]
    assert not await store.sessions.subscribe("ghost", "res://x")
    assert not await store.sessions.unsubscribe("ghost", "res://x")
    found = await store.sessions.get("s0")
    assert found is not None and found.subscriptions == {"res://x"}


async def test_concurrent_subscribes_from_two_replicas_all_land(target: Target,
                                                                clock: Clock) -> None:
    async with target.open(clock=clock) as one, target.open(clock=clock) as two:
        await one.sessions.put(session(subscriptions=frozenset()))
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon((one if i % 2 else two).sessions.subscribe, "s1", f"res://{i}")
        found = await two.sessions.get("s1")
        assert found is not None and found.subscriptions == {f"res://{i}" for i in range(20)}


async def test_the_log_level_changes_alone_beside_concurrent_subscribes(target: Target,
                                                                        clock: Clock) -> None:
    async with target.open(clock=clock) as one, target.open(clock=clock) as two:
        await one.sessions.put(session(subscriptions=frozenset()))
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(one.sessions.subscribe, "s1", f"res://{i}")
                tg.start_soon(two.sessions.set_log_level, "s1", "debug" if i % 2 else "error")
        found = await two.sessions.get("s1")
        assert found is not None and found.subscriptions == {f"res://{i}" for i in range(10)}
        assert found.log_level in ("debug", "error")
        assert await one.sessions.set_log_level("s1", "warning")
        found = await one.sessions.get("s1")
        assert found is not None and found.log_level == "warning"
        assert not await one.sessions.set_log_level("nobody", "info")


async def test_delete_forgets_the_session_and_its_subscriptions(store: Store) -> None:
    await store.sessions.put(session())
    assert await store.sessions.delete("s1")
    assert not await store.sessions.delete("s1")
    assert await store.sessions.get("s1") is None
    assert await store.sessions.subscribers("file:///a") == []


async def test_an_expired_session_is_gone_before_the_sweep(store: Store, clock: Clock) -> None:
    await store.sessions.put(session("old", expires_at=NOW + 10))
    await store.sessions.put(session("young", expires_at=NOW + 100))
    clock.advance(11)
    assert await store.sessions.get("old") is None
    assert not await store.sessions.touch("old", NOW + 11, NOW + 999)
    assert not await store.sessions.subscribe("old", "res://y")
    assert await store.sessions.subscribers("file:///a") == ["young"]
    assert await store.sessions.expire_older_than(clock()) == ["old"]
    assert await store.sessions.expire_older_than(clock()) == []
    assert await store.sessions.get("young") is not None


async def test_a_task_belongs_to_its_session(store: Store) -> None:
    record = task("t1", status_message="starting", result=None)
    await store.tasks.create(record)
    assert await store.tasks.get("s1", "t1") == record
    assert await store.tasks.get("s2", "t1") is None
    assert await store.tasks.update_status("s2", "t1", "cancelled") is None
    with pytest.raises(StoreConflict):
        await store.tasks.create(task("t1", session_id="s2"))


async def test_status_updates_stop_at_a_terminal_status(store: Store, clock: Clock) -> None:
    await store.tasks.create(task("t1"))
    clock.advance(2)
    waiting = await store.tasks.update_status("s1", "t1", "input_required", message="asking")
    assert waiting is not None and waiting.status == "input_required"
    assert waiting.status_message == "asking" and waiting.updated == NOW + 2
    clock.advance(1)
    done = await store.tasks.update_status("s1", "t1", "completed",
                                           result={"content": [{"type": "text", "text": "ok"}]})
    assert done is not None and done.status == "completed" and done.status_message is None
    assert done.result == {"content": [{"type": "text", "text": "ok"}]}
    clock.advance(1)
    again = await store.tasks.update_status("s1", "t1", "failed", error={"code": -1})
    assert again == done
    assert await store.tasks.get("s1", "t1") == done
    assert await store.tasks.update_status("s1", "missing", "failed") is None


async def test_a_task_expires_with_its_ttl(store: Store, clock: Clock) -> None:
    await store.tasks.create(task("short", ttl_ms=1_000))
    await store.tasks.create(task("forever", ttl_ms=None))
    clock.advance(2)
    assert await store.tasks.get("s1", "short") is None
    assert [t.task_id for t in (await store.tasks.list("s1")).tasks] == ["forever"]
    assert await store.tasks.update_status("s1", "short", "completed") is None
    assert await store.tasks.expire(clock()) == 1
    assert await store.tasks.expire(clock() + 10**9) == 0
    assert await store.tasks.get("s1", "forever") is not None


async def test_tasks_are_listed_oldest_first_a_page_at_a_time(store: Store) -> None:
    for i in range(5):
        await store.tasks.create(task(f"t{i}", created=NOW + i))
    await store.tasks.create(task("other", session_id="s9"))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await store.tasks.list("s1", cursor=cursor, limit=2)
        seen += [t.task_id for t in page.tasks]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"t{i}" for i in range(5)] and pages == 3
    assert (await store.tasks.list("nobody")).tasks == ()


@pytest.mark.parametrize("cursor", ["junk", "", "eyJ4IjoxfQ", "WzEsMl0"])
async def test_a_cursor_we_did_not_issue_is_refused(store: Store, cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        await store.tasks.list("s1", cursor=cursor)


@pytest.mark.parametrize("limit", [0, -1, 1001])
async def test_a_page_size_out_of_range_is_refused(store: Store, limit: int) -> None:
    with pytest.raises(ValueError, match="page"):
        await store.tasks.list("s1", limit=limit)


async def test_a_sweep_removes_expired_sessions_their_streams_and_tasks(
        store: Store, clock: Clock) -> None:
    await store.sessions.put(session("gone", expires_at=NOW + 1))
    await store.sessions.put(session("kept", expires_at=NOW + 10**6))
    await store.events.append("gone", "s", b"one")
    await store.events.append("kept", "s", b"two")
    await store.tasks.create(task("t", ttl_ms=500))
    clock.advance(2)
    report = await store.sweep()
    assert report.sessions == ("gone",) and report.tasks == 1
    assert not (await store.events.replay("gone", "s")).known
    assert (await store.events.replay("kept", "s")).complete


async def test_the_schema_is_current(store: Store) -> None:
    status = await store.schema()
    assert status.up_to_date and status.version >= 3 and status.backend == store.backend
