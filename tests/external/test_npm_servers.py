"""Our ``Client`` against the reference MCP servers published on npm.

Each server is the real package (pinned in ``node/package.json``), started as a
child process over stdio.  They are TypeScript-SDK servers that only speak the
legacy era: ``server/discover`` gets -32601, so the client settles on
``initialize`` at 2025-11-25.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest

from mobius_rpc.client import Client, StdioTarget
from mobius_rpc.core.errors import McpError
from mobius_rpc.core.revisions import Era

pytestmark = [pytest.mark.anyio, pytest.mark.peers]

EVERYTHING = "@modelcontextprotocol/server-everything"
FILESYSTEM = "@modelcontextprotocol/server-filesystem"
MEMORY = "@modelcontextprotocol/server-memory"
THINKING = "@modelcontextprotocol/server-sequential-thinking"

# Each test's whole conversation, process start included, must fit in this.
DEADLINE = 30


def node(script: Path, *args: str, env: dict[str, str] | None = None) -> StdioTarget:
    return StdioTarget("node", (str(script), *args), env=env)


def texts(result: dict[str, Any]) -> list[str]:
    return [block["text"] for block in result["content"] if block.get("type") == "text"]


def assert_legacy(client: Client, name: str) -> None:
    assert client.era is Era.LEGACY
    assert client.protocol_version == "2025-11-25"
    assert client.server_info["name"] == name


# ----------------------------------------------------------- server-everything


async def test_everything_tools(npm_servers: dict[str, Path]) -> None:
    with anyio.fail_after(DEADLINE):
        async with Client(node(npm_servers[EVERYTHING], "stdio"), timeout=20) as client:
            assert_legacy(client, "mcp-servers/everything")
            tools = {tool["name"]: tool for tool in await client.list_tools()}
            assert {"echo", "get-sum", "get-structured-content",
                    "trigger-long-running-operation"} <= set(tools)
            # Tools that need a client capability are registered only when the
            # client declares it; this client declared none.
            assert not {"trigger-sampling-request", "trigger-elicitation-request",
                        "get-roots-list"} & set(tools)
            assert tools["echo"]["inputSchema"]["required"] == ["message"]

            echoed = await client.call_tool("echo", {"message": "über mobius ✓"})
            assert texts(echoed) == ["Echo: über mobius ✓"]
            assert not echoed.get("isError")

            summed = await client.call_tool("get-sum", {"a": 2, "b": 40})
            assert texts(summed) == ["The sum of 2 and 40 is 42."]

            weather = await client.call_tool("get-structured-content", {"location": "Chicago"})
            jsonschema.validate(weather["structuredContent"],
                                tools["get-structured-content"]["outputSchema"])
            assert json.loads(texts(weather)[0]) == weather["structuredContent"]

            # Arguments that break the input schema: a tool execution error
            # (isError), as 2025-11-25 asks, not a protocol error.
            refused = await client.call_tool("get-sum", {"a": "two"})
            assert refused.get("isError") is True
            assert "get-sum" in texts(refused)[0]


async def test_everything_unknown_tool(npm_servers: dict[str, Path]) -> None:
    """The spec calls an unknown tool a protocol error (-32602); this server (its
    SDK's McpServer) answers with an ``isError`` result that quotes -32602
    instead.  Either way the client must hand it back, not hang or crash."""
    with anyio.fail_after(DEADLINE):
        async with Client(node(npm_servers[EVERYTHING], "stdio"), timeout=20) as client:
            try:
                result = await client.call_tool("no-such-tool", {})
            except McpError as exc:
                assert exc.code == -32602
            else:
                assert result.get("isError") is True
                assert "no-such-tool" in texts(result)[0] and "-32602" in texts(result)[0]
            assert texts(await client.call_tool("echo", {"message": "still here"})) \
                == ["Echo: still here"]


async def test_everything_sampling_uses_our_answer(npm_servers: dict[str, Path]) -> None:
    asked: list[dict[str, Any]] = []

    async def sampler(params: dict[str, Any]) -> dict[str, Any]:
        asked.append(params)
        return {"role": "assistant", "model": "mobius-test-model",
                "content": {"type": "text", "text": "Paris, from the sampling callback"},
                "stopReason": "endTurn"}

    with anyio.fail_after(DEADLINE):
        async with Client(node(npm_servers[EVERYTHING], "stdio"), sampling=sampler,
                          timeout=20) as client:
            tools = {tool["name"] for tool in await client.list_tools()}
            assert "trigger-sampling-request" in tools
            result = await client.call_tool("trigger-sampling-request",
                                            {"prompt": "capital of France?", "maxTokens": 17})
    assert len(asked) == 1
    request = asked[0]
    assert request["maxTokens"] == 17
    assert request["messages"][0]["role"] == "user"
    assert "capital of France?" in request["messages"][0]["content"]["text"]
    # The tool reports the CreateMessageResult it got back from us.
    head, _, body = texts(result)[0].partition("\n")
    assert head.startswith("LLM sampling result")
    echoed = json.loads(body)
    assert echoed["model"] == "mobius-test-model"
    assert echoed["content"] == {"type": "text", "text": "Paris, from the sampling callback"}


async def test_everything_elicitation_uses_our_answer(npm_servers: dict[str, Path]) -> None:
    asked: list[dict[str, Any]] = []
    answers = iter([
        {"action": "accept", "content": {"name": "Ada Lovelace", "check": True,
                                         "email": "ada@example.org", "integer": 7}},
        {"action": "decline"},
    ])

    async def elicitor(params: dict[str, Any]) -> dict[str, Any]:
        asked.append(params)
        return next(answers)

    with anyio.fail_after(DEADLINE):
        async with Client(node(npm_servers[EVERYTHING], "stdio"), elicitation=elicitor,
                          timeout=20) as client:
            tools = {tool["name"] for tool in await client.list_tools()}
            assert {"trigger-elicitation-request", "trigger-url-elicitation"} <= tools
            accepted = await client.call_tool("trigger-elicitation-request", {})
            declined = await client.call_tool("trigger-elicitation-request", {})
    assert len(asked) == 2
    schema = asked[0]["requestedSchema"]
    assert schema["type"] == "object" and schema["required"] == ["name"]
    assert schema["properties"]["email"]["format"] == "email"
    report = "\n".join(texts(accepted))
    assert "- Name: Ada Lovelace" in report
    assert "- Agreed to terms: true" in report
    assert "- Email: ada@example.org" in report
    assert "- Favorite Integer: 7" in report
    assert "declined" in "\n".join(texts(declined))


async def test_everything_progress_reaches_our_callback(npm_servers: dict[str, Path]) -> None:
    steps: list[tuple[float, float | None, str | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        steps.append((value, total, message))

    with anyio.fail_after(DEADLINE):
        async with Client(node(npm_servers[EVERYTHING], "stdio"), timeout=20) as client:
            result = await client.call_tool("trigger-long-running-operation",
                                            {"duration": 0.3, "steps": 3},
                                            on_progress=progress)
    assert texts(result) == ["Long running operation completed. Duration: 0.3 seconds, "
                             "Steps: 3."]
    assert [(value, total) for value, total, _ in steps] == [(1, 3), (2, 3), (3, 3)]


async def test_everything_roots_come_from_our_callback(npm_servers: dict[str, Path],
                                                       tmp_path: Path) -> None:
    async def roots() -> list[dict[str, Any]]:
        return [{"uri": tmp_path.as_uri(), "name": "mobius workspace"}]

    with anyio.fail_after(DEADLINE):
        async with Client(node(npm_servers[EVERYTHING], "stdio"), roots=roots,
                          timeout=20) as client:
            result = await client.call_tool("get-roots-list", {})
    report = texts(result)[0]
    assert "mobius workspace" in report and tmp_path.as_uri() in report


async def test_everything_resources(npm_servers: dict[str, Path]) -> None:
    with anyio.fail_after(DEADLINE):
        async with Client(node(npm_servers[EVERYTHING], "stdio"), timeout=20) as client:
            assert client.server_capabilities["resources"]["subscribe"] is True
            resources = {r["uri"]: r for r in await client.list_resources()}
            features = "demo://resource/static/document/features.md"
            assert features in resources and resources[features]["mimeType"] == "text/markdown"
            read = await client.read_resource(features)
            (content,) = read["contents"]
            assert content["uri"] == features and content["mimeType"] == "text/markdown"
            assert content["text"].startswith("# Everything Server - Features")

            templates = {t["uriTemplate"] for t in await client.list_resource_templates()}
            assert "demo://resource/dynamic/text/{resourceId}" in templates
            dynamic = await client.read_resource("demo://resource/dynamic/text/3")
            assert dynamic["contents"][0]["text"].startswith("Resource 3:")


async def test_everything_prompts_and_completion(npm_servers: dict[str, Path]) -> None:
    with anyio.fail_after(DEADLINE):
        async with Client(node(npm_servers[EVERYTHING], "stdio"), timeout=20) as client:
            prompts = {p["name"]: p for p in await client.list_prompts()}
            assert {"simple-prompt", "args-prompt", "resource-prompt"} <= set(prompts)
            assert [a["name"] for a in prompts["args-prompt"]["arguments"]] == ["city", "state"]

            simple = await client.get_prompt("simple-prompt")
            assert simple["messages"][0]["content"]["text"] \
                == "This is a simple prompt without arguments."
            weather = await client.get_prompt("args-prompt", {"city": "Paris", "state": "TX"})
            assert weather["messages"] == [{"role": "user", "content": {
                "type": "text", "text": "What's weather in Paris, TX?"}}]
            embedded = await client.get_prompt("resource-prompt",
                                               {"resourceType": "Text", "resourceId": "2"})
            resource = embedded["messages"][1]["content"]
            assert resource["type"] == "resource"
            assert resource["resource"]["uri"] == "demo://resource/dynamic/text/2"

            completed = await client.complete({"type": "ref/prompt",
                                               "name": "completable-prompt"},
                                              "department", "Eng")
            assert completed["completion"]["values"] == ["Engineering"]


# ---------------------------------------------------------- server-filesystem


async def test_filesystem_write_then_read(npm_servers: dict[str, Path], tmp_path: Path) -> None:
    allowed = tmp_path.resolve()
    target = allowed / "notes" / "hello.txt"
    target.parent.mkdir()
    body = "first line\nsecond line — with a dash\n"
    with anyio.fail_after(DEADLINE):
        async with Client(node(npm_servers[FILESYSTEM], str(allowed)), timeout=20) as client:
            assert_legacy(client, "secure-filesystem-server")
            tools = {tool["name"] for tool in await client.list_tools()}
            assert {"write_file", "read_text_file", "list_directory"} <= tools

            wrote = await client.call_tool("write_file", {"path": str(target), "content": body})
            assert not wrote.get("isError"), wrote
            assert target.read_text() == body  # really on disk

            read = await client.call_tool("read_text_file", {"path": str(target)})
            assert texts(read) == [body]
            assert read["structuredContent"] == {"content": body}

            head = await client.call_tool("read_text_file", {"path": str(target), "head": 1})
            assert texts(head) == ["first line"]

            listing = await client.call_tool("list_directory", {"path": str(target.parent)})
            assert texts(listing) == ["[FILE] hello.txt"]

            outside = await client.call_tool("read_text_file", {"path": "/etc/hostname"})
            assert outside.get("isError") is True
            assert "Access denied" in texts(outside)[0]


async def test_filesystem_allowed_directories_follow_our_roots(
        npm_servers: dict[str, Path], tmp_path: Path) -> None:
    """Started without a directory, the server asks for roots/list and allows
    exactly what our callback answers; after notifications/roots/list_changed
    it asks again."""
    first, second = (tmp_path / "first").resolve(), (tmp_path / "second").resolve()
    first.mkdir()
    second.mkdir()
    current = [first]

    async def roots() -> list[dict[str, Any]]:
        return [{"uri": path.as_uri(), "name": path.name} for path in current]

    async def allowed(client: Client, expected: Path) -> str:
        while True:  # the server fetches roots in the background after init
            result = await client.call_tool("list_allowed_directories", {})
            if str(expected) in texts(result)[0]:
                return texts(result)[0]
            await anyio.sleep(0.05)

    with anyio.fail_after(DEADLINE):
        async with Client(node(npm_servers[FILESYSTEM]), roots=roots, timeout=20) as client:
            assert str(second) not in await allowed(client, first)
            current[:] = [second]
            await client.notify("notifications/roots/list_changed")
            assert str(first) not in await allowed(client, second)
            wrote = await client.call_tool("write_file", {"path": str(second / "r.txt"),
                                                          "content": "via roots"})
            assert not wrote.get("isError"), wrote
    assert (second / "r.txt").read_text() == "via roots"


# -------------------------------------------------------------- server-memory


async def test_memory_graph_round_trip(npm_servers: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "graph.jsonl"
    target = node(npm_servers[MEMORY], env={"MEMORY_FILE_PATH": str(store)})
    entities = [
        {"name": "Ada Lovelace", "entityType": "person",
         "observations": ["wrote the first published program"]},
        {"name": "Analytical Engine", "entityType": "machine", "observations": []},
    ]
    relation = {"from": "Ada Lovelace", "to": "Analytical Engine",
                "relationType": "programmed"}
    with anyio.fail_after(DEADLINE):
        async with Client(target, timeout=20) as client:
            assert_legacy(client, "memory-server")
            tools = {tool["name"] for tool in await client.list_tools()}
            assert {"create_entities", "create_relations", "read_graph",
                    "search_nodes"} <= tools
            created = await client.call_tool("create_entities", {"entities": entities})
            assert created["structuredContent"] == {"entities": entities}
            related = await client.call_tool("create_relations", {"relations": [relation]})
            assert related["structuredContent"] == {"relations": [relation]}

            graph = await client.call_tool("read_graph", {})
            assert graph["structuredContent"] == {"entities": entities, "relations": [relation]}
            assert json.loads(texts(graph)[0]) == graph["structuredContent"]

            found = await client.call_tool("search_nodes", {"query": "published"})
            assert [e["name"] for e in found["structuredContent"]["entities"]] \
                == ["Ada Lovelace"]

            (resource,) = [r for r in await client.list_resources()
                           if r["uri"] == "memory://knowledge-graph"]
            assert resource["mimeType"] == "application/json"
            read = await client.read_resource("memory://knowledge-graph")
            assert json.loads(read["contents"][0]["text"])["relations"] == [relation]

        # The graph is in the file: a new server process reads it back.
        records = [json.loads(line) for line in store.read_text().splitlines()]
        assert {r["type"] for r in records} == {"entity", "relation"}
        async with Client(target, timeout=20) as client:
            again = await client.call_tool("read_graph", {})
            assert again["structuredContent"] == {"entities": entities,
                                                  "relations": [relation]}


# ------------------------------------------------- server-sequential-thinking


async def test_sequential_thinking_one_thought(npm_servers: dict[str, Path]) -> None:
    target = node(npm_servers[THINKING], env={"DISABLE_THOUGHT_LOGGING": "true"})
    with anyio.fail_after(DEADLINE):
        async with Client(target, timeout=20) as client:
            assert_legacy(client, "sequential-thinking-server")
            (tool,) = await client.list_tools()
            assert tool["name"] == "sequentialthinking"
            assert {"thought", "thoughtNumber", "totalThoughts", "nextThoughtNeeded"} \
                <= set(tool["inputSchema"]["required"])
            first = await client.call_tool("sequentialthinking", {
                "thought": "Start from the failing message on the wire.",
                "thoughtNumber": 1, "totalThoughts": 2, "nextThoughtNeeded": True})
            assert first["structuredContent"] == {
                "thoughtNumber": 1, "totalThoughts": 2, "nextThoughtNeeded": True,
                "branches": [], "thoughtHistoryLength": 1}
            jsonschema.validate(first["structuredContent"], tool["outputSchema"])
            second = await client.call_tool("sequentialthinking", {
                "thought": "Then fix it.", "thoughtNumber": 2, "totalThoughts": 2,
                "nextThoughtNeeded": False})
            assert second["structuredContent"]["thoughtHistoryLength"] == 2
            assert second["structuredContent"]["nextThoughtNeeded"] is False

