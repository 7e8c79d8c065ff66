"""The HTTP admin API on a real uvicorn, behind the security layer's authentication."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mobius_rpc.marketplace import Marketplace
from mobius_rpc.marketplace.api import market_app
from mobius_rpc.security.admin import create_organization, set_membership
from mobius_rpc.security.http_auth import AuthenticatingApp
from mobius_rpc.security.principal import Role
from mobius_rpc.security.store import MemorySecurityStore, User
from mobius_rpc.security.tokens import authenticate_token, issue_token

from ..conftest import serve_asgi
from .conftest import needs_node

pytestmark = pytest.mark.anyio
HELLO = "dev.mobius-rpc.curated/mcp-hello-world"


@pytest.fixture
async def api(market: Marketplace, security: MemorySecurityStore
              ) -> AsyncIterator[tuple[str, dict[str, str]]]:
    tokens: dict[str, str] = {}
    for user in ("ann", "bob", "cid"):
        await security.create_user(User(user, user, 0.0))
    await create_organization(security, "Acme", owner_user_id="ann", org_id="acme")
    await create_organization(security, "Globex", owner_user_id="cid", org_id="globex")
    await set_membership(security, "acme", "bob", Role.MEMBER)
    for user, org in (("ann", "acme"), ("bob", "acme"), ("cid", "globex")):
        tokens[user] = (await issue_token(security, user_id=user, org_id=org)).token

    async def verify(raw: str) -> Any:
        return await authenticate_token(security, raw)

    app = AuthenticatingApp(market_app(market), api_tokens=verify)
    async with serve_asgi(app) as address:
        yield f"http://{address}", tokens


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_every_route_needs_a_credential(api: tuple[str, dict[str, str]]) -> None:
    base, _ = api
    async with httpx.AsyncClient(base_url=base) as http:
        for method, path in (("GET", "/market/servers"), ("GET", "/market/sandbox"),
                             ("POST", "/market/orgs/acme/installations"),
                             ("DELETE", f"/market/orgs/acme/installations/{HELLO}")):
            assert (await http.request(method, path)).status_code == 401
            bad = await http.request(method, path, headers=auth("mbx_" + "x" * 40))
            assert bad.status_code == 401


async def test_browse_rate_and_refusals(api: tuple[str, dict[str, str]]) -> None:
    base, tokens = api
    async with httpx.AsyncClient(base_url=base, headers=auth(tokens["bob"])) as http:
        found = (await http.get("/market/servers", params={"q": "git", "limit": 5})).json()
        assert found["total"] >= 2 and all("git" in s["name"] for s in found["servers"])
        shown = (await http.get(f"/market/servers/{HELLO}")).json()
        assert shown["name"] == HELLO and shown["installable"]
        assert (await http.get("/market/servers/io.x/nope")).status_code == 404
        assert (await http.get("/market/servers", params={"sort": "price"})).status_code == 400
        rated = await http.put(f"/market/servers/{HELLO}/ratings", json={"stars": 4})
        assert rated.json()["average"] == 4 and rated.json()["count"] == 1
        again = await http.put(f"/market/servers/{HELLO}/ratings",
                               json={"stars": 2, "review": "edited"})
        assert again.json()["count"] == 1 and again.json()["reviews"][0]["user"] == "bob"
        assert (await http.put(f"/market/servers/{HELLO}/ratings",
                               json={"stars": 6})).status_code == 400
        assert (await http.put(f"/market/servers/{HELLO}/ratings",
                               content=b"{nope")).status_code == 400
        # a member may read but not install, nor touch another organization
        assert (await http.get("/market/orgs/acme/installations")).json() == []
        assert (await http.post("/market/orgs/acme/installations",
                                json={"name": HELLO})).status_code == 403
        assert (await http.get("/market/orgs/globex/installations")).status_code == 403
        assert (await http.post("/market/catalog", json={"servers": []})).status_code == 403
    async with httpx.AsyncClient(base_url=base, headers=auth(tokens["ann"])) as http:
        assert (await http.post("/market/orgs/globex/installations",
                                json={"name": HELLO})).status_code == 403
        missing = await http.post("/market/orgs/acme/installations",
                                  json={"name": "io.github.tumf/mcp-shell-server"})
        assert missing.status_code == 422 and missing.json()["missing"] == ["ALLOW_COMMANDS"]
        bad = await http.post("/market/catalog", json={"servers": [{"name": "x"}]})
        assert bad.status_code == 400 and "servers[0]" in bad.json()["error"]


@needs_node()
async def test_install_manage_and_uninstall_over_http(api: tuple[str, dict[str, str]],
                                                      home: Path) -> None:
    base, tokens = api
    async with httpx.AsyncClient(base_url=base, headers=auth(tokens["ann"]),
                                 timeout=300) as http:
        made = await http.post("/market/orgs/acme/installations", json={"name": HELLO})
        assert made.status_code == 200, made.text
        assert made.json()["installedBy"] == "ann"
        again = await http.post("/market/orgs/acme/installations", json={"name": HELLO})
        assert again.status_code == 409
        health = (await http.post(f"/market/orgs/acme/installations/{HELLO}/health")).json()
        assert health["status"] == "ok" and health["tools"] >= 1
        off = await http.patch(f"/market/orgs/acme/installations/{HELLO}",
                               json={"enabled": False})
        assert off.json()["enabled"] is False
        assert (await http.patch(f"/market/orgs/acme/installations/{HELLO}",
                                 json={"enabled": "no"})).status_code == 400
        gone = await http.delete(f"/market/orgs/acme/installations/{HELLO}")
        assert gone.status_code == 200
        assert (await http.get(f"/market/orgs/acme/installations/{HELLO}")).status_code == 404
    assert not any((home / "market").rglob("*.js"))
