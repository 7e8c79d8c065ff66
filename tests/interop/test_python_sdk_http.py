"""The official Python SDK client over Streamable HTTP against our ASGI app on a real
uvicorn: the legacy session era and the stateless 2026-07-28 era."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

mcp = pytest.importorskip("mcp")
types = pytest.importorskip("mcp_types")

from mcp import Client  # noqa: E402

from mobius_rpc.demo import build_demo_server  # noqa: E402
from tests.conftest import serve_asgi  # noqa: E402

pytestmark = [pytest.mark.peers, pytest.mark.anyio]


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with serve_asgi(build_demo_server().http_app()) as base:
        yield f"http://{base}/mcp"


async def elicit(context: Any, params: Any) -> Any:
    return types.ElicitResult(action="accept", content={"name": "Lin", "color": "red"})


async def sample(context: Any, params: Any) -> Any:
    return types.CreateMessageResult(role="assistant", model="canned",
                                     content=types.TextContent(type="text", text="short"))


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_sdk_client_over_streamable_http(url: str, mode: str) -> None:
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    with anyio.fail_after(60):
        async with Client(url, mode=mode, elicitation_callback=elicit,
                          sampling_callback=sample) as client:
            assert client.protocol_version == ("2025-11-25" if mode == "legacy"
                                               else "2026-07-28")
            assert "echo" in {t.name for t in (await client.list_tools()).tools}
            assert (await client.call_tool("echo", {"text": "over http"})).content[0].text \
                == "over http"
            readme = await client.read_resource("mobius://readme")
            assert readme.contents[0].text.startswith("# Mobius")
            prompt = await client.get_prompt("greet", {"name": "Kim"})
            assert prompt.messages[1].content.text == "Hello, Kim!"
            asked = await client.call_tool("ask_user", {"question": "?"})
            assert asked.content[0].text == "hello Lin, you like red"
            summary = await client.call_tool("summarize", {"text": "t"})
            assert summary.content[0].text == "short"
            counted = await client.call_tool("slow_count", {"to": 3, "delay": 0},
                                             progress_callback=on_progress)
            assert counted.content[0].text == "counted to 3"
    assert progress == [1, 2, 3]
