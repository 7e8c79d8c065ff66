"""Every transport tells a handler where its request came from (``Context.transport``).

A tool that reports its ``TransportContext`` is called over the memory pair,
a real stdio subprocess, and Streamable HTTP (both eras), HTTP+SSE and
WebSocket on a real uvicorn: the kind, the headers of the very request that
carried the call, the peer's address, the stdio process's identity.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from mobius_rpc import Context, Server
from mobius_rpc.transports.http_client import HttpSseClientStream, StreamableHTTPClientStream
from mobius_rpc.transports.websocket import WebSocketClientStream

from ..conftest import client_on, connect, connect_stdio, serve_asgi

pytestmark = pytest.mark.anyio

SCRIPT = Path(__file__).with_name("context_server.py")


def build() -> Server:
    server = Server("ctx")

    @server.tool()
    def whoami(ctx: Context) -> dict[str, Any]:
        """Where this request came from."""
        t = ctx.transport
        return {"kind": t.kind.value, "remote": list(t.remote) if t.remote else None,
                "probe": t.header("X-Probe"), "session": t.session_id,
                "pid": t.process.pid if t.process else None,
                "user": t.process.user if t.process else None}

    return server


async def _whoami(client: Any) -> dict[str, Any]:
    result = await client.call_tool("whoami", {})
    value: dict[str, Any] = orjson.loads(result["content"][0]["text"])
    return value


async def test_memory() -> None:
    async with connect(build()) as client:
        seen = await _whoami(client)
    assert seen["kind"] == "memory" and seen["probe"] is None and seen["remote"] is None


async def test_stdio_names_the_server_process_and_its_user() -> None:
    async with connect_stdio([sys.executable, str(SCRIPT)]) as client:
        seen = await _whoami(client)
    assert seen["kind"] == "stdio"
    assert isinstance(seen["pid"], int) and seen["pid"] != os.getpid()
    assert seen["user"]  # the OS user the server runs as
    assert seen["remote"] is None and seen["probe"] is None


@pytest.mark.parametrize("revision", ["2025-11-25", "2026-07-28"])
async def test_streamable_http_gives_each_request_its_own_headers(revision: str) -> None:
    async with serve_asgi(build().asgi_app().app) as base, anyio.create_task_group() as tg:
        stream = StreamableHTTPClientStream(f"http://{base}/mcp", tg)
        async with client_on(stream, tg, revision) as client:
            stream.headers["X-Probe"] = "first"
            first = await _whoami(client)
            stream.headers["X-Probe"] = "second"
            second = await _whoami(client)
        tg.cancel_scope.cancel()
    assert first["kind"] == second["kind"] == "streamable-http"
    assert (first["probe"], second["probe"]) == ("first", "second")
    assert first["remote"][0] == "127.0.0.1"
    if revision == "2026-07-28":
        assert first["session"] is None
    else:
        assert first["session"] and first["session"] == second["session"]


async def test_http_sse_gives_each_post_its_own_headers() -> None:
    async with serve_asgi(build().asgi_app().app) as base, anyio.create_task_group() as tg:
        stream = HttpSseClientStream(f"http://{base}/sse", tg)
        await stream.start()
        async with client_on(stream, tg, "2024-11-05") as client:
            stream.headers["X-Probe"] = "posted"
            seen = await _whoami(client)
        tg.cancel_scope.cancel()
    assert seen["kind"] == "http+sse" and seen["probe"] == "posted"
    assert seen["session"] and seen["remote"][0] == "127.0.0.1"


async def test_websocket_names_the_upgrade_request() -> None:
    async with serve_asgi(build().asgi_app().app) as base, anyio.create_task_group() as tg:
        stream = await WebSocketClientStream.connect(f"ws://{base}/ws",
                                                     additional_headers={"X-Probe": "ws"})
        async with client_on(stream, tg, "2025-06-18") as client:
            seen = await _whoami(client)
        tg.cancel_scope.cancel()
    assert seen["kind"] == "websocket" and seen["probe"] == "ws"
    assert seen["remote"][0] == "127.0.0.1"


async def test_a_raw_stateless_post_reports_its_headers() -> None:
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}, "_meta": meta}}
    async with serve_asgi(build().asgi_app().app) as base:
        async with httpx.AsyncClient() as http:
            reply = await http.post(f"http://{base}/mcp", content=orjson.dumps(body), headers={
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call",
                "Mcp-Name": "whoami", "X-Probe": "raw"})
    assert reply.status_code == 200, reply.text
    assert orjson.loads(reply.json()["result"]["content"][0]["text"])["probe"] == "raw"
