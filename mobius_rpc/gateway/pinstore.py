"""Where approved tool definitions are kept: a memory store and an SQL one.

Records are plain data (the storage layer knows nothing of MCP: a definition
is an opaque JSON object to it).  :class:`SqlPinStore` runs the store's
programs on the ``db`` runner of an SQL store from :func:`open_store`, on
SQLite and PostgreSQL alike (tables of the ``gateway`` migration); an
approval replaces an upstream's pins and its set digest in one transaction,
so a reader never sees half an approval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..storage.common import dump_json, load_json
from ..storage.sql.program import Program, Runner

__all__ = ("ToolPin", "SetPin", "PinStore", "MemoryPinStore", "SqlPinStore", "pin_store_for")


@dataclass(frozen=True, slots=True)
class ToolPin:
    upstream: str
    tool: str
    digest: str
    definition: dict[str, Any]
    approved_at: float
    approved_by: str


@dataclass(frozen=True, slots=True)
class SetPin:
    upstream: str
    digest: str
    approved_at: float
    approved_by: str


class PinStore(Protocol):
    async def pins(self, upstream: str) -> dict[str, ToolPin]: ...

    async def tool_set(self, upstream: str) -> SetPin | None: ...

    async def approve(self, upstream: str, pins: Sequence[ToolPin], removed: Sequence[str],
                      tool_set: SetPin) -> None:
        """Put ``pins``, drop the pins of ``removed`` tools and record ``tool_set``, at once."""
        ...

    async def upstreams(self) -> list[str]: ...


class MemoryPinStore:
    """The reference implementation (tests, single-process gateways)."""

    def __init__(self) -> None:
        self._pins: dict[str, dict[str, ToolPin]] = {}
        self._sets: dict[str, SetPin] = {}

    async def pins(self, upstream: str) -> dict[str, ToolPin]:
        return dict(self._pins.get(upstream, {}))

    async def tool_set(self, upstream: str) -> SetPin | None:
        return self._sets.get(upstream)

    async def approve(self, upstream: str, pins: Sequence[ToolPin], removed: Sequence[str],
                      tool_set: SetPin) -> None:
        current = self._pins.setdefault(upstream, {})
        for name in removed:
            current.pop(name, None)
        for pin in pins:
            current[pin.tool] = pin
        self._sets[upstream] = tool_set

    async def upstreams(self) -> list[str]:
        return sorted(set(self._pins) | set(self._sets))


def _pins(upstream: str) -> Program[dict[str, ToolPin]]:
    result = yield ("SELECT tool, digest, definition, approved_at, approved_by "
                    "FROM gateway_tool_pins WHERE upstream = ? ORDER BY tool", (upstream,))
    return {row[0]: ToolPin(upstream, row[0], row[1], load_json(row[2]) or {}, row[3], row[4])
            for row in result.rows}


def _tool_set(upstream: str) -> Program[SetPin | None]:
    result = yield ("SELECT digest, approved_at, approved_by FROM gateway_tool_sets "
                    "WHERE upstream = ?", (upstream,))
    if not result.rows:
        return None
    row = result.rows[0]
    return SetPin(upstream, row[0], row[1], row[2])


def _approve(upstream: str, pins: Sequence[ToolPin], removed: Sequence[str],
             tool_set: SetPin) -> Program[None]:
    # the set row first: on PostgreSQL its row lock orders concurrent approvals
    yield ("INSERT INTO gateway_tool_sets (upstream, digest, approved_at, approved_by) "
           "VALUES (?, ?, ?, ?) ON CONFLICT (upstream) DO UPDATE SET digest = excluded.digest, "
           "approved_at = excluded.approved_at, approved_by = excluded.approved_by",
           (upstream, tool_set.digest, tool_set.approved_at, tool_set.approved_by))
    for name in removed:
        yield ("DELETE FROM gateway_tool_pins WHERE upstream = ? AND tool = ?",
               (upstream, name))
    for pin in pins:
        yield ("INSERT INTO gateway_tool_pins (upstream, tool, digest, definition, "
               "approved_at, approved_by) VALUES (?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (upstream, tool) DO UPDATE SET digest = excluded.digest, "
               "definition = excluded.definition, approved_at = excluded.approved_at, "
               "approved_by = excluded.approved_by",
               (upstream, pin.tool, pin.digest, dump_json(pin.definition), pin.approved_at,
                pin.approved_by))


def _upstreams() -> Program[list[str]]:
    result = yield ("SELECT upstream FROM gateway_tool_sets UNION "
                    "SELECT upstream FROM gateway_tool_pins ORDER BY 1", ())
    return [row[0] for row in result.rows]


class SqlPinStore:
    """Pins in the ``gateway_tool_pins`` / ``gateway_tool_sets`` tables."""

    def __init__(self, db: Runner) -> None:
        self.db = db

    async def pins(self, upstream: str) -> dict[str, ToolPin]:
        return await self.db.read(lambda: _pins(upstream))

    async def tool_set(self, upstream: str) -> SetPin | None:
        return await self.db.read(lambda: _tool_set(upstream))

    async def approve(self, upstream: str, pins: Sequence[ToolPin], removed: Sequence[str],
                      tool_set: SetPin) -> None:
        await self.db.write(lambda: _approve(upstream, list(pins), list(removed), tool_set))

    async def upstreams(self) -> list[str]:
        return await self.db.read(_upstreams)


_memory: dict[str, MemoryPinStore] = {}


def pin_store_for(store: Any) -> PinStore:
    """The pin store beside an opened storage ``Store`` (SQL: its database;
    memory: one per named memory store, shared like the store itself)."""
    db = getattr(store, "db", None)
    if db is not None:
        return SqlPinStore(db)
    location = str(getattr(store, "location", "memory:"))
    if location == "memory:":
        return MemoryPinStore()
    return _memory.setdefault(location, MemoryPinStore())
