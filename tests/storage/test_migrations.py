"""Migrations on SQLite and a real PostgreSQL: every version fresh, every upgrade path.

An upgraded database must end with exactly the schema a fresh one gets (the
catalogue is compared, not just the version number), keep the data written
under the older version, and work through the store API afterwards.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from mobius_rpc.storage import (
    SCHEMA_VERSION,
    SchemaOutdated,
    SchemaTooNew,
    TaskRecord,
    inspect_store,
    upgrade_store,
)
from mobius_rpc.storage.migrate import migrations

from .conftest import Target

pytestmark = pytest.mark.anyio

TABLES = {1: {"mobius_schema", "sessions", "session_subscriptions"},
          2: {"event_logs", "event_streams", "events"},
          3: {"tasks", "outbox"}}
# migrations added beside others are found by name (their numbers change at merge)
TABLES[next(m.version for m in migrations("sqlite") if m.name == "gateway")] = {
    "gateway_tool_pins", "gateway_tool_sets"}
_CONTEXT = next(m.version for m in migrations("sqlite") if m.name == "context")
TABLES[_CONTEXT] = {"ctx_files", "ctx_symbols", "ctx_refs", "ctx_imports", "ctx_metrics",
                    "ctx_chunks"}
TABLES[next(m.version for m in migrations("sqlite") if m.name == "security")] = {
    "security_orgs", "security_users", "security_memberships", "security_tokens",
    "security_rules", "audit_records", "audit_head", "audit_checkpoint", "rate_buckets",
    "security_state"}
#: tables one dialect adds beside the shared ones (SQLite's FTS5 index and its shadow tables)
DIALECT_TABLES: dict[str, dict[int, set[str]]] = {
    "sqlite": {_CONTEXT: {"ctx_fts", "ctx_fts_data", "ctx_fts_idx", "ctx_fts_docsize",
                          "ctx_fts_config"}}}
# later migrations by name (helpers add them in parallel; the lead renumbers at merge)
_BY_NAME = {m.name: m.version for m in migrations("sqlite")}
TABLES[_BY_NAME["market"]] = {"market_catalog", "market_sync", "market_installations",
                              "market_install_counts", "market_ratings"}
TABLES[_BY_NAME["client_tokens"]] = {"client_tokens", "client_registrations"}
TABLES[_BY_NAME["context_orgs"]] = {"ctx_projects"}


def test_the_tables_list_covers_every_migration() -> None:
    assert sorted(TABLES) == list(range(1, SCHEMA_VERSION + 1))


class Raw:
    """Plain SQL on the target's database, below the store (to set up and inspect)."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def path(self) -> Path:
        return Path("/" + self.target.url.removeprefix("sqlite:").lstrip("/"))

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.target.backend == "sqlite":
            conn = sqlite3.connect(self.path(), isolation_level=None)
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        import psycopg
        with psycopg.connect(self.target.url, autocommit=True) as pg:
            pg.execute(f'SET search_path TO "{self.target.schema}"')
            cursor = pg.execute(sql.replace("?", "%s"), params)  # type: ignore[call-overload]
            return cursor.fetchall() if cursor.description else []

    def tables(self) -> set[str]:
        if self.target.backend == "sqlite":
            rows = self.query("SELECT name FROM sqlite_master WHERE type = 'table' "
                              "AND name NOT LIKE 'sqlite_%'")
        else:
            rows = self.query("SELECT table_name FROM information_schema.tables "
                              "WHERE table_schema = ?", (self.target.schema,))
        return {r[0] for r in rows}

    def catalogue(self) -> list[tuple[Any, ...]]:
        """Tables, columns, indexes and constraints, comparable across locations."""
        if self.target.backend == "sqlite":
            rows = self.query("SELECT type, name, tbl_name, sql FROM sqlite_master "
                              "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
            return rows + self.query("PRAGMA application_id")
        schema = self.target.schema
        columns = self.query(
            "SELECT table_name, column_name, data_type, is_nullable, column_default, "
            "is_identity, ordinal_position FROM information_schema.columns "
            "WHERE table_schema = ? ORDER BY table_name, ordinal_position", (schema,))
        indexes = self.query("SELECT tablename, indexname, indexdef FROM pg_indexes "
                             "WHERE schemaname = ? ORDER BY indexname", (schema,))
        constraints = self.query(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) "
            "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE n.nspname = ? ORDER BY c.conname", (schema,))
        return [tuple(str(v).replace(schema, "<schema>") for v in row)
                for row in [*columns, *indexes, *constraints]]

    def ledger(self) -> list[int]:
        return [r[0] for r in self.query("SELECT version FROM mobius_schema ORDER BY version")]

    def fingerprint(self) -> object:
        if self.target.backend == "sqlite":
            return hashlib.sha256(self.path().read_bytes()).hexdigest()
        return (self.catalogue(), self.query("SELECT * FROM mobius_schema ORDER BY version"))


def write_data_for(raw: Raw, version: int) -> None:
    """Rows that exist at ``version``, written as the code of that version would."""
    if version >= 1:
        raw.query("INSERT INTO sessions (session_id, protocol_version, client_info, "
                  "capabilities, log_level, created, last_seen, expires_at) VALUES "
                  "('old', '2025-06-18', '{\"name\":\"c\"}', '{}', 'info', 1.0, 2.0, 4e12)")
        raw.query("INSERT INTO session_subscriptions (session_id, uri) VALUES ('old', 'r://x')")
    if version >= 2:
        raw.query("INSERT INTO event_logs (session_id, last_id, floor_id, total_bytes) "
                  "VALUES ('old', 2, 1, 3)")
        raw.query("INSERT INTO event_streams (session_id, stream, last_id, evicted_through, "
                  "finished) VALUES ('old', 'get', 2, 1, 0)")
        raw.query("INSERT INTO events (session_id, event_id, stream, data, size, created) "
                  "VALUES ('old', 2, 'get', ?, 3, 5.0)", (b"abc",))


async def check_data_survived(target: Target, version: int) -> None:
    async with target.open() as store:
        found = await store.sessions.get("old")
        if version >= 1:
            assert found is not None and found.client_info == {"name": "c"}
            assert found.subscriptions == {"r://x"} and found.protocol_version == "2025-06-18"
        replay = await store.events.replay("old", "get")
        if version >= 2:
            assert [e.data for e in replay.events] == [b"abc"] and replay.evicted == (1, 1)
            assert await store.events.append("old", "get", b"new") == 3
        await store.tasks.create(TaskRecord("t", "old", "working", 1.0, 1.0, 100))
        assert (await store.tasks.get("old", "t")) is not None


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
async def test_each_version_applies_fresh(sql_target: Target, version: int) -> None:
    status = await upgrade_store(sql_target.url, target=version, schema=sql_target.schema)
    assert status.version == version and len(status.pending) == SCHEMA_VERSION - version
    raw = Raw(sql_target)
    assert raw.ledger() == list(range(1, version + 1))
    extra = DIALECT_TABLES.get(sql_target.backend, {})
    assert raw.tables() == set().union(*(TABLES[v] | extra.get(v, set())
                                         for v in range(1, version + 1)))


@pytest.mark.parametrize("start", range(1, SCHEMA_VERSION))
async def test_each_earlier_version_upgrades_to_the_fresh_schema(
        sql_target: Target, tmp_path: Path, start: int) -> None:
    fresh = Target(sql_target.backend, f"sqlite:///{tmp_path / 'fresh.db'}", "fresh_" +
                   sql_target.schema) if sql_target.backend == "sqlite" else \
        Target("postgresql", sql_target.url, "fresh_" + sql_target.schema)
    await upgrade_store(fresh.url, schema=fresh.schema)
    await upgrade_store(sql_target.url, target=start, schema=sql_target.schema)
    raw = Raw(sql_target)
    write_data_for(raw, start)
    status = await upgrade_store(sql_target.url, schema=sql_target.schema)
    assert status.version == SCHEMA_VERSION and status.up_to_date
    assert raw.ledger() == list(range(1, SCHEMA_VERSION + 1))
    assert raw.catalogue() == Raw(fresh).catalogue()
    await check_data_survived(sql_target, start)


async def test_opening_without_migrating_refuses_an_old_schema(sql_target: Target) -> None:
    await upgrade_store(sql_target.url, target=1, schema=sql_target.schema)
    with pytest.raises(SchemaOutdated, match="mobius db upgrade"):
        async with sql_target.open(migrate=False):
            pass
    assert Raw(sql_target).ledger() == [1]


async def test_a_schema_newer_than_the_code_is_refused_and_left_alone(sql_target: Target) -> None:
    await upgrade_store(sql_target.url, schema=sql_target.schema)
    raw = Raw(sql_target)
    raw.query("INSERT INTO mobius_schema (version, name, applied_at) VALUES (?, 'future', 0)",
              (SCHEMA_VERSION + 1,))
    before = raw.fingerprint()
    for attempt in (lambda: sql_target.open().__aenter__(),
                    lambda: inspect_store(sql_target.url, schema=sql_target.schema),
                    lambda: upgrade_store(sql_target.url, schema=sql_target.schema)):
        with pytest.raises(SchemaTooNew, match=f"version {SCHEMA_VERSION + 1}, newer"):
            await attempt()
    assert raw.fingerprint() == before


async def test_replicas_starting_together_migrate_once(sql_target: Target) -> None:
    if sql_target.backend == "sqlite":
        # separate processes: the lock under test is SQLite's, between processes
        code = ("import anyio, sys\nfrom mobius_rpc.storage import open_store\n"
                "async def main():\n    async with open_store(sys.argv[1]) as s:\n"
                "        print((await s.schema()).version)\nanyio.run(main)\n")
        procs = [subprocess.Popen([sys.executable, "-c", code, sql_target.url],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        results = [p.communicate(timeout=60) for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, results
        assert all(out.strip() == str(SCHEMA_VERSION) for out, _ in results)
    else:
        async def start() -> None:
            async with sql_target.open() as store:
                assert (await store.schema()).up_to_date

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(start)
    assert Raw(sql_target).ledger() == list(range(1, SCHEMA_VERSION + 1))
