"""A WebSocket authenticates once, at its handshake, and then carries many requests:
each of them must still stop when the credential expires.

A server secured with ``secure()`` (OAuth and API tokens, a real SQLite store)
on a real uvicorn; the security clock is the test's, so a token's expiry is
reached without waiting for it.  Over the open WebSocket the first call passes
and the call after the expiry is refused as unauthenticated; a fresh HTTP
request with the same JWT is a 401 too.  A JWT whose subject is a member acts with
the membership's role, looked at again on each request of the open connection.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest

from mobius_rpc.client.session import ClientSession
from mobius_rpc.core.errors import McpError
from mobius_rpc.security.admin import add_rule, create_organization
from mobius_rpc.security.middleware import UNAUTHENTICATED
from mobius_rpc.security.oauth import OAuthConfig, OAuthVerifier
from mobius_rpc.security.open import open_security_store
from mobius_rpc.security.policy import make_rule
from mobius_rpc.security.serving import secure
from mobius_rpc.security.store import AuditQuery, Membership, SecurityStore, User
from mobius_rpc.security.tokens import issue_token
from mobius_rpc.transports.websocket import WebSocketClientStream
from tests.conftest import client_on
from tests.security.support import build_server

from .conftest import TestKeys
from .env import HEADERS, INIT
from .kit import Clock, KeyServer, claims_for, jwks_of, mint, serve_bound

pytestmark = pytest.mark.anyio

CALL = {"name": "lookup", "arguments": {"key": "1"}}


@dataclass
class Secured:
    base: str
    issuer: str
    store: SecurityStore
    clock: Clock


@asynccontextmanager
async def secured(tmp_path: Path, keys: TestKeys) -> AsyncIterator[Secured]:
    clock = Clock(time.time())
    key_server = KeyServer(jwks_of(keys.rsa1))
    async with serve_bound(lambda _base: key_server) as (issuer, _), \
            open_security_store(f"sqlite:///{tmp_path / 'sec.db'}") as (_, store):
        key_server.issuer = issuer
        await store.create_user(User("u-owner", "owner", 0.0))
        await create_organization(store, "Acme", owner_user_id="u-owner", org_id="acme",
                                  now=0.0)
        # the JWT's subject is no Mobius user: a rule naming it lets it call
        await add_rule(store, make_rule("acme", "allow", "user:oauth:ada", "tools", "*",
                                        ("*",)))

        def build(base: str) -> object:
            config = OAuthConfig(issuer=issuer, resource=f"{base}/mcp", leeway=0)
            server = build_server()
            secure(server, store, oauth=OAuthVerifier(config, clock=clock), clock=clock)
            return server.asgi_app().app

        async with serve_bound(build) as (base, _):
            yield Secured(base, issuer, store, clock)


@asynccontextmanager
async def websocket(base: str, token: str) -> AsyncIterator[ClientSession]:
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            stream = await WebSocketClientStream.connect(
                f"ws://{base[7:]}/ws", additional_headers={"Authorization": f"Bearer {token}"})
            async with client_on(stream, tg, "2025-11-25") as session:
                yield session
            tg.cancel_scope.cancel()


async def test_a_jwt_stops_working_on_an_open_websocket_when_it_expires(
        tmp_path: Path, keys: TestKeys) -> None:
    async with secured(tmp_path, keys) as world:
        resource = f"{world.base}/mcp"
        token = mint(keys.rsa1, claims_for(world.issuer, resource, org="acme",
                                           exp=int(world.clock.now) + 60))
        async with websocket(world.base, token) as session:
            first = await session.request("tools/call", CALL)
            assert first["content"][0]["text"] == "value of 1"
            world.clock.now += 59
            assert (await session.request("tools/call", CALL))["isError"] is False
            world.clock.now += 2  # past exp
            with pytest.raises(McpError) as refused, anyio.fail_after(10):
                await session.request("tools/call", CALL)
            assert refused.value.code == UNAUTHENTICATED
            with pytest.raises(McpError) as listed, anyio.fail_after(10):
                await session.request("tools/list", {})
            assert listed.value.code == UNAUTHENTICATED
        async with httpx.AsyncClient(timeout=10) as http:
            again = await http.post(resource, json=INIT,
                                    headers={**HEADERS, "authorization": f"Bearer {token}"})
        assert again.status_code == 401
        assert 'error="invalid_token"' in again.headers["www-authenticate"]
        ok = await world.store.list_audit(AuditQuery(outcome="ok", method="tools/call"))
        assert [r.user for r in ok] == ["oauth:ada", "oauth:ada"]
        refusals = await world.store.list_audit(AuditQuery(outcome="denied",
                                                           method="tools/call"))
        assert len(refusals) == 1 and refusals[0].error_code == UNAUTHENTICATED


async def test_an_api_token_stops_on_an_open_websocket_at_its_expiry(
        tmp_path: Path, keys: TestKeys) -> None:
    async with secured(tmp_path, keys) as world:
        issued = await issue_token(world.store, user_id="u-owner", org_id="acme",
                                   expires_at=world.clock.now + 30)
        async with websocket(world.base, issued.token) as session:
            assert (await session.request("tools/call", CALL))["isError"] is False
            world.clock.now += 31
            with pytest.raises(McpError) as refused, anyio.fail_after(10):
                await session.request("tools/call", CALL)
            assert refused.value.code == UNAUTHENTICATED


async def test_a_jwt_members_role_is_looked_at_again_on_each_websocket_request(
        tmp_path: Path, keys: TestKeys) -> None:
    async with secured(tmp_path, keys) as world:
        await world.store.create_user(User("u-grace", "oauth:grace", 0.0))
        # a local user named like the subject is not who the token is
        await world.store.create_user(User("u-local", "grace", 0.0))
        await world.store.put_membership(Membership("acme", "u-local", "owner", 0.0))
        await world.store.put_membership(Membership("acme", "u-grace", "member", 0.0))
        token = mint(keys.rsa1, claims_for(world.issuer, f"{world.base}/mcp", org="acme",
                                           sub="grace", exp=int(world.clock.now) + 600))
        async with websocket(world.base, token) as session:
            listed = await session.request("tools/list", {})
            assert "lookup" in {tool["name"] for tool in listed["tools"]}
            assert (await session.request("tools/call", CALL))["isError"] is False
            # the membership goes while the connection stays open
            assert await world.store.delete_membership("acme", "u-grace")
            assert (await session.request("tools/list", {}))["tools"] == []
            with pytest.raises(McpError), anyio.fail_after(10):
                await session.request("tools/call", CALL)
            # back as a member, then disabled: refused as unauthenticated
            await world.store.put_membership(Membership("acme", "u-grace", "member", 0.0))
            assert (await session.request("tools/call", CALL))["isError"] is False
            assert await world.store.set_user_disabled("u-grace", True)
            with pytest.raises(McpError) as refused, anyio.fail_after(10):
                await session.request("tools/call", CALL)
            assert refused.value.code == UNAUTHENTICATED
        calls = await world.store.list_audit(AuditQuery(method="tools/call"))
        # the member acts under the user id, not the subject
        assert [(r.user, r.outcome) for r in calls] == [
            ("u-grace", "ok"), ("u-grace", "denied"), ("u-grace", "ok"), (None, "denied")]
