"""A protected demo server and the JWKS it trusts, both on real uvicorn servers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from mobius_rpc.security.http_auth import ApiTokenVerifier, AuthenticatingApp
from mobius_rpc.security.jwks import JwksCache
from mobius_rpc.security.oauth import OAuthConfig, OAuthVerifier
from mobius_rpc.transports.http_client import StreamableHTTPClientStream
from tests.conftest import client_on

from .kit import KeyServer, claims_for, demo_app, serve_bound

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}}}
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@dataclass
class Env:
    """A protected demo server at ``base`` whose tokens ``issuer`` issues for ``resource``."""

    base: str
    issuer: str
    resource: str
    #: one client for the test's plain requests (a new one costs an SSL context)
    http: httpx.AsyncClient

    def claims(self, **overrides: Any) -> dict[str, Any]:
        return claims_for(self.issuer, self.resource, **overrides)

    async def post_initialize(self, token: str | None = None,
                              **headers: str) -> httpx.Response:
        """One Streamable HTTP initialize POST with ``Authorization: Bearer token``."""
        sent = dict(HEADERS, **headers)
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        return await self.http.post(f"{self.base}/mcp", json=INIT, headers=sent)

    async def call_tool(self, token: str, name: str, arguments: dict[str, Any]) -> Any:
        """A real ``tools/call`` over Streamable HTTP with the token, after initialize."""
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                stream = StreamableHTTPClientStream(
                    f"{self.base}/mcp", tg, headers={"Authorization": f"Bearer {token}"})
                async with client_on(stream, tg, "2025-11-25") as client:
                    result = await client.call_tool(name, arguments)
                tg.cancel_scope.cancel()
        return result


@dataclass
class JwksEnv(Env):
    """An :class:`Env` whose issuer is a :class:`KeyServer` the test controls."""

    key_server: KeyServer
    cache: JwksCache
    app: AuthenticatingApp


@asynccontextmanager
async def protected(document: dict[str, Any], *,
                    required_scopes: frozenset[str] = frozenset({"mcp:tools"}),
                    api_tokens: ApiTokenVerifier | None = None,
                    clock: Callable[[], float] = time.monotonic,
                    **cache_options: Any) -> AsyncIterator[JwksEnv]:
    """The demo behind OAuth (and API tokens when given), trusting the JWKS ``document``."""
    key_server = KeyServer(document)
    async with serve_bound(lambda _base: key_server) as (issuer, _):
        key_server.issuer = issuer
        cache = JwksCache(url=f"{issuer}/jwks", clock=clock, **cache_options)

        def build(base: str) -> AuthenticatingApp:
            config = OAuthConfig(issuer=issuer, resource=f"{base}/mcp",
                                 required_scopes=required_scopes,
                                 scopes_supported=("mcp:tools", "mcp:read", "mcp:admin"))
            return demo_app(oauth=OAuthVerifier(config, cache), api_tokens=api_tokens)

        async with serve_bound(build) as (base, app), httpx.AsyncClient(timeout=10) as http:
            yield JwksEnv(base, issuer, f"{base}/mcp", http, key_server, cache, app)
