"""Importing from a registry in the official REST shape (``GET /v0.1/servers``).

A sync walks the cursor pages (``metadata.nextCursor``) until there is none,
asking only for what changed since the last sync (``updated_since``, RFC 3339)
once one has been done; the newest ``updatedAt`` seen becomes the next
``updated_since``.  An entry the schema refuses is reported and skipped, not
fatal: one bad publisher must not stop a whole catalog from updating (a file
import, by contrast, is refused whole).  Limits: page size 100, at most
``max_pages`` pages, a body of at most ``max_bytes``, a cursor that repeats
ends the walk, and only ``http``/``https`` URLs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from .catalog import OFFICIAL_KEY, CatalogEntry, entries_from_document
from .serverjson import ServerJsonError

__all__ = ("RegistryError", "SyncResult", "fetch_registry")


class RegistryError(RuntimeError):
    """The registry could not be read (network, status, or a body of the wrong shape)."""


@dataclass
class SyncResult:
    entries: list[CatalogEntry] = field(default_factory=list)
    #: (which item, why) for each entry refused by validation
    rejected: list[tuple[str, str]] = field(default_factory=list)
    pages: int = 0
    #: the newest ``updatedAt`` seen: the next sync's ``updated_since``
    newest: str | None = None


async def fetch_registry(base_url: str, *, updated_since: str | None = None,
                         limit: int = 100, max_pages: int = 1000,
                         max_bytes: int = 8 << 20, timeout: float = 30.0,
                         transport: httpx.AsyncBaseTransport | None = None) -> SyncResult:
    """All (or all changed) servers of the registry at ``base_url``."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RegistryError(f"not an http(s) registry URL: {base_url!r}")
    url = base_url.rstrip("/") + "/v0.1/servers"
    result = SyncResult(newest=updated_since)
    cursor: str | None = None
    seen: set[str] = set()
    async with httpx.AsyncClient(timeout=timeout, transport=transport,
                                 follow_redirects=False) as client:
        while result.pages < max_pages:
            params: dict[str, Any] = {"limit": min(max(limit, 1), 100)}
            if cursor:
                params["cursor"] = cursor
            if updated_since:
                params["updated_since"] = updated_since
            body = await _get(client, url, params, max_bytes)
            result.pages += 1
            _take_page(body, result, base_url)
            metadata = body.get("metadata") or {}
            cursor = metadata.get("nextCursor") if isinstance(metadata, dict) else None
            if not cursor or cursor in seen:
                break
            seen.add(cursor)
    return result


async def _get(client: httpx.AsyncClient, url: str, params: dict[str, Any],
               max_bytes: int) -> dict[str, Any]:
    try:
        async with client.stream("GET", url, params=params,
                                 headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise RegistryError(f"{url}: HTTP {response.status_code}")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise RegistryError(f"{url}: a page larger than {max_bytes} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise RegistryError(f"{url}: {type(exc).__name__}: {exc}") from None
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise RegistryError(f"{url}: the answer is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("servers"), list):
        raise RegistryError(f"{url}: the answer has no 'servers' list")
    return body


def _take_page(body: dict[str, Any], result: SyncResult, source: str) -> None:
    for i, item in enumerate(body["servers"]):
        label = f"page {result.pages} item {i}"
        if isinstance(item, dict) and isinstance(item.get("server"), dict):
            label += f" ({str(item['server'].get('name'))[:200]})"
        # a refused entry still moves the sync point: it is fetched again only when
        # its publisher fixes it (a new updatedAt), not on every sync
        meta = item.get("_meta") if isinstance(item, dict) else None
        official = meta.get(OFFICIAL_KEY) if isinstance(meta, dict) else None
        updated = official.get("updatedAt") if isinstance(official, dict) else None
        if isinstance(updated, str) and (result.newest is None or updated > result.newest):
            result.newest = updated
        try:
            result.entries += entries_from_document(item, source)
        except ServerJsonError as exc:
            result.rejected.append((label, str(exc)))
