"""Importing from a registry in the REST shape, against a small registry on 127.0.0.1."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mobius_rpc.marketplace import Marketplace, SearchQuery
from mobius_rpc.marketplace.registry import RegistryError, fetch_registry

from ..conftest import serve_asgi
from .test_catalog import GOOD

pytestmark = pytest.mark.anyio
OFFICIAL = "io.modelcontextprotocol.registry/official"


def server(i: int, version: str = "1.0.0") -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    doc["name"], doc["version"] = f"io.example/tool-{i:02d}", version
    doc["description"] = f"Example tool number {i}"
    doc["packages"][0]["version"] = version
    return doc


class Registry:
    """Serves ``items`` (ServerResponse objects) with cursor pages and updated_since."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.requests: list[dict[str, str]] = []
        self.fail = False

    def publish(self, doc: dict[str, Any], updated: str, status: str = "active") -> None:
        self.items = [i for i in self.items if (i["server"]["name"], i["server"]["version"])
                      != (doc["name"], doc["version"])]
        self.items.append({"server": doc, "_meta": {OFFICIAL: {
            "status": status, "updatedAt": updated, "publishedAt": updated, "isLatest": True}}})

    async def servers(self, request: Request) -> JSONResponse:
        params = dict(request.query_params)
        self.requests.append(params)
        if self.fail:
            return JSONResponse({"error": "down"}, 500)
        items = sorted(self.items, key=lambda i: i["_meta"][OFFICIAL]["updatedAt"])
        if "updated_since" in params:
            since = params["updated_since"]
            items = [i for i in items if i["_meta"][OFFICIAL]["updatedAt"] > since]
        start, limit = int(params.get("cursor", "0")), int(params.get("limit", "30"))
        page = items[start:start + limit]
        more = start + limit < len(items)
        return JSONResponse({"servers": page, "metadata": {
            "count": len(page), "nextCursor": str(start + limit) if more else None}})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v0.1/servers", self.servers)])


async def test_full_then_incremental_sync(market: Marketplace) -> None:
    registry = Registry()
    for i in range(250):
        registry.publish(server(i), f"2026-11-01T00:{i // 60:02d}:{i % 60:02d}Z")
    broken = server(999)
    broken.pop("description")
    registry.publish(broken, "2026-11-02T00:00:00Z")
    async with serve_asgi(registry.app()) as address:
        url = f"http://{address}"
        result = await market.import_registry(url)
        assert len(result.entries) == 250 and result.pages == 3
        assert len(result.rejected) == 1 and "io.example/tool-999" in result.rejected[0][0]
        assert "description" in result.rejected[0][1]
        assert all("updated_since" not in r for r in registry.requests)
        assert [r.get("cursor") for r in registry.requests] == [None, "100", "200"]
        assert (await market.search(SearchQuery(text="tool-07"))).items[0].version == "1.0.0"
        assert await market.store.get_sync(url) == "2026-11-02T00:00:00Z"
        # a new version and a deletion arrive; the next sync asks only for changes
        registry.publish(server(7, "1.1.0"), "2026-11-03T00:00:00Z")
        registry.publish(server(8), "2026-11-03T00:00:01Z", status="deleted")
        registry.requests.clear()
        again = await market.import_registry(url)
        assert registry.requests == [{"limit": "100", "updated_since": "2026-11-02T00:00:00Z"}]
        assert sorted(e.name for e in again.entries) == ["io.example/tool-07",
                                                         "io.example/tool-08"]
        assert market.entry("io.example/tool-07").version == "1.1.0"
        names = [e.name for e in (await market.search(SearchQuery(text="example tool",
                                                                   limit=100))).items]
        assert "io.example/tool-08" not in names and "io.example/tool-07" in names
        # what was imported is kept in the store for the next process
        fresh = Marketplace(market.store, home=market.home, box=market.box)
        assert await fresh.load_stored() == 251  # 250 + one new version
        registry.fail = True
        with pytest.raises(RegistryError, match="HTTP 500"):
            await market.import_registry(url)
    with pytest.raises(RegistryError, match="not an http"):
        await fetch_registry("file:///etc/passwd")


def test_cli_imports_a_file_and_searches(tmp_path: Path) -> None:
    env = {**os.environ, "MOBIUS_HOME": str(tmp_path / "home"),
           "MOBIUS_STORE": f"sqlite:///{tmp_path / 'store.db'}"}

    def mobius(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mobius_rpc", "market", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    good = tmp_path / "good.json"
    good.write_text(json.dumps({"servers": [server(1), server(2)]}))
    assert mobius("import", str(good)).returncode == 0
    found = json.loads(mobius("search", "io.example", "--json").stdout)
    assert {s["name"] for s in found["servers"]} == {"io.example/tool-01", "io.example/tool-02"}
    shown = json.loads(mobius("show", "io.example/tool-01", "--json").stdout)
    assert shown["inputs"][0]["key"] == "TOKEN" and shown["inputs"][0]["secret"]
    bad = tmp_path / "bad.json"
    broken = server(3)
    broken["packages"][0]["transport"] = {}
    bad.write_text(json.dumps(broken))
    refused = mobius("import", str(bad))
    assert refused.returncode == 2 and "packages[0].transport.type" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.splitlines()) == 1
    text = mobius("search", "--category", "databases", "--sort", "installs").stdout
    assert "mcp-alchemy" in text
    missing = mobius("install", "acme", "io.github.runekaagaard/mcp-alchemy")
    assert missing.returncode == 2 and "DB_URL" in missing.stderr
    assert not (tmp_path / "home" / "market").exists() or not any(
        (tmp_path / "home" / "market").rglob("*"))
