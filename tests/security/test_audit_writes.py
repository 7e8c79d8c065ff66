"""How the audit writer's batches reach the database: whatever their size, with
few statement texts (so each stays prepared in the driver's statement cache),
every record stored, in order, and the chain still verifying.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobius_rpc.security import sql_audit
from mobius_rpc.security.audit import AuditLog
from mobius_rpc.security.store import AuditRecord, SecurityStore
from mobius_rpc.storage.sql.program import Result, run_sync
from tests.security.conftest import audit_rows

pytestmark = pytest.mark.anyio


def _records(first: int, n: int) -> list[AuditRecord]:
    return [AuditRecord(seq=first + i, time=float(i), method="tools/call", outcome="ok",
                        prev_hash="p", hash=f"h{first + i}") for i in range(n)]


def _statements(n: int) -> list[tuple[str, tuple[Any, ...]]]:
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def execute(sql: str, params: tuple[Any, ...]) -> Result:
        seen.append((sql, params))
        return Result([], 1)
    run_sync(sql_audit._append_audit(_records(1, n)), execute)
    return seen


def test_any_batch_size_uses_one_of_a_few_insert_texts() -> None:
    texts: set[str] = set()
    for n in range(1, 700):
        inserts = [(sql, params) for sql, params in _statements(n) if sql.startswith("INSERT")]
        texts.update(sql for sql, _ in inserts)
        rows = [params[i:i + 18] for _, params in inserts for i in range(0, len(params), 18)]
        assert [row[0] for row in rows] == list(range(1, n + 1))  # every record, in order
        assert len(inserts) <= n // 256 + len(sql_audit._CHUNKS)  # one per set bit
    assert len(texts) <= len(sql_audit._CHUNKS)


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 300), min_size=1, max_size=4))
def test_batches_of_any_size_are_stored_whole_and_verify(sizes: list[int]) -> None:
    import tempfile

    import anyio

    from mobius_rpc.security.open import open_security_store

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with open_security_store(f"sqlite:///{tmp}/s.db") as (_, store):
                await _write_batches(store, sizes)
    anyio.run(run)


async def _write_batches(store: SecurityStore, sizes: list[int]) -> None:
    log = AuditLog(store)
    for batch, size in enumerate(sizes):
        for i in range(size):
            log.append_later(method="tools/call", outcome="ok", target=f"t{batch}",
                             request_id=i)
        await log.flush()
    rows = await audit_rows(store)
    assert [r.seq for r in rows] == list(range(1, sum(sizes) + 1))
    assert [r.request_id for r in rows] == [str(i) for size in sizes for i in range(size)]
    assert (await log.verify()).ok


def test_the_writer_body_is_in_record_field_order() -> None:
    """The writer makes a row from the body's values: their order must be the record's."""
    from dataclasses import fields

    from mobius_rpc.security.store import MemorySecurityStore
    body = AuditLog(MemorySecurityStore())._body(method="m", outcome="ok")
    names = [f.name for f in fields(AuditRecord)]
    assert list(body) + ["prev_hash", "hash"] == names


async def test_a_store_without_rows_gets_records_and_both_verify(tmp_path: Any) -> None:
    """The memory store has no append_audit_rows: it gets AuditRecords, the same ones."""
    from mobius_rpc.security.open import open_security_store
    from mobius_rpc.security.store import MemorySecurityStore
    memory = MemorySecurityStore()
    async with open_security_store(f"sqlite:///{tmp_path}/s.db") as (_, sqlite):
        for store in (memory, sqlite):
            log = AuditLog(store, clock=lambda: 5.0)
            for i in range(7):
                log.append_later(method="tools/call", outcome="ok", arguments={"i": i},
                                 detail={"n": i} if i % 2 else {}, request_id=i)
            durable = await log.append(method="auth/failed", outcome="denied", error="no")
            assert durable.seq == 8 and durable.error == "no"
            assert (await log.verify()).ok
        assert await audit_rows(memory) == await audit_rows(sqlite)
