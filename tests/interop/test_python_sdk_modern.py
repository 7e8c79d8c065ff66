"""The official Python SDK client (PyPI ``mcp`` 2.x) drives ``mobius serve --stdio``
in the modern era (2026-07-28): discover, tools, a resource, and an
elicitation and a sampling round trip via multi-round-trip requests.

``mcp`` is an external peer here (the ``peers`` extra), never a dependency.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest

mcp = pytest.importorskip("mcp")
types = pytest.importorskip("mcp_types")

from mcp import Client, StdioServerParameters  # noqa: E402

pytestmark = [pytest.mark.peers, pytest.mark.anyio]

SERVER = StdioServerParameters(command=sys.executable,
                                args=["-m", "mobius_rpc", "serve", "--stdio"])


async def elicit(context: Any, params: Any) -> Any:
    assert params.message == "What is your name?"
    return types.ElicitResult(action="accept", content={"name": "Grace", "color": "green"})


async def sample(context: Any, params: Any) -> Any:
    return types.CreateMessageResult(role="assistant", model="canned",
                                     content=types.TextContent(type="text", text="one line"))


@pytest.mark.parametrize("mode", ["auto", "2026-07-28"])
async def test_sdk_client_in_the_modern_era(mode: str) -> None:
    with anyio.fail_after(60):
        async with Client(SERVER, mode=mode, elicitation_callback=elicit,
                          sampling_callback=sample) as client:
            assert client.protocol_version == "2026-07-28"
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"echo", "add", "ask_user", "summarize"} <= tools
            echoed = await client.call_tool("echo", {"text": "modern"})
            assert echoed.content[0].text == "modern"
            added = await client.call_tool("add", {"a": 1, "b": 2})
            assert added.structured_content == {"result": 3}
            readme = await client.read_resource("mobius://readme")
            assert readme.contents[0].text.startswith("# Mobius")
            asked = await client.call_tool("ask_user", {"question": "What is your name?"})
            assert asked.content[0].text == "hello Grace, you like green"
            summary = await client.call_tool("summarize", {"text": "a long text"})
            assert summary.content[0].text == "one line"


async def test_sdk_client_auto_mode_discovers_the_server() -> None:
    with anyio.fail_after(60):
        async with Client(SERVER, mode="auto") as client:
            assert client.server_info is not None and client.server_info.name == "mobius-demo"
            assert client.server_capabilities.tools is not None
