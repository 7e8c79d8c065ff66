"""The marketplace store in SQL: programs over the storage layer's ``db`` runner.

The same statements run on SQLite and PostgreSQL (``?`` placeholders, ``ON
CONFLICT`` upserts, ``RETURNING``).  Every write is one program, so one
transaction: adding an installation, counting it and rating are each atomic.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..storage.sql.program import Program, Runner
from .store import CatalogRow, DuplicateInstallation, Installation, Rating

__all__ = ("SqlMarketStore",)

_INSTALL_COLUMNS = ("org_id, name, version, registry_type, identifier, enabled, config, "
                    "secrets, path, launch, health, installed_by, created_at, updated_at")


def _dump(value: Any) -> str:
    return orjson.dumps(value).decode()


def _installation(row: tuple[Any, ...]) -> Installation:
    return Installation(
        org_id=row[0], name=row[1], version=row[2], registry_type=row[3], identifier=row[4],
        enabled=bool(row[5]), config=orjson.loads(row[6]), secrets=orjson.loads(row[7]),
        path=row[8], launch=orjson.loads(row[9]), health=orjson.loads(row[10]),
        installed_by=row[11], created_at=row[12], updated_at=row[13])


def _values(inst: Installation) -> tuple[Any, ...]:
    return (inst.org_id, inst.name, inst.version, inst.registry_type, inst.identifier,
            1 if inst.enabled else 0, _dump(inst.config), _dump(inst.secrets), inst.path,
            _dump(inst.launch), _dump(inst.health), inst.installed_by, inst.created_at,
            inst.updated_at)


def _put_catalog(rows: list[CatalogRow]) -> Program[None]:
    for row in rows:
        yield ("INSERT INTO market_catalog (name, version, source, server, official, stored_at) "
               "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, version) DO UPDATE SET "
               "source = excluded.source, server = excluded.server, "
               "official = excluded.official, stored_at = excluded.stored_at",
               (row.name, row.version, row.source, _dump(row.server), _dump(row.official),
                row.stored_at))


def _list_catalog() -> Program[list[CatalogRow]]:
    result = yield ("SELECT name, version, source, server, official, stored_at "
                    "FROM market_catalog ORDER BY stored_at, name, version", ())
    return [CatalogRow(r[0], r[1], r[2], orjson.loads(r[3]), orjson.loads(r[4]), r[5])
            for r in result.rows]


def _get_sync(source: str) -> Program[str | None]:
    result = yield "SELECT updated_since FROM market_sync WHERE source = ?", (source,)
    return str(result.rows[0][0]) if result.rows else None


def _set_sync(source: str, updated_since: str, at: float) -> Program[None]:
    yield ("INSERT INTO market_sync (source, updated_since, synced_at) VALUES (?, ?, ?) "
           "ON CONFLICT (source) DO UPDATE SET updated_since = excluded.updated_since, "
           "synced_at = excluded.synced_at", (source, updated_since, at))


def _add(inst: Installation) -> Program[None]:
    marks = ", ".join("?" * 14)
    result = yield (f"INSERT INTO market_installations ({_INSTALL_COLUMNS}) VALUES ({marks}) "
                    "ON CONFLICT (org_id, name) DO NOTHING", _values(inst))
    if result.changed == 0:
        raise DuplicateInstallation(f"{inst.name} is installed in {inst.org_id} already")


def _get(org_id: str, name: str) -> Program[Installation | None]:
    result = yield (f"SELECT {_INSTALL_COLUMNS} FROM market_installations "
                    "WHERE org_id = ? AND name = ?", (org_id, name))
    return _installation(result.rows[0]) if result.rows else None


def _list(org_id: str | None) -> Program[list[Installation]]:
    if org_id is None:
        result = yield (f"SELECT {_INSTALL_COLUMNS} FROM market_installations "
                        "ORDER BY org_id, name", ())
    else:
        result = yield (f"SELECT {_INSTALL_COLUMNS} FROM market_installations "
                        "WHERE org_id = ? ORDER BY name", (org_id,))
    return [_installation(row) for row in result.rows]


def _update(inst: Installation) -> Program[bool]:
    values = _values(inst)
    result = yield ("UPDATE market_installations SET version = ?, registry_type = ?, "
                    "identifier = ?, enabled = ?, config = ?, secrets = ?, path = ?, "
                    "launch = ?, health = ?, installed_by = ?, created_at = ?, updated_at = ? "
                    "WHERE org_id = ? AND name = ?", (*values[2:], inst.org_id, inst.name))
    return result.changed > 0


def _delete(org_id: str, name: str) -> Program[bool]:
    result = yield ("DELETE FROM market_installations WHERE org_id = ? AND name = ?",
                    (org_id, name))
    return result.changed > 0


def _count(name: str) -> Program[int]:
    result = yield ("INSERT INTO market_install_counts (name, installs) VALUES (?, 1) "
                    "ON CONFLICT (name) DO UPDATE SET "
                    "installs = market_install_counts.installs + 1 RETURNING installs", (name,))
    return int(result.rows[0][0])


def _counts() -> Program[dict[str, int]]:
    result = yield "SELECT name, installs FROM market_install_counts", ()
    return {str(r[0]): int(r[1]) for r in result.rows}


def _put_rating(rating: Rating) -> Program[Rating]:
    result = yield ("INSERT INTO market_ratings (name, user_id, stars, review, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, user_id) DO "
                    "UPDATE SET stars = excluded.stars, review = excluded.review, "
                    "updated_at = excluded.updated_at RETURNING created_at",
                    (rating.name, rating.user_id, rating.stars, rating.review,
                     rating.created_at, rating.updated_at))
    return Rating(rating.name, rating.user_id, rating.stars, rating.review,
                  float(result.rows[0][0]), rating.updated_at)


def _ratings(name: str) -> Program[list[Rating]]:
    result = yield ("SELECT name, user_id, stars, review, created_at, updated_at "
                    "FROM market_ratings WHERE name = ? ORDER BY updated_at DESC, user_id",
                    (name,))
    return [Rating(r[0], r[1], int(r[2]), r[3], float(r[4]), float(r[5])) for r in result.rows]


def _summary() -> Program[dict[str, tuple[float, int]]]:
    result = yield ("SELECT name, SUM(stars), COUNT(*) FROM market_ratings GROUP BY name", ())
    return {str(r[0]): (round(int(r[1]) / int(r[2]), 2), int(r[2])) for r in result.rows}


class SqlMarketStore:
    """A :class:`~.store.MarketStore` on the runner of an SQL storage store."""

    def __init__(self, db: Runner) -> None:
        self.db = db

    async def put_catalog(self, rows: list[CatalogRow]) -> None:
        await self.db.write(lambda: _put_catalog(rows))

    async def list_catalog(self) -> list[CatalogRow]:
        return await self.db.read(_list_catalog)

    async def get_sync(self, source: str) -> str | None:
        return await self.db.read(lambda: _get_sync(source))

    async def set_sync(self, source: str, updated_since: str, at: float) -> None:
        await self.db.write(lambda: _set_sync(source, updated_since, at))

    async def add_installation(self, inst: Installation) -> None:
        await self.db.write(lambda: _add(inst))

    async def get_installation(self, org_id: str, name: str) -> Installation | None:
        return await self.db.read(lambda: _get(org_id, name))

    async def list_installations(self, org_id: str | None = None) -> list[Installation]:
        return await self.db.read(lambda: _list(org_id))

    async def update_installation(self, inst: Installation) -> bool:
        return await self.db.write(lambda: _update(inst))

    async def delete_installation(self, org_id: str, name: str) -> bool:
        return await self.db.write(lambda: _delete(org_id, name))

    async def count_install(self, name: str) -> int:
        return await self.db.write(lambda: _count(name))

    async def install_counts(self) -> dict[str, int]:
        return await self.db.read(_counts)

    async def put_rating(self, rating: Rating) -> Rating:
        return await self.db.write(lambda: _put_rating(rating))

    async def list_ratings(self, name: str) -> list[Rating]:
        return await self.db.read(lambda: _ratings(name))

    async def rating_summary(self) -> dict[str, tuple[float, int]]:
        return await self.db.read(_summary)
