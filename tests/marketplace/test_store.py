"""The marketplace store behaves the same on memory, SQLite and a real PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from mobius_rpc.marketplace import Installation, MarketStore, Rating, SecretBox, market_store
from mobius_rpc.marketplace.sql_store import SqlMarketStore
from mobius_rpc.marketplace.store import CatalogRow, DuplicateInstallation, MemoryMarketStore

from ..storage.conftest import BACKENDS, Target, make_target

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MarketStore]:
    target: Target = make_target(request.param, tmp_path, request)
    async with target.open() as opened:
        found = market_store(opened)
        assert isinstance(found, MemoryMarketStore if request.param == "memory"
                          else SqlMarketStore)
        assert market_store(opened) is found or request.param != "memory"
        yield found


def installation(org: str = "acme", name: str = "io.example/a", **kw: object) -> Installation:
    base = Installation(org_id=org, name=name, version="1.0.0", registry_type="npm",
                        identifier="a", enabled=True, config={"k": "v"},
                        secrets={"TOKEN": "v1.sealed"}, path="/x", launch={"command": ["/n"]},
                        created_at=10.0, updated_at=10.0, installed_by="alice",
                        health={"status": "ok", "tools": 3})
    return replace(base, **kw)  # type: ignore[arg-type]


async def test_installations_round_trip_and_stay_per_organization(store: MarketStore) -> None:
    one = installation()
    await store.add_installation(one)
    await store.add_installation(installation(org="globex"))
    with pytest.raises(DuplicateInstallation):
        await store.add_installation(installation())
    assert await store.get_installation("acme", "io.example/a") == one
    assert await store.get_installation("acme", "io.example/b") is None
    assert [i.org_id for i in await store.list_installations()] == ["acme", "globex"]
    assert await store.list_installations("acme") == [one]
    changed = replace(one, enabled=False, version="2.0.0", config={}, updated_at=20.0)
    assert await store.update_installation(changed)
    assert await store.get_installation("acme", "io.example/a") == changed
    assert not await store.update_installation(installation(org="initech"))
    assert await store.delete_installation("acme", "io.example/a")
    assert not await store.delete_installation("acme", "io.example/a")
    assert await store.list_installations("acme") == []


async def test_counts_ratings_catalog_and_sync(store: MarketStore) -> None:
    assert await store.count_install("x") == 1
    assert await store.count_install("x") == 2
    assert await store.count_install("y") == 1
    assert await store.install_counts() == {"x": 2, "y": 1}
    first = await store.put_rating(Rating("x", "alice", 5, "great", 1.0, 1.0))
    edited = await store.put_rating(Rating("x", "alice", 3, "meh", 9.0, 9.0))
    assert edited.created_at == first.created_at == 1.0 and edited.stars == 3
    await store.put_rating(Rating("x", "bob", 4, "", 5.0, 5.0))
    assert [(r.user_id, r.stars) for r in await store.list_ratings("x")] == [
        ("alice", 3), ("bob", 4)]
    assert await store.rating_summary() == {"x": (3.5, 2)}
    row = CatalogRow("io.example/a", "1.0.0", "file", {"name": "io.example/a"},
                     {"status": "active"}, 3.0)
    await store.put_catalog([row])
    await store.put_catalog([replace(row, source="registry", stored_at=4.0)])
    assert await store.list_catalog() == [replace(row, source="registry", stored_at=4.0)]
    assert await store.get_sync("http://r") is None
    await store.set_sync("http://r", "2026-01-01T00:00:00Z", 1.0)
    await store.set_sync("http://r", "2026-02-01T00:00:00Z", 2.0)
    assert await store.get_sync("http://r") == "2026-02-01T00:00:00Z"


async def test_a_secret_is_not_in_the_database_file_in_clear(tmp_path: Path) -> None:
    from mobius_rpc.storage import open_store
    box = SecretBox(b"s" * 32)
    secret = "postgresql://app:hunter2-very-secret@db/app"
    path = tmp_path / "store.db"
    async with open_store(f"sqlite:///{path}") as opened:
        store = market_store(opened)
        await store.add_installation(installation(
            secrets={"DB_URL": box.seal("acme", "io.example/a", "DB_URL", secret)}))
        got = await store.get_installation("acme", "io.example/a")
        assert got is not None
        assert box.open("acme", "io.example/a", "DB_URL", got.secrets["DB_URL"]) == secret
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"hunter2" not in raw
    with sqlite3.connect(path) as db:
        (text,) = db.execute("SELECT secrets FROM market_installations").fetchone()
    assert "hunter2" not in text and text.startswith('{"DB_URL":"v1.')
