"""The gateway with peers we did not write: server-everything (npm) as the
upstream, the official Python SDK client downstream of ``mobius serve --stdio
--gateway``, in both eras; and our own server as a Streamable HTTP upstream in
a real uvicorn, re-served over every network transport in both eras."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from mobius_rpc.client.session import ClientSession
from mobius_rpc.gateway import Gateway
from mobius_rpc.transports.http_client import HttpSseClientStream, StreamableHTTPClientStream
from mobius_rpc.transports.websocket import WebSocketClientStream
from tests.conftest import client_on, serve_asgi
from tests.external.conftest import npm_servers  # noqa: F401 - a fixture

from .conftest import FAST, local_server
from .upstream_app import build

mcp = pytest.importorskip("mcp")
types = pytest.importorskip("mcp_types")
from mcp import Client, StdioServerParameters  # noqa: E402

pytestmark = [pytest.mark.anyio, pytest.mark.peers]

EVERYTHING = "@modelcontextprotocol/server-everything"


def _gateway_server(tmp_path: Path, scripts: dict[str, Path]) -> StdioServerParameters:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {
        "everything": {"command": "node", "args": [str(scripts[EVERYTHING]), "stdio"]}}}))
    return StdioServerParameters(command=sys.executable, args=[
        "-m", "mobius_rpc", "serve", "--stdio", "--gateway", str(config),
        "--gateway-pins", "off"])


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_sdk_client_gets_everythings_sampling_and_elicitation(
        mode: str, tmp_path: Path, npm_servers: dict[str, Path]) -> None:  # noqa: F811
    asked: list[Any] = []

    async def sample(context: Any, params: Any) -> Any:
        asked.append(params)
        return types.CreateMessageResult(role="assistant", model="sdk-model",
                                         content=types.TextContent(type="text", text="Paris"))

    async def elicit(context: Any, params: Any) -> Any:
        asked.append(params)
        return types.ElicitResult(action="accept", content={"name": "Ada", "check": True,
                                                            "email": "ada@example.org"})

    with anyio.fail_after(90):
        async with Client(_gateway_server(tmp_path, npm_servers), mode=mode,
                          sampling_callback=sample, elicitation_callback=elicit) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            # the demo's own tools and everything's, namespaced, side by side
            assert {"echo", "everything__echo", "everything__trigger-sampling-request",
                    "everything__trigger-elicitation-request"} <= tools
            echoed = await client.call_tool("everything__echo", {"message": "hi"})
            assert echoed.content[0].text == "Echo: hi"
            sampled = await client.call_tool("everything__trigger-sampling-request",
                                             {"prompt": "capital of France?", "maxTokens": 9})
            assert "Paris" in sampled.content[0].text and "sdk-model" in sampled.content[0].text
            elicited = await client.call_tool("everything__trigger-elicitation-request", {})
            report = "\n".join(c.text for c in elicited.content if c.type == "text")
            assert "- Name: Ada" in report and "- Email: ada@example.org" in report
    assert "capital of France?" in asked[0].messages[0].content.text
    assert asked[-1].requested_schema["required"] == ["name"]


@pytest.mark.parametrize("kind", ["http", "sse", "ws"])
@pytest.mark.parametrize("revision", ["2025-11-25", "2026-07-28"])
async def test_http_upstream_over_every_downstream_transport(kind: str, revision: str) -> None:
    if revision == "2026-07-28" and kind == "sse":
        pytest.skip("HTTP+SSE is a legacy transport")
    upstream = build("web")
    front = local_server()
    steps: list[float] = []

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        return {"action": "accept", "content": {"answer": "green"}}

    async def progress(value: float, total: float | None, message: str | None) -> None:
        steps.append(value)

    with anyio.fail_after(60):
        async with serve_asgi(upstream.asgi_app().app) as upstream_base:
            gateway = Gateway({"web": {"type": "http", "url": f"http://{upstream_base}/mcp"}},
                              options=FAST).attach(front)
            try:
                async with serve_asgi(front.asgi_app().app) as base, \
                        anyio.create_task_group() as tg:
                    stream: Any
                    if kind == "http":
                        stream = StreamableHTTPClientStream(f"http://{base}/mcp", tg)
                    elif kind == "sse":
                        stream = HttpSseClientStream(f"http://{base}/sse", tg)
                        await stream.start()
                    else:
                        stream = await WebSocketClientStream.connect(f"ws://{base}/ws")
                    async with client_on(stream, tg, revision,
                                         elicitation=elicitation) as client:
                        await _exercise(client, steps, progress)
                    tg.cancel_scope.cancel()
            finally:
                await gateway.aclose()


async def _exercise(client: ClientSession, steps: list[float], progress: Any) -> None:
    names = [t["name"] for t in (await client.list_tools())["tools"]]
    assert {"local_echo", "web__echo", "web__ask"} <= set(names)
    got = await client.call_tool("web__echo", {"text": "x"})
    assert got["content"][0]["text"] == "web:x"
    got = await client.request("tools/call", {"name": "web__slow", "arguments": {}},
                               on_progress=progress)
    assert got["content"][0]["text"] == "slow done" and steps == [1, 2, 3]
    got = await client.call_tool("web__ask", {"question": "colour?"})
    assert got["content"][0]["text"] == "accept:green"
    read = await client.read_resource("web+mem://notes/1")
    assert read["contents"][0]["text"] == "first note"
