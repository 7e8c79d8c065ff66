"""The gateway re-serves a real upstream (a subprocess over stdio) beside a
server's own tools: namespacing, URIs mapped back, prompts, completion,
pagination, and per-call relaying for a legacy downstream."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mobius_rpc.gateway import Gateway
from tests.conftest import connect

from .conftest import FAST, local_server, py_entry

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["modern", "legacy"])
def upstream_era(request: pytest.FixtureRequest) -> str:
    """The era the gateway speaks to the upstream (it serves both)."""
    return str(request.param)


def _entry(era: str) -> dict[str, Any]:
    entry = py_entry()
    if era == "legacy":
        entry["protocolVersion"] = "2025-11-25"
    return entry


async def _gateway(gateways: list[Gateway], **entries: dict[str, Any]) -> tuple[Any, Gateway]:
    server = local_server()
    gateway = Gateway(entries or {"py": py_entry()}, options=FAST).attach(server)
    gateways.append(gateway)
    return server, gateway


async def test_tools_are_namespaced_beside_local_ones(gateways: list[Gateway]) -> None:
    server, _ = await _gateway(gateways, a=py_entry("a"), b=py_entry("b"))
    async with connect(server) as client:
        names = [t["name"] for t in (await client.list_tools())["tools"]]
        assert "local_echo" in names and "a__echo" in names and "b__echo" in names
        assert "echo" not in names
        a = await client.call_tool("a__echo", {"text": "hi"})
        b = await client.call_tool("b__echo", {"text": "hi"})
        local = await client.call_tool("local_echo", {"text": "hi"})
        assert a["content"][0]["text"] == "a:hi" and b["content"][0]["text"] == "b:hi"
        assert local["content"][0]["text"] == "local:hi"


async def test_unknown_namespaced_tool_is_invalid_params(gateways: list[Gateway]) -> None:
    server, _ = await _gateway(gateways)
    async with connect(server) as client:
        await client.list_tools()
        from mobius_rpc.core.errors import McpError
        with pytest.raises(McpError) as caught:
            await client.call_tool("py__nope", {})
        assert caught.value.code == -32602


async def test_resources_templates_prompts_and_completion(gateways: list[Gateway]) -> None:
    server, _ = await _gateway(gateways)
    async with connect(server) as client:
        resources = (await client.list_resources())["resources"]
        assert [r["uri"] for r in resources] == ["py+mem://static"]
        read = await client.read_resource("py+mem://static")
        assert read["contents"][0] == {"uri": "py+mem://static", "mimeType": "text/plain",
                                       "text": "static text"}
        templates = (await client.list_resource_templates())["resourceTemplates"]
        assert templates[0]["uriTemplate"] == "py+mem://notes/{id}"
        note = await client.read_resource("py+mem://notes/2")
        assert note["contents"][0]["text"] == "second note"
        assert note["contents"][0]["uri"] == "py+mem://notes/2"
        prompts = (await client.list_prompts())["prompts"]
        assert [p["name"] for p in prompts] == ["py__greet"]
        got = await client.get_prompt("py__greet", {"who": "Ann"})
        assert "Hello, Ann!" in str(got["messages"])
        done = await client.complete({"type": "ref/prompt", "name": "py__greet"}, "who", "al")
        assert done["completion"]["values"] == ["alice", "albert"]


async def test_merged_list_pages_have_stable_cursors(gateways: list[Gateway]) -> None:
    server, gateway = await _gateway(gateways, a=py_entry("a"), b=py_entry("b"))
    server.page_size = 4
    async with connect(server) as client:
        first = await client.list_tools()
        assert len(first["tools"]) == 4 and "nextCursor" in first
        everything = [t["name"] for t in first["tools"]]
        # the list changes between two pages: a tool is added before the cursor
        await gateway.remove_upstream("a")
        cursor: str | None = first["nextCursor"]
        while cursor:
            page = await client.list_tools(cursor)
            everything += [t["name"] for t in page["tools"]]
            cursor = page.get("nextCursor")
        later = [n for n in everything[4:]]
        assert later and all(n.startswith("b__") or n == "local_echo" for n in later)
        assert len(everything) == len(set(everything))  # nothing repeated
        assert everything == sorted(everything)
        from mobius_rpc.core.errors import McpError
        with pytest.raises(McpError) as caught:
            await client.list_tools("not-a-cursor")
        assert caught.value.code == -32602


async def test_progress_and_logs_reach_the_calling_client(gateways: list[Gateway],
                                                         upstream_era: str) -> None:
    server, gateway = await _gateway(gateways, py=_entry(upstream_era))
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(p: float, total: float | None, message: str | None) -> None:
        seen.append((p, total, message))

    async with connect(server) as client:
        await client.list_tools()
        result = await client.request("tools/call", {"name": "py__slow", "arguments": {}},
                                      on_progress=progress)
        assert result["content"][0]["text"] == "slow done"
        assert gateway.upstreams["py"].client.era.value == upstream_era
        assert [s[0] for s in seen] == [1, 2, 3] and seen[0][1] == 3
        logs = [p["data"] for m, p in client.notifications if m == "notifications/message"]
        assert logs == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]


@pytest.mark.parametrize("downstream", ["2025-11-25", "2026-07-28"])
async def test_elicitation_sampling_and_roots_go_to_the_caller(gateways: list[Gateway],
                                                               upstream_era: str,
                                                               downstream: str) -> None:
    """Every pair of eras: a legacy upstream's request to a modern downstream becomes an
    InputRequiredResult round trip, a modern upstream's input request to a legacy
    downstream becomes a server-to-client request."""
    server, _ = await _gateway(gateways, py=_entry(upstream_era))
    asked: list[dict[str, Any]] = []

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        asked.append(params)
        if params.get("mode") == "url":
            return {"action": "accept"}
        return {"action": "accept", "content": {"answer": "blue"}}

    async def sampling(params: dict[str, Any]) -> dict[str, Any]:
        asked.append(params)
        return {"role": "assistant", "content": {"type": "text", "text": "42"},
                "model": "test-model"}

    async def roots() -> list[dict[str, Any]]:
        return [{"uri": "file:///work", "name": "work"}]

    async with connect(server, elicitation=elicitation, sampling=sampling,
                       roots=roots, revision=downstream) as client:
        await client.list_tools()
        got = await client.call_tool("py__ask", {"question": "Favourite colour?"})
        assert got["content"][0]["text"] == "accept:blue"
        assert asked[0]["message"] == "Favourite colour?"
        got = await client.call_tool("py__ask_url", {})
        assert got["content"][0]["text"] == "url:accept"
        assert asked[1]["url"] == "https://example.invalid/login"
        got = await client.call_tool("py__sample", {"prompt": "meaning?"})
        assert got["content"][0]["text"] == "model said: 42"
        got = await client.call_tool("py__roots", {})
        assert got["content"][0]["text"] == "file:///work"


async def test_a_client_without_the_capability_is_refused(
        gateways: list[Gateway], upstream_era: str) -> None:
    server, _ = await _gateway(gateways, py=_entry(upstream_era))
    async with connect(server) as client:  # declares no sampling
        await client.list_tools()
        from mobius_rpc.core.errors import McpError
        with pytest.raises(McpError, match="sampling capability"):
            await client.call_tool("py__sample", {"prompt": "x"})


async def test_upstream_list_changed_reaches_downstream(gateways: list[Gateway],
                                                        upstream_era: str) -> None:
    server, _ = await _gateway(gateways, py=_entry(upstream_era))
    async with connect(server) as client:
        await client.list_tools()
        await anyio.sleep(0.2)  # lets the listen stream of a modern upstream open
        client.notifications.clear()
        await client.call_tool("py__add_tool", {"tool_name": "fresh"})
        with anyio.fail_after(10):
            while not any(m == "notifications/tools/list_changed"
                          for m, _ in client.notifications):
                await anyio.sleep(0.05)
        names = [t["name"] for t in (await client.list_tools())["tools"]]
        assert "py__fresh" in names
        got = await client.call_tool("py__fresh", {})
        assert got["content"][0]["text"] == "new"


async def test_subscriptions_are_forwarded(gateways: list[Gateway], upstream_era: str) -> None:
    server, gateway = await _gateway(gateways, py=_entry(upstream_era))
    async with connect(server) as client:
        await client.list_tools()
        await client.subscribe("py+mem://notes/1")
        await anyio.sleep(0.3)
        upstream_server_note = gateway.upstreams["py"]
        assert upstream_server_note.ready
        # the upstream says the resource changed: our own tool can make it say so
        await client.call_tool("py__touch", {"uri": "mem://notes/1"})
        with anyio.fail_after(10):
            while not any(m == "notifications/resources/updated"
                          for m, _ in client.notifications):
                await anyio.sleep(0.05)
        updated = [p for m, p in client.notifications if m == "notifications/resources/updated"]
        assert updated[0]["uri"] == "py+mem://notes/1"


async def test_security_rules_apply_to_upstream_tools_by_upstream_and_tool(
        gateways: list[Gateway]) -> None:
    from mobius_rpc.core.errors import McpError
    from mobius_rpc.security.admin import add_rule
    from mobius_rpc.security.policy import make_rule
    from mobius_rpc.security.store import MemorySecurityStore
    from tests.security.support import Caller, make_world, secured

    store = MemorySecurityStore()
    people = await make_world(store)
    await add_rule(store, make_rule("A", "deny", "*", "tools", "a__*"))        # by upstream
    await add_rule(store, make_rule("A", "deny", "*", "tools", "b__crash"))    # by tool
    server, _ = await _gateway(gateways, a=py_entry("a"), b=py_entry("b"))
    secured(server, store, Caller(people["owner"]))
    async with connect(server) as client:
        names = {t["name"] for t in (await client.list_tools())["tools"]}
        assert "b__echo" in names and "b__crash" not in names
        assert not any(n.startswith("a__") for n in names)
        with pytest.raises(McpError) as caught:
            await client.call_tool("a__echo", {"text": "x"})
        assert caught.value.message == "Unknown tool: a__echo"
        got = await client.call_tool("b__echo", {"text": "x"})
        assert got["content"][0]["text"] == "b:x"
    calls = [r for r in store.audit_records if r.method == "tools/call"]
    assert [(r.target, r.outcome) for r in calls] == [("a__echo", "denied"), ("b__echo", "ok")]


def test_config_variables_are_expanded_from_the_environment(tmp_path: Any) -> None:
    from mobius_rpc.gateway import read_servers
    config = {"mcpServers": {
        "api": {"type": "http", "url": "${BASE:-http://127.0.0.1:1}/mcp",
                "headers": {"Authorization": "Bearer ${TOKEN}"}},
        "local": {"command": "srv", "args": ["--key", "${KEY}"], "env": {"K": "${KEY}x"}},
        "off": {"command": "nothing", "disabled": True}}}
    servers = read_servers(config, {"TOKEN": "t0k", "KEY": "k"})
    assert servers == {
        "api": {"type": "http", "url": "http://127.0.0.1:1/mcp",
                "headers": {"Authorization": "Bearer t0k"}},
        "local": {"command": "srv", "args": ["--key", "k"], "env": {"K": "kx"}}}
    with pytest.raises(ValueError, match=r"server 'api': \$\{TOKEN\} is not set"):
        read_servers(config, {"KEY": "k"})


async def test_a_modern_listen_stream_hears_upstream_resource_updates(
        gateways: list[Gateway], upstream_era: str) -> None:
    server, _ = await _gateway(gateways, py=_entry(upstream_era))
    async with connect(server, revision="2026-07-28") as client:
        await client.list_tools()
        async with anyio.create_task_group() as tg:
            async def listen() -> None:
                await client.request("subscriptions/listen", {"notifications": {
                    "toolsListChanged": True,
                    "resourceSubscriptions": ["py+mem://notes/1"]}}, timeout=30)

            tg.start_soon(listen)
            with anyio.fail_after(5):
                while not any(m == "notifications/subscriptions/acknowledged"
                              for m, _ in client.notifications):
                    await anyio.sleep(0.02)
            acknowledged = [p for m, p in client.notifications
                            if m == "notifications/subscriptions/acknowledged"][0]
            assert acknowledged["notifications"]["resourceSubscriptions"] == [
                "py+mem://notes/1"]
            await anyio.sleep(0.3)  # the upstream listen stream reopens with the URI
            await client.call_tool("py__touch", {"uri": "mem://notes/2"})  # not listened to
            await client.call_tool("py__touch", {"uri": "mem://notes/1"})
            with anyio.fail_after(10):
                while not any(m == "notifications/resources/updated"
                              for m, _ in client.notifications):
                    await anyio.sleep(0.05)
            await anyio.sleep(0.1)
            updated = [p["uri"] for m, p in client.notifications
                       if m == "notifications/resources/updated"]
            assert updated == ["py+mem://notes/1"]
            tg.cancel_scope.cancel()
