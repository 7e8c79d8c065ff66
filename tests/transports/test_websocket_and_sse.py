"""WebSocket (both eras) and HTTP+SSE (2024-11-05) on a real uvicorn, via the combined app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import orjson
import pytest
import websockets

from mobius_rpc.client.session import ClientSession
from mobius_rpc.demo import build_demo_server
from mobius_rpc.transports.websocket import WebSocketClientStream
from tests.conftest import serve_asgi

pytestmark = pytest.mark.anyio

INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2024-11-05", "capabilities": {},
    "clientInfo": {"name": "t", "version": "1"}}}


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async with serve_asgi(build_demo_server().asgi_app().app) as address:
        yield address


@pytest.mark.parametrize("revision", ["2024-11-05", "2025-11-25", "2026-07-28"])
async def test_full_client_over_websocket(base: str, revision: str) -> None:
    async with websockets.connect(f"ws://{base}/ws", subprotocols=["mcp"]) as socket:
        assert socket.subprotocol == "mcp"
        async with anyio.create_task_group() as tg:
            async def elicit(params: dict[str, Any]) -> dict[str, Any]:
                return {"action": "accept", "content": {"name": "Wes"}}

            client = ClientSession(WebSocketClientStream(socket), elicitation=elicit)
            await client.start(tg)
            with anyio.fail_after(10):
                await client.initialize(revision)
                result = await client.call_tool("echo", {"text": "over ws"})
                assert result["content"][0]["text"] == "over ws"
                note = await client.read_resource("notes://todo")
                assert note["contents"][0]["text"] == "Write more tests."
                if revision != "2024-11-05":  # elicitation exists from 2025-06-18
                    asked = await client.call_tool("ask_user", {"question": "?"})
                    assert asked["content"][0]["text"] == "hello Wes, you like blue"
            client.close()


async def test_websocket_refusals(base: str) -> None:
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(f"ws://{base}/ws", subprotocols=["mcp"],
                                      origin="http://evil.example.com"):
            pass
    assert info.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(f"ws://{base}/ws"):  # no mcp subprotocol
            pass
    async with websockets.connect(f"ws://{base}/ws", subprotocols=["mcp"]) as socket:
        await socket.send("{broken")
        reply = orjson.loads(await socket.recv())
        assert reply["error"]["code"] == -32700
        await socket.send(orjson.dumps(INIT).decode())
        assert orjson.loads(await socket.recv())["result"]["protocolVersion"] == "2024-11-05"


async def test_http_sse_transport(base: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("GET", f"http://{base}/sse",
                                 headers={"Accept": "text/event-stream"}) as stream:
            lines = stream.aiter_lines()
            event = data = None
            with anyio.fail_after(5):
                async for line in lines:
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data = line[5:].strip()
                        break
            assert event == "endpoint" and data is not None
            assert data.startswith("/messages?session_id=")
            post = await client.post(f"http://{base}{data}", json=INIT)
            assert post.status_code == 202
            note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            assert (await client.post(f"http://{base}{data}", json=note)).status_code == 202
            call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"text": "sse"}}}
            assert (await client.post(f"http://{base}{data}", json=call)).status_code == 202
            replies: list[dict[str, Any]] = []
            with anyio.fail_after(5):
                async for line in lines:
                    if line.startswith("data:"):
                        replies.append(orjson.loads(line[5:]))
                        if len(replies) == 2:
                            break
            assert replies[0]["result"]["protocolVersion"] == "2024-11-05"
            assert replies[1]["result"]["content"][0]["text"] == "sse"
        unknown = await client.post(f"http://{base}/messages?session_id=nope", json=call)
        assert unknown.status_code == 404
