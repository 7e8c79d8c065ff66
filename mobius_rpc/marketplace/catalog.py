"""The catalog: validated server.json entries, what we add to them, and search.

An entry is the publisher's server.json as is (so it can be served again in the
registry's shape) plus the marketplace's curation, kept in the entry's ``_meta``
under :data:`CURATION_KEY`: a category, tags, whether we verified that it installs
and runs here, and whether it needs the network (an entry that does not say so
runs with the network cut).  The official registry's status block, when an
entry came from a registry, is kept beside it (status, updatedAt, isLatest).

Search is in memory: a catalog is thousands of entries at most, and the
filters people use (category, package registry, transport, needs secrets) are
properties of the entry, not of a database row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from .serverjson import ServerJsonError, field_path, validate_server

__all__ = ("CURATION_KEY", "OFFICIAL_KEY", "CatalogEntry", "Catalog", "SearchQuery", "Page",
           "load_bundled", "entries_from_document", "SORTS")

CURATION_KEY = "dev.mobius-rpc.marketplace/curation"
OFFICIAL_KEY = "io.modelcontextprotocol.registry/official"
SORTS = ("relevance", "name", "installs", "rating")
MAX_LIMIT = 100


def _inputs(package: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for key in ("runtimeArguments", "packageArguments", "environmentVariables"):
        for item in package.get(key, []):
            yield item
            yield from item.get("variables", {}).values()
    yield from package.get("transport", {}).get("headers", [])


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One version of one server, validated, with our curation and the registry's status."""

    server: dict[str, Any]
    source: str = "bundled"
    official: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.server["name"])

    @property
    def version(self) -> str:
        return str(self.server["version"])

    @property
    def title(self) -> str:
        return str(self.server.get("title") or self.name.split("/", 1)[1])

    @property
    def description(self) -> str:
        return str(self.server["description"])

    @property
    def curation(self) -> dict[str, Any]:
        value = self.server.get("_meta", {}).get(CURATION_KEY, {})
        return value if isinstance(value, dict) else {}

    @property
    def category(self) -> str:
        return str(self.curation.get("category") or "uncategorized")

    @property
    def tags(self) -> tuple[str, ...]:
        tags = self.curation.get("tags") or []
        return tuple(str(t) for t in tags) if isinstance(tags, list) else ()

    @property
    def verified(self) -> bool:
        return self.curation.get("verified") is True

    @property
    def network(self) -> bool:
        """Whether the entry declares it needs the network (default: it does not)."""
        return self.curation.get("network") is True

    @property
    def packages(self) -> list[dict[str, Any]]:
        return list(self.server.get("packages", []))

    @property
    def registries(self) -> tuple[str, ...]:
        return tuple(sorted({str(p["registryType"]) for p in self.packages}))

    @property
    def transports(self) -> tuple[str, ...]:
        kinds = {str(p["transport"]["type"]) for p in self.packages}
        kinds |= {str(r["type"]) for r in self.server.get("remotes", [])}
        return tuple(sorted(kinds))

    @property
    def needs_secrets(self) -> bool:
        return any(i.get("isSecret") is True for p in self.packages for i in _inputs(p))

    @property
    def status(self) -> str:
        return str(self.official.get("status") or "active")

    def summary(self) -> dict[str, Any]:
        """What a list shows of the entry."""
        return {"name": self.name, "version": self.version, "title": self.title,
                "description": self.description, "category": self.category,
                "tags": list(self.tags), "registries": list(self.registries),
                "transports": list(self.transports), "needsSecrets": self.needs_secrets,
                "verified": self.verified, "network": self.network, "status": self.status}

    def response(self) -> dict[str, Any]:
        """The entry in the registry API's ServerResponse shape."""
        meta = {OFFICIAL_KEY: self.official} if self.official else {}
        return {"server": self.server, "_meta": meta}


def entries_from_document(doc: Any, source: str) -> list[CatalogEntry]:
    """Entries from a server.json, a list of them, or a registry page ``{"servers": [...]}``
    whose items are ServerDetail or ServerResponse objects; one bad item refuses all,
    with its index in the message."""
    items = doc.get("servers") if isinstance(doc, dict) and "servers" in doc else doc
    single = isinstance(items, dict)
    if single:
        items = [items]
    if not isinstance(items, list):
        raise ServerJsonError("servers", "must be a list of server.json objects")
    entries: list[CatalogEntry] = []
    for i, item in enumerate(items):
        official: dict[str, Any] = {}
        if isinstance(item, dict) and isinstance(item.get("server"), dict):
            meta = item.get("_meta") or {}
            official = dict(meta.get(OFFICIAL_KEY) or {}) if isinstance(meta, dict) else {}
            item = item["server"]
        try:
            validate_server(item)
        except ServerJsonError as exc:
            if single:
                raise
            path = field_path(["servers", i]) + ("." + exc.field if exc.field else "")
            raise ServerJsonError(path, str(exc).split(": ", 1)[-1]) from None
        entries.append(CatalogEntry(item, source, official))
    return entries


def load_bundled() -> list[CatalogEntry]:
    """The catalog shipped with Mobius: real extensions verified to install and run here."""
    text = (resources.files(__package__) / "bundled" / "catalog.json").read_text("utf-8")
    return entries_from_document(json.loads(text), "bundled")


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str | None = None
    category: str | None = None
    registry: str | None = None
    transport: str | None = None
    needs_secrets: bool | None = None
    verified: bool | None = None
    sort: str = "relevance"
    cursor: str | None = None
    limit: int = 20


@dataclass(frozen=True, slots=True)
class Page:
    items: list[CatalogEntry]
    total: int
    next_cursor: str | None


def _score(entry: CatalogEntry, words: list[str]) -> int:
    """0 when a word is missing; else more for words in the name, title and tags."""
    name, title = entry.name.lower(), entry.title.lower()
    tags, description = " ".join(entry.tags).lower(), entry.description.lower()
    total = 0
    for word in words:
        points = (3 if word in name else 0) + (2 if word in title else 0) + (
            2 if word in tags else 0) + (1 if word in description else 0)
        if not points:
            return 0
        total += points
    return total


class Catalog:
    """Entries by name and version; the newest of a name is what search shows."""

    def __init__(self, entries: Iterable[CatalogEntry] = ()) -> None:
        self._entries: dict[str, dict[str, CatalogEntry]] = {}
        self.add(entries)

    def add(self, entries: Iterable[CatalogEntry]) -> int:
        count = 0
        for entry in entries:
            self._entries.setdefault(entry.name, {})[entry.version] = entry
            count += 1
        return count

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str, version: str | None = None) -> CatalogEntry | None:
        versions = self._entries.get(name)
        if not versions:
            return None
        if version is not None and version != "latest":
            return versions.get(version)
        marked = [e for e in versions.values() if e.official.get("isLatest") is True]
        return marked[-1] if marked else list(versions.values())[-1]

    def versions(self, name: str) -> list[CatalogEntry]:
        return list(self._entries.get(name, {}).values())[::-1]

    def latest(self) -> list[CatalogEntry]:
        return [e for e in (self.get(n) for n in self.names()) if e is not None]

    def search(self, query: SearchQuery, *, installs: Mapping[str, int] | None = None,
               ratings: Mapping[str, tuple[float, int]] | None = None) -> Page:
        """Filter, order and page the newest entries (ValueError on a bad sort or cursor)."""
        if query.sort not in SORTS:
            raise ValueError(f"unknown sort {query.sort!r} (one of {', '.join(SORTS)})")
        if not 1 <= query.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}")
        try:
            offset = int(query.cursor or "0")
        except ValueError:
            raise ValueError(f"bad cursor {query.cursor!r}") from None
        if offset < 0:
            raise ValueError(f"bad cursor {query.cursor!r}")
        words = (query.text or "").lower().split()
        scored: list[tuple[int, CatalogEntry]] = []
        for entry in self.latest():
            if entry.status == "deleted":
                continue
            if query.category and entry.category != query.category:
                continue
            if query.registry and query.registry not in entry.registries:
                continue
            if query.transport and query.transport not in entry.transports:
                continue
            if query.needs_secrets is not None and entry.needs_secrets != query.needs_secrets:
                continue
            if query.verified is not None and entry.verified != query.verified:
                continue
            score = _score(entry, words) if words else 1
            if score:
                scored.append((score, entry))
        counts, stars = installs or {}, ratings or {}
        keys = {"relevance": lambda s: (-s[0], s[1].name), "name": lambda s: (s[1].name,),
                "installs": lambda s: (-counts.get(s[1].name, 0), s[1].name),
                "rating": lambda s: (-stars.get(s[1].name, (0.0, 0))[0],
                                     -stars.get(s[1].name, (0.0, 0))[1], s[1].name)}
        scored.sort(key=keys[query.sort])
        page = [entry for _, entry in scored[offset:offset + query.limit]]
        more = offset + query.limit < len(scored)
        return Page(page, len(scored), str(offset + query.limit) if more else None)
