"""The audit log: the chain, tampering found, retention, export, concurrency.

The chain tests run on every security store (memory, SQLite, PostgreSQL):
tampering is done below the store, on the rows themselves.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace

import anyio
import pytest

from mobius_rpc.core.errors import McpError
from mobius_rpc.security.audit import GENESIS, AuditLog, digest, record_hash, to_csv, to_json
from mobius_rpc.security.store import (
    AuditConflict,
    AuditQuery,
    MemorySecurityStore,
    SecurityStore,
)
from tests.conftest import connect
from tests.security.conftest import audit_rows, delete_audit, edit_audit
from tests.security.support import Caller, build_server, make_world, principal, secured

pytestmark = pytest.mark.anyio


async def filled(store: SecurityStore, n: int = 10) -> tuple[SecurityStore, AuditLog]:
    log = AuditLog(store, clock=lambda: 1000.0)
    for i in range(n):
        await log.append(method="tools/call", outcome="ok" if i % 3 else "denied",
                         principal=principal(f"u{i % 2}", "A"), target=f"t{i}",
                         arguments={"i": i}, at=1000.0 + i)
    return store, log


async def test_records_chain_from_genesis_and_verify(sec_store: SecurityStore) -> None:
    store, log = await filled(sec_store)
    records = await audit_rows(store)
    assert [r.seq for r in records] == list(range(1, 11))
    assert records[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(records, records[1:], strict=False))
    assert all(record_hash(r, r.prev_hash) == r.hash for r in records)
    result = await log.verify()
    assert result.ok and result.checked == 10 and result.head_seq == 10
    assert await log.head() == (10, records[-1].hash)


async def test_an_edited_record_is_named(sec_store: SecurityStore) -> None:
    store, log = await filled(sec_store)
    await edit_audit(store, 5, outcome="ok", error=None, target="innocent")
    result = await log.verify()
    assert not result.ok and result.problems == ("record 5 was edited (hash mismatch)",)


async def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(
        sec_store: SecurityStore) -> None:
    store, log = await filled(sec_store)
    forged = replace((await audit_rows(store))[4], target="innocent")
    await edit_audit(store, 5, target="innocent", hash=record_hash(forged, forged.prev_hash))
    result = await log.verify()
    assert not result.ok and any("record 6 does not link" in p for p in result.problems)


async def test_a_deleted_record_is_named(sec_store: SecurityStore) -> None:
    store, log = await filled(sec_store)
    await delete_audit(store, 4)
    result = await log.verify()
    assert not result.ok and "record(s) 4..4 missing before record 5" in result.problems


async def test_reordered_records_are_caught() -> None:
    store, log = await filled(MemorySecurityStore())
    assert isinstance(store, MemorySecurityStore)
    rec = store.audit_records
    rec[3], rec[4] = rec[4], rec[3]
    result = await log.verify()
    assert not result.ok and "record 4 is out of order (expected 6)" in result.problems


async def test_renumbering_to_hide_a_swap_breaks_the_hashes(sec_store: SecurityStore) -> None:
    store, log = await filled(sec_store)
    rec = await audit_rows(store)
    fields = ("outcome", "user", "target", "arguments_digest", "time", "prev_hash", "hash")
    four, five = rec[3], rec[4]
    await edit_audit(store, 4, **{f: getattr(five, f) for f in fields})
    await edit_audit(store, 5, **{f: getattr(four, f) for f in fields})
    result = await log.verify()
    assert not result.ok and "record 4 was edited (hash mismatch)" in result.problems


async def test_a_cut_off_end_is_caught_by_the_anchor(sec_store: SecurityStore) -> None:
    store, log = await filled(sec_store)
    anchor = await log.head()
    await delete_audit(store, 9, 10)
    assert not (await log.verify()).ok  # the log remembers what it appended
    fresh = AuditLog(store)  # another process: only an anchor kept elsewhere helps
    assert (await fresh.verify()).ok
    result = await fresh.verify(expected_head=anchor)
    assert not result.ok and "record(s) 9..10 missing at the end" in result.problems[0]


async def test_retention_keeps_the_rest_verifiable_and_deletions_still_show(
        sec_store: SecurityStore) -> None:
    store, log = await filled(sec_store)
    checkpoint = await log.retain(before=1004.0)
    assert checkpoint is not None and checkpoint.seq == 5
    rows = await audit_rows(store)
    assert [r.seq for r in rows] == [5, 6, 7, 8, 9, 10, 11]
    assert rows[-1].method == "audit/retain"
    assert rows[-1].detail == {"removed": 4, "from_seq": 5}
    assert (await log.verify()).ok
    await log.append(method="tools/call", outcome="ok")
    assert (await AuditLog(store).verify()).ok
    await delete_audit(store, 5)
    assert not (await log.verify()).ok


async def test_retaining_everything_continues_from_the_checkpoint(
        sec_store: SecurityStore) -> None:
    store, log = await filled(sec_store)
    await log.retain(keep_last=0)
    assert [r.seq for r in await audit_rows(store)] == [11]
    assert (await AuditLog(store).verify()).ok
    with pytest.raises(ValueError):
        await log.retain()


async def test_search_tail_and_exports(sec_store: SecurityStore) -> None:
    store, log = await filled(sec_store)
    denied = await log.search(AuditQuery(outcome="denied"))
    assert [r.target for r in denied] == ["t0", "t3", "t6", "t9"]
    assert [r.seq for r in await log.search(AuditQuery(user="u1", since=1005.0))] == [6, 8, 10]
    assert [r.seq for r in await log.search(AuditQuery(until=1002.0))] == [1, 2]
    assert [r.seq for r in await log.tail(3)] == [8, 9, 10]
    assert [r.seq for r in await log.tail(2, AuditQuery(user="u0"))] == [7, 9]
    rows = json.loads(to_json(denied))
    assert rows[0]["target"] == "t0" and rows[0]["arguments_digest"] == digest({"i": 0})
    await log.append(method="tools/call", outcome="error", error="=HYPERLINK(\"x\")")
    parsed = list(csv.DictReader(io.StringIO(to_csv(await log.tail(1)))))
    assert parsed[0]["error"] == "'=HYPERLINK(\"x\")" and parsed[0]["seq"] == "11"


async def test_the_store_refuses_a_fork(sec_store: SecurityStore) -> None:
    store, log = await filled(sec_store, 2)
    last = (await audit_rows(store))[-1]
    with pytest.raises(AuditConflict):
        await store.append_audit([replace(last, seq=2)])
    with pytest.raises(AuditConflict):
        await store.append_audit([replace(last, seq=4)])
    # a second writer on the same store (another replica) re-reads the head
    other = AuditLog(store)
    await other.append(method="x", outcome="ok")
    await log.append(method="y", outcome="ok")
    assert [r.seq for r in await audit_rows(store)] == [1, 2, 3, 4]
    assert (await AuditLog(store).verify()).ok


class YieldingStore(MemorySecurityStore):
    """Gives the event loop away inside each audit operation, as a database
    round trip does, so concurrent appends really interleave."""

    async def last_audit(self):  # type: ignore[no-untyped-def]
        await anyio.sleep(0)
        return await super().last_audit()

    async def append_audit(self, records):  # type: ignore[no-untyped-def]
        await anyio.sleep(0.001)  # a commit takes a while
        self.batches.append(len(records))
        await super().append_audit(records)

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []


async def test_every_request_under_concurrent_load_is_recorded_once() -> None:
    store = YieldingStore()
    people = await make_world(store)
    server = build_server()
    secured(server, store, Caller(people["viewer"]))
    before = len(store.audit_records)
    calls = 60

    async with connect(server) as client:
        async def one(i: int) -> None:
            if i % 4 == 3:  # refused: viewers may not call it
                with pytest.raises(McpError):
                    await client.call_tool("delete_all", {"i": i})
            elif i % 4 == 2:
                await client.read_resource(f"notes://n{i}")
            else:
                await client.call_tool("lookup", {"key": f"k{i}"})

        async with anyio.create_task_group() as tg:
            for i in range(calls):
                tg.start_soon(one, i)
    records = store.audit_records[before:]
    assert len(records) == calls
    ids = [r.request_id for r in records]
    assert len(set(ids)) == calls  # each request exactly once
    targets = sorted(r.target or "" for r in records if r.method == "tools/call"
                     and r.outcome == "ok")
    assert targets == ["lookup"] * (calls // 2)
    assert sum(r.outcome == "denied" for r in records) == calls // 4
    assert (await AuditLog(store).verify()).ok
    assert max(store.batches) > 1  # requests that queued shared one write


async def test_concurrent_appends_from_two_logs_on_one_store_never_fork() -> None:
    store = YieldingStore()
    logs = [AuditLog(store), AuditLog(store)]  # two replicas sharing a database

    async def burst(log: AuditLog, n: int) -> None:
        for i in range(n):
            await log.append(method="tools/call", outcome="ok", target=str(i))

    async with anyio.create_task_group() as tg:
        for k in range(8):
            tg.start_soon(burst, logs[k % 2], 25)
    assert [r.seq for r in store.audit_records] == list(range(1, 201))
    assert (await AuditLog(store).verify()).ok


async def test_mixed_concurrent_load_is_recorded_exactly_once_on_every_store(
        sec_store: SecurityStore) -> None:
    store = sec_store
    people = await make_world(store)
    server = build_server()
    secured(server, store, Caller(people["viewer"]))
    before = len(await audit_rows(store))
    calls = 40

    async with connect(server) as client:
        async def one(i: int) -> None:
            if i % 4 == 3:
                with pytest.raises(McpError):
                    await client.call_tool("delete_all", {"i": i})
            elif i % 4 == 2:
                await client.read_resource(f"notes://n{i}")
            else:
                await client.call_tool("lookup", {"key": f"k{i}"})

        async with anyio.create_task_group() as tg:
            for i in range(calls):
                tg.start_soon(one, i)
    records = (await audit_rows(store))[before:]
    assert len(records) == calls
    assert len({r.request_id for r in records}) == calls
    assert sum(r.outcome == "denied" for r in records) == calls // 4
    assert sum(r.method == "resources/read" for r in records) == calls // 4
    assert (await AuditLog(store).verify()).ok
    await edit_audit(store, records[7].seq, target="tampered")
    result = await AuditLog(store).verify()
    assert not result.ok and f"record {records[7].seq} was edited" in result.problems[0]


async def test_two_logs_on_one_database_never_fork(sec_store: SecurityStore) -> None:
    logs = [AuditLog(sec_store), AuditLog(sec_store)]  # two replicas sharing a database

    async def burst(log: AuditLog, n: int) -> None:
        for i in range(n):
            await log.append(method="tools/call", outcome="ok", target=str(i))

    async with anyio.create_task_group() as tg:
        for k in range(6):
            tg.start_soon(burst, logs[k % 2], 10)
    assert [r.seq for r in await audit_rows(sec_store)] == list(range(1, 61))
    assert (await AuditLog(sec_store).verify()).ok


async def test_queued_records_are_built_by_the_writer_and_a_bad_field_fails_its_caller(
        sec_store: SecurityStore) -> None:
    """append_later keeps only the fields; the writer digests and chains them, as
    append does.  A field the log does not know fails at once, so it can never sit
    in the queue and stop the writer."""
    log = AuditLog(sec_store, clock=lambda: 5.0)
    who = principal("u-1", "A")
    arguments = {"b": [1, 2], "a": "x"}
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: log.run(interval=0.001))
        await anyio.sleep(0)
        assert log.writing_behind
        with pytest.raises(TypeError):
            log.append_later(method="tools/call", outcome="ok", colour="red")
        with pytest.raises(TypeError):
            log.append_later(outcome="ok")
        log.append_later(method="tools/call", outcome="ok", principal=who, target="t",
                         arguments=arguments, request_id=7)
        log.append_later(method="tools/call", outcome="ok", target="t", at=9.0)
        tg.cancel_scope.cancel()
    rows = await audit_rows(sec_store)
    assert [(r.seq, r.time, r.user, r.request_id) for r in rows] == [
        (1, 5.0, "u-1", "7"), (2, 9.0, None, None)]
    assert rows[0].arguments_digest == digest({"a": "x", "b": [1, 2]})
    assert rows[1].arguments_digest is None
    assert (await log.verify()).ok
