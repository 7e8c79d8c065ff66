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
from tests.conftest import connect_network, serve_asgi
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
        "-m", "mobius_rpc", "serve", "--fixture", "demo", "--stdio", "--gateway", str(config),
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
                async with connect_network(kind, revision=revision, server=front,
                                           elicitation=elicitation) as client:
                    await _exercise(client, steps, progress)
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


async def test_seven_real_servers_behind_one_gateway(
        tmp_path: Path, npm_servers: dict[str, Path]) -> None:  # noqa: F811
    """npm's everything, filesystem, memory and sequential-thinking and PyPI's
    time, git and fetch at once: each listed under its own name, each callable."""
    from tests.conftest import connect
    from tests.external.conftest import python_server

    def node(package: str, *args: str, **env: str) -> dict[str, Any]:
        return {"command": "node", "args": [str(npm_servers[package]), *args], "env": env}

    def python(module: str, *args: str) -> dict[str, Any]:
        command = python_server(module)
        return {"command": command[0], "args": [*command[1:], *args]}

    (tmp_path / "hello.txt").write_text("hello")
    repo = tmp_path / "repo"
    repo.mkdir()
    import subprocess
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    front = local_server()
    gateway = Gateway({
        "everything": node(EVERYTHING, "stdio"),
        "fs": node("@modelcontextprotocol/server-filesystem", str(tmp_path.resolve())),
        "memory": node("@modelcontextprotocol/server-memory",
                       MEMORY_FILE_PATH=str(tmp_path / "graph.jsonl")),
        "thinking": node("@modelcontextprotocol/server-sequential-thinking"),
        "time": python("mcp_server_time", "--local-timezone", "UTC"),
        "git": python("mcp_server_git", "--repository", str(repo)),
        "fetch": python("mcp_server_fetch"),
    }, options=FAST, list_wait=30.0).attach(front)
    try:
        with anyio.fail_after(90):
            async with connect(front) as client:
                names = {t["name"] for t in (await client.list_tools())["tools"]}
                assert {"everything__echo", "fs__read_text_file", "memory__read_graph",
                        "thinking__sequentialthinking", "time__get_current_time",
                        "git__git_status", "fetch__fetch", "local_echo"} <= names
                calls = {
                    "everything__echo": {"message": "hi"},
                    "fs__read_text_file": {"path": str((tmp_path / "hello.txt").resolve())},
                    "memory__read_graph": {},
                    "time__get_current_time": {"timezone": "UTC"},
                    "git__git_status": {"repo_path": str(repo)},
                }
                for name, arguments in calls.items():
                    result = await client.call_tool(name, arguments)
                    assert result.get("isError") is not True, (name, result)
                assert "hello" in str((await client.call_tool(
                    "fs__read_text_file", calls["fs__read_text_file"]))["content"])
                eras = {h["name"]: h["protocolVersion"] for h in gateway.health()}
                assert eras["everything"] == "2025-11-25" and eras["time"] == "2026-07-28"
    finally:
        await gateway.aclose()


def test_typescript_sdk_client_gets_everythings_sampling_and_elicitation(
        tmp_path: Path, npm_servers: dict[str, Path]) -> None:  # noqa: F811
    import shutil
    import subprocess
    interop = Path(__file__).resolve().parents[1] / "interop" / "node"
    if shutil.which("node") is None:
        pytest.skip("node is needed for the TypeScript SDK peer")
    if not (interop / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=interop, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"could not install the TypeScript SDK: {done.stderr[-500:]}")
    server = _gateway_server(tmp_path, npm_servers)
    done = subprocess.run(["node", str(interop / "gateway_client.mjs"), server.command,
                           *server.args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert "everything__trigger-sampling-request" in summary["tools"]
    assert summary["echo"] == "Echo: ts"
    assert "ts saw 1 message(s)" in summary["sampling"] and "ts-model" in summary["sampling"]
    assert "- Name: Grace" in summary["elicitation"]
    assert summary["asked"] == ["sampling", "elicitation"]


async def test_three_more_npm_servers_behind_one_gateway(
        tmp_path: Path, more_npm_servers: dict[str, Path]) -> None:
    """mcp-hello-world, time-mcp and mcp-knowledge-graph (which answers 2024-11-05)."""
    from tests.conftest import connect

    def node(package: str, *args: str) -> dict[str, Any]:
        return {"command": "node", "args": [str(more_npm_servers[package]), *args]}

    front = local_server()
    gateway = Gateway({
        "hello": node("mcp-hello-world"),
        "time": node("time-mcp"),
        "graph": node("@itseasy21/mcp-knowledge-graph", "--memory-path",
                      str(tmp_path / "graph.jsonl")),
    }, options=FAST, list_wait=30.0).attach(front)
    try:
        with anyio.fail_after(60):
            async with connect(front) as client:
                tools = {t["name"]: t for t in (await client.list_tools())["tools"]}
                by_upstream = {name.split("__")[0] for name in tools if "__" in name}
                assert by_upstream == {"hello", "time", "graph"}
                echo = tools["hello__echo"]
                arguments = {k: "gw" for k in echo["inputSchema"].get("properties", {})}
                echoed = await client.call_tool("hello__echo", arguments)
                assert echoed.get("isError") is not True and "gw" in str(echoed["content"])
                now = await client.call_tool("time__current_time", {"format": "YYYY-MM-DD"})
                assert now.get("isError") is not True and "20" in str(now["content"])
                graph = await client.call_tool("graph__read_graph", {})
                assert graph.get("isError") is not True
                eras = {h["name"]: h["protocolVersion"] for h in gateway.health()}
                assert eras["graph"] == "2024-11-05"
    finally:
        await gateway.aclose()
