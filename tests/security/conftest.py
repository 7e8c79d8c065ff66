"""The security store on every backend: memory, SQLite and a real PostgreSQL.

``sec_store`` is parametrized over the three; each test gets a fresh one (a new
memory store, a new SQLite file, a new PostgreSQL schema).  The tamper helpers
edit the audit log *below* the store (plain SQL on the database, or the memory
store's list), the way an attacker with database access would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mobius_rpc.security.open import open_security_store
from mobius_rpc.security.store import AuditQuery, AuditRecord, MemorySecurityStore, SecurityStore
from mobius_rpc.storage.sql.program import Program
from tests.storage.conftest import FAST_SQLITE, make_target, pg_cluster  # noqa: F401

BACKENDS = ["memory", "sqlite", "postgresql"]
_COLUMNS = {"time": "at", "user": "user_id", "session": "session_id"}


@pytest.fixture(params=BACKENDS)
async def sec_store(request: pytest.FixtureRequest, tmp_path: Path
                    ) -> AsyncIterator[SecurityStore]:
    if request.param == "memory":
        yield MemorySecurityStore()
        return
    target = make_target(request.param, tmp_path, request)
    options: dict[str, Any] = {"schema": target.schema}
    if target.backend == "sqlite":
        options["sqlite"] = FAST_SQLITE
    async with open_security_store(target.url, **options) as (_, security):
        yield security


async def audit_rows(store: SecurityStore) -> list[AuditRecord]:
    return await store.list_audit(AuditQuery())


def _sql(sql: str, params: tuple[Any, ...]) -> Program[None]:
    yield sql, params


async def edit_audit(store: SecurityStore, seq: int, **changes: Any) -> None:
    """Change fields of record ``seq`` in place, behind the log's back."""
    if isinstance(store, MemorySecurityStore):
        i = next(i for i, r in enumerate(store.audit_records) if r.seq == seq)
        store.audit_records[i] = replace(store.audit_records[i], **changes)
        return
    for name, value in changes.items():
        column = _COLUMNS.get(name, name)
        await store.db.write(  # type: ignore[attr-defined]
            lambda c=column, v=value: _sql(f"UPDATE audit_records SET {c} = ? WHERE seq = ?",
                                           (v, seq)))


async def delete_audit(store: SecurityStore, *seqs: int) -> None:
    if isinstance(store, MemorySecurityStore):
        store.audit_records = [r for r in store.audit_records if r.seq not in seqs]
        return
    for seq in seqs:
        await store.db.write(  # type: ignore[attr-defined]
            lambda s=seq: _sql("DELETE FROM audit_records WHERE seq = ?", (s,)))
