"""The official Python SDK client (PyPI ``mcp`` 2.x), a client we did not write,
drives ``mobius serve --stdio`` over a real subprocess in both eras:

* ``mode="legacy"``: the initialize handshake (2025-11-25), server->client
  sampling/elicitation requests, progress and logging notifications;
* ``mode="auto"`` (the SDK probes ``server/discover``) and the pinned modern
  revision: 2026-07-28, with sampling and elicitation as multi-round-trip
  requests.

``mcp`` is an external peer (the ``peers`` extra), never a runtime dependency.
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
                                args=["-m", "mobius_rpc", "serve", "--fixture", "demo", "--stdio"])
MODES = ["legacy", "auto", "2026-07-28"]


async def elicit(context: Any, params: Any) -> Any:
    assert params.message == "What is your name?"
    return types.ElicitResult(action="accept", content={"name": "Grace", "color": "green"})


async def sample(context: Any, params: Any) -> Any:
    assert "a long text" in params.messages[0].content.text
    return types.CreateMessageResult(role="assistant", model="canned",
                                     content=types.TextContent(type="text", text="one line"))


@pytest.mark.parametrize("mode", MODES)
async def test_tools_resources_prompts_completion(mode: str) -> None:
    with anyio.fail_after(60):
        async with Client(SERVER, mode=mode) as client:
            expected = "2025-11-25" if mode == "legacy" else "2026-07-28"
            assert client.protocol_version == expected
            if mode != "2026-07-28":  # a pinned revision skips discovery: no serverInfo yet
                assert client.server_info is not None
                assert client.server_info.name == "mobius-demo"
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert {"echo", "add", "text_stats", "ask_user", "summarize"} <= set(tools)
            assert tools["text_stats"].output_schema is not None
            assert (await client.call_tool("echo", {"text": "héllo"})).content[0].text == "héllo"
            added = await client.call_tool("add", {"a": 1, "b": 2})
            assert added.structured_content == {"result": 3}
            stats = await client.call_tool("text_stats", {"text": "one two"})
            assert stats.structured_content == {"words": 2, "lines": 1, "characters": 7}
            readme = await client.read_resource("mobius://readme")
            assert readme.contents[0].text.startswith("# Mobius")
            pixel = await client.read_resource("mobius://pixel.png")
            assert pixel.contents[0].blob
            templates = (await client.list_resource_templates()).resource_templates
            assert [t.uri_template for t in templates] == ["notes://{name}"]
            note = await client.read_resource("notes://todo")
            assert note.contents[0].text == "Write more tests."
            prompts = {p.name for p in (await client.list_prompts()).prompts}
            assert prompts == {"review_code", "greet"}
            prompt = await client.get_prompt("review_code", {"code": "x = 1", "language": "go"})
            assert "x = 1" in prompt.messages[0].content.text
            assert "go" in prompt.messages[0].content.text
            done = await client.complete(types.PromptReference(type="ref/prompt",
                                                               name="review_code"),
                                         {"name": "language", "value": "ja"})
            assert done.completion.values == ["java", "javascript"]
            names = await client.complete(
                types.ResourceTemplateReference(type="ref/resource", uri="notes://{name}"),
                {"name": "name", "value": "w"})
            assert names.completion.values == ["welcome"]


@pytest.mark.parametrize("mode", MODES)
async def test_sampling_and_elicitation_round_trips(mode: str) -> None:
    with anyio.fail_after(60):
        async with Client(SERVER, mode=mode, elicitation_callback=elicit,
                          sampling_callback=sample) as client:
            asked = await client.call_tool("ask_user", {"question": "What is your name?"})
            assert asked.content[0].text == "hello Grace, you like green"
            summary = await client.call_tool("summarize", {"text": "a long text"})
            assert summary.content[0].text == "one line"


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_progress_and_logging_in_the_legacy_era() -> None:
    progress: list[float] = []
    logs: list[Any] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def on_log(params: Any) -> None:
        logs.append(params.data)

    with anyio.fail_after(60):
        async with Client(SERVER, mode="legacy", logging_callback=on_log) as client:
            await client.set_logging_level("debug")
            result = await client.call_tool("slow_count", {"to": 3, "delay": 0},
                                            progress_callback=on_progress)
            assert result.content[0].text == "counted to 3"
            with anyio.fail_after(5):
                while len(logs) < 3:
                    await anyio.sleep(0.01)
    assert progress == [1, 2, 3]
    assert logs == ["counted 1", "counted 2", "counted 3"]
