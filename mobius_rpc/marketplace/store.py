"""What the marketplace keeps: plain records, the async store protocol, a memory store.

Records are shaped like the rows of the ``market_*`` tables (see the storage
migration named ``*_market.sql``), so :mod:`.sql_store` can hold them on SQLite
and PostgreSQL through the store's ``db`` runner.  An installation's
``secrets`` maps an input name to *ciphertext* (see :mod:`.secrets`): the
store never sees a secret in clear, whichever backend it is.

:func:`~.backend.market_store` picks the implementation for an open storage
:class:`~mobius_rpc.storage.Store`: an SQL store gets the SQL programs, a
memory store a :class:`MemoryMarketStore` tied to it (so two opens of one
named memory store share the marketplace too).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

__all__ = ("Installation", "Rating", "CatalogRow", "MarketStore", "MemoryMarketStore",
           "DuplicateInstallation")


class DuplicateInstallation(Exception):
    """The organization has that extension installed already."""


@dataclass(frozen=True, slots=True)
class Installation:
    """One extension installed in one organization."""

    org_id: str
    name: str
    version: str
    registry_type: str
    identifier: str
    enabled: bool
    #: non-secret input values, by input name
    config: dict[str, str]
    #: secret input values as ciphertext, by input name
    secrets: dict[str, str]
    #: the installation's directory (package prefix or venv, and the working directory)
    path: str
    #: the unwrapped launch: {"command", "args", "env_names", "network", "readonly"}
    launch: dict[str, Any]
    created_at: float
    updated_at: float
    installed_by: str | None = None
    #: the last health check: {"status", "tools", "checkedAt", "error"}
    health: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rating:
    """One user's rating (1-5) and review of one extension; editable, one per user."""

    name: str
    user_id: str
    stars: int
    review: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class CatalogRow:
    """A catalog entry imported from a file or a registry."""

    name: str
    version: str
    source: str
    server: dict[str, Any]
    official: dict[str, Any]
    stored_at: float


class MarketStore(Protocol):
    async def put_catalog(self, rows: list[CatalogRow]) -> None: ...
    async def list_catalog(self) -> list[CatalogRow]: ...
    async def get_sync(self, source: str) -> str | None: ...
    async def set_sync(self, source: str, updated_since: str, at: float) -> None: ...

    async def add_installation(self, inst: Installation) -> None:
        """Store a new installation; :class:`DuplicateInstallation` if the org has it."""
        ...

    async def get_installation(self, org_id: str, name: str) -> Installation | None: ...
    async def list_installations(self, org_id: str | None = None) -> list[Installation]: ...
    async def update_installation(self, inst: Installation) -> bool: ...
    async def delete_installation(self, org_id: str, name: str) -> bool: ...

    async def count_install(self, name: str) -> int:
        """Add one to the extension's cumulative install count; the new count."""
        ...

    async def install_counts(self) -> dict[str, int]: ...

    async def put_rating(self, rating: Rating) -> Rating:
        """Create or edit the user's rating (``created_at`` kept from the first); as stored."""
        ...

    async def list_ratings(self, name: str) -> list[Rating]: ...
    async def rating_summary(self) -> dict[str, tuple[float, int]]: ...


class MemoryMarketStore:
    """A :class:`MarketStore` in memory (each method runs without awaiting: atomic)."""

    def __init__(self) -> None:
        self.catalog: dict[tuple[str, str], CatalogRow] = {}
        self.syncs: dict[str, str] = {}
        self.installations: dict[tuple[str, str], Installation] = {}
        self.counts: dict[str, int] = {}
        self.ratings: dict[tuple[str, str], Rating] = {}

    async def put_catalog(self, rows: list[CatalogRow]) -> None:
        for row in rows:
            self.catalog[(row.name, row.version)] = row

    async def list_catalog(self) -> list[CatalogRow]:
        return sorted(self.catalog.values(), key=lambda r: (r.stored_at, r.name, r.version))

    async def get_sync(self, source: str) -> str | None:
        return self.syncs.get(source)

    async def set_sync(self, source: str, updated_since: str, at: float) -> None:
        self.syncs[source] = updated_since

    async def add_installation(self, inst: Installation) -> None:
        if (inst.org_id, inst.name) in self.installations:
            raise DuplicateInstallation(f"{inst.name} is installed in {inst.org_id} already")
        self.installations[(inst.org_id, inst.name)] = inst

    async def get_installation(self, org_id: str, name: str) -> Installation | None:
        return self.installations.get((org_id, name))

    async def list_installations(self, org_id: str | None = None) -> list[Installation]:
        return sorted((i for i in self.installations.values()
                       if org_id is None or i.org_id == org_id),
                      key=lambda i: (i.org_id, i.name))

    async def update_installation(self, inst: Installation) -> bool:
        if (inst.org_id, inst.name) not in self.installations:
            return False
        self.installations[(inst.org_id, inst.name)] = inst
        return True

    async def delete_installation(self, org_id: str, name: str) -> bool:
        return self.installations.pop((org_id, name), None) is not None

    async def count_install(self, name: str) -> int:
        self.counts[name] = self.counts.get(name, 0) + 1
        return self.counts[name]

    async def install_counts(self) -> dict[str, int]:
        return dict(self.counts)

    async def put_rating(self, rating: Rating) -> Rating:
        old = self.ratings.get((rating.name, rating.user_id))
        stored = replace(rating, created_at=old.created_at) if old else rating
        self.ratings[(rating.name, rating.user_id)] = stored
        return stored

    async def list_ratings(self, name: str) -> list[Rating]:
        return sorted((r for r in self.ratings.values() if r.name == name),
                      key=lambda r: (-r.updated_at, r.user_id))

    async def rating_summary(self) -> dict[str, tuple[float, int]]:
        sums: dict[str, list[int]] = {}
        for r in self.ratings.values():
            sums.setdefault(r.name, []).append(r.stars)
        return {name: (round(sum(s) / len(s), 2), len(s)) for name, s in sums.items()}
