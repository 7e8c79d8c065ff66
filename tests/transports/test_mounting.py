"""The transports mounted in a parent Starlette application, as the README shows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from mobius_rpc.demo import build_demo_server
from tests.conftest import serve_asgi
from tests.transports.test_streamable_http import ACCEPT, legacy_session

pytestmark = pytest.mark.anyio


async def test_mounted_under_a_prefix() -> None:
    transports = build_demo_server().asgi_app()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with transports.lifespan():
            yield

    async def health(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    parent = Starlette(routes=[Route("/health", health),
                               Mount("/tools", app=transports.app)], lifespan=lifespan)
    async with serve_asgi(parent) as base, httpx.AsyncClient(timeout=10) as client:
        root = f"http://{base}"
        assert (await client.get(f"{root}/health")).text == "ok"
        url = f"{root}/tools/mcp"
        headers = await legacy_session(client, url)
        echoed = await client.post(url, headers=headers, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "mounted"}}})
        assert echoed.json()["result"]["content"][0]["text"] == "mounted"
        # Paths that only start like the endpoint, and the other transports,
        # go through the Starlette routes, not the MCP endpoint.
        assert (await client.post(f"{root}/tools/mcpx", headers=ACCEPT, json={})).status_code \
            == 404
        assert (await client.post(f"{root}/tools/mcp/x", headers=ACCEPT, json={})).status_code \
            == 404
        sse = await client.post(f"{root}/tools/messages?session_id=nope", headers=ACCEPT,
                                json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert sse.status_code in (400, 404)
        # Unmounted, the endpoint answers at its own path.
        assert (await client.post(f"{root}/mcp", headers=ACCEPT, json={})).status_code == 404
