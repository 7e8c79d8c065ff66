"""Every server feature over the in-memory pair, for every legacy revision."""

from __future__ import annotations

import base64
from typing import Any

import anyio
import pytest

from mobius_rpc.core.errors import McpError
from mobius_rpc.core.limits import Limits
from mobius_rpc.core.revisions import ALL_REVISIONS, LEGACY_REVISIONS, MODERN_REVISIONS
from mobius_rpc.demo import build_demo_server
from mobius_rpc.server.app import Server
from mobius_rpc.server.context import Context
from tests.conftest import OpenDemo, connect, connect_stdio

pytestmark = pytest.mark.anyio

revisions = pytest.mark.parametrize("revision", ALL_REVISIONS)
legacy_revisions = pytest.mark.parametrize("revision", LEGACY_REVISIONS)


def is_modern(revision: str) -> bool:
    return revision in MODERN_REVISIONS


def text_of(result: dict[str, Any]) -> str:
    return "".join(b["text"] for b in result["content"] if b["type"] == "text")


@revisions
async def test_tools_list_and_call(open_demo: OpenDemo, revision: str) -> None:
    async with open_demo(revision=revision) as client:
        assert client.initialize_result is not None
        if is_modern(revision):
            assert client.initialize_result["supportedVersions"] == [revision]
            assert client.initialize_result["capabilities"]["tools"]
        else:
            assert client.initialize_result["protocolVersion"] == revision
        tools = {t["name"]: t for t in (await client.list_tools())["tools"]}
        assert {"echo", "add", "text_stats", "summarize", "ask_user"} <= set(tools)
        assert tools["echo"]["inputSchema"]["required"] == ["text"]
        assert tools["echo"]["inputSchema"]["properties"]["text"]["description"]
        assert tools["add"]["title"] == "Add two numbers"
        assert tools["text_stats"]["outputSchema"]["properties"]["words"]["type"] == "integer"
        result = await client.call_tool("echo", {"text": "héllo"})
        assert text_of(result) == "héllo" and result["isError"] is False
        stats = await client.call_tool("text_stats", {"text": "a b\nc"})
        assert stats["structuredContent"] == {"words": 3, "lines": 2, "characters": 5}
        added = await client.call_tool("add", {"a": 2, "b": 0.5})
        assert added["structuredContent"] == {"result": 2.5}


@revisions
async def test_tool_errors(open_demo: OpenDemo, revision: str) -> None:
    async with open_demo(revision=revision) as client:
        with pytest.raises(McpError) as info:
            await client.call_tool("no_such_tool", {})
        assert info.value.code == -32602
        bad = await client.call_tool("add", {"a": "two", "b": 1})
        assert bad["isError"] is True and "a" in text_of(bad)
        missing = await client.call_tool("echo", {})
        assert missing["isError"] is True and "text" in text_of(missing)
        # No sampling capability declared: a clear error, not a hang.
        if is_modern(revision):
            with pytest.raises(McpError) as info:
                await client.call_tool("summarize", {"text": "x"})
            assert info.value.code == -32021
            assert info.value.data == {"requiredCapabilities": {"sampling": {}}}
        else:
            refused = await client.call_tool("summarize", {"text": "x"})
            assert refused["isError"] is True and "sampling" in text_of(refused)


@revisions
async def test_resources(open_demo: OpenDemo, revision: str) -> None:
    async with open_demo(revision=revision) as client:
        listed = {r["uri"]: r for r in (await client.list_resources())["resources"]}
        assert listed["mobius://readme"]["mimeType"] == "text/markdown"
        templates = (await client.list_resource_templates())["resourceTemplates"]
        assert templates[0]["uriTemplate"] == "notes://{name}"
        readme = (await client.read_resource("mobius://readme"))["contents"][0]
        assert readme["text"].startswith("# Mobius") and readme["uri"] == "mobius://readme"
        pixel = (await client.read_resource("mobius://pixel.png"))["contents"][0]
        assert base64.b64decode(pixel["blob"]).startswith(b"\x89PNG")
        note = (await client.read_resource("notes://welcome"))["contents"][0]
        assert note["text"] == "Welcome to Mobius RPC."
        for uri in ("notes://missing", "nothing://here"):
            with pytest.raises(McpError) as info:
                await client.read_resource(uri)
            assert info.value.code == (-32602 if is_modern(revision) else -32002)
            assert info.value.data == {"uri": uri}


@revisions
async def test_prompts_and_completion(open_demo: OpenDemo, revision: str) -> None:
    async with open_demo(revision=revision) as client:
        prompts = {p["name"]: p for p in (await client.list_prompts())["prompts"]}
        assert prompts["review_code"]["arguments"] == [
            {"name": "code", "required": True, "description": "The code to review"},
            {"name": "language", "required": False, "description": "Programming language"}]
        got = await client.get_prompt("review_code", {"code": "print(1)", "language": "rust"})
        body = got["messages"][0]["content"]["text"]
        assert "print(1)" in body and "rust" in body
        greet = await client.get_prompt("greet", {"name": "Ada"})
        assert [m["role"] for m in greet["messages"]] == ["user", "assistant"]
        with pytest.raises(McpError) as info:
            await client.get_prompt("review_code", {})
        assert info.value.code == -32602 and "code" in info.value.message
        with pytest.raises(McpError):
            await client.get_prompt("nope", {})
        done = await client.complete({"type": "ref/prompt", "name": "review_code"},
                                     "language", "ty")
        assert done["completion"]["values"] == ["typescript"]
        ref = "ref/resource"
        notes = await client.complete({"type": ref, "uri": "notes://{name}"}, "name", "t")
        assert notes["completion"]["values"] == ["todo"]


@legacy_revisions
async def test_subscriptions_and_list_changed(demo: Server, revision: str) -> None:
    async with connect(demo, revision=revision) as client:
        await client.subscribe("notes://todo")
        await client.call_tool("add_note", {"name": "todo", "body": "ship it"})
        await client.call_tool("add_note", {"name": "other", "body": "not subscribed"})
        await client.unsubscribe("notes://todo")
        await client.call_tool("add_note", {"name": "todo", "body": "again"})

        @demo.tool()
        def late_tool() -> str:
            return "late"

        with anyio.fail_after(2):
            while ("notifications/tools/list_changed", {}) not in client.notifications:
                await anyio.sleep(0.01)
        updated = [p for m, p in client.notifications
                   if m == "notifications/resources/updated"]
        assert updated == [{"uri": "notes://todo"}]
        assert (await client.call_tool("late_tool", {}))["content"][0]["text"] == "late"


@legacy_revisions
async def test_logging_levels_and_progress(open_demo: OpenDemo, revision: str) -> None:
    progress: list[tuple[float, float | None, str | None]] = []
    async with open_demo(revision=revision) as client:
        await client.call_tool("slow_count", {"to": 2, "delay": 0})
        assert not [m for m, _ in client.notifications if m == "notifications/message"]
        await client.set_logging_level("debug")
        await client.call_tool("slow_count", {"to": 3, "delay": 0},
                               on_progress=lambda p, t, m: progress.append((p, t, m)))
        await anyio.sleep(0.05)
        logs = [p for m, p in client.notifications if m == "notifications/message"]
        assert [entry["data"] for entry in logs] == ["counted 1", "counted 2", "counted 3"]
        assert all(entry["level"] == "debug" for entry in logs)
    assert [p[0] for p in progress] == [1, 2, 3]
    assert all(p[1] == 3 for p in progress)
    if revision != "2024-11-05":
        assert progress[0][2] == "step 1 of 3"


@revisions
async def test_sampling_elicitation_roots_round_trips(open_demo: OpenDemo, revision: str) -> None:
    seen: dict[str, Any] = {}

    async def sampling(params: dict[str, Any]) -> dict[str, Any]:
        seen["sampling"] = params
        return {"role": "assistant", "content": {"type": "text", "text": "short summary"},
                "model": "test-model"}

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        seen["elicitation"] = params
        return {"action": "accept", "content": {"name": "Ada", "color": "green"}}

    async def roots() -> list[dict[str, Any]]:
        return [{"uri": "file:///work", "name": "work"}]

    async with open_demo(revision=revision, sampling=sampling, elicitation=elicitation,
                         roots=roots) as client:
        summary = await client.call_tool("summarize", {"text": "long text"})
        assert text_of(summary) == "short summary"
        assert "long text" in seen["sampling"]["messages"][0]["content"]["text"]
        listed = await client.call_tool("roots", {})
        assert listed["structuredContent"] == {"result": ["file:///work"]}
        answer = await client.call_tool("ask_user", {"question": "Who are you?"})
        if revision in ("2024-11-05", "2025-03-26"):
            # elicitation does not exist before 2025-06-18
            assert answer["isError"] is True and "elicitation" in text_of(answer)
        else:
            assert text_of(answer) == "hello Ada, you like green"
            schema = seen["elicitation"]["requestedSchema"]
            assert schema["properties"]["color"]["enum"] == ["red", "green", "blue"]
            assert schema["required"] == ["name"]


async def test_cancellation_stops_the_handler_and_sends_no_response() -> None:
    server = Server("cancel-test")
    state = {"started": anyio.Event(), "finished": False, "cancelled": False}

    @server.tool()
    async def wait_forever() -> str:
        state["started"].set()  # type: ignore[attr-defined]
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            state["cancelled"] = True
            raise
        state["finished"] = True
        return "done"

    async with connect(server) as client:
        async with anyio.create_task_group() as tg:
            async def caller() -> None:
                await client.call_tool("wait_forever", {})

            tg.start_soon(caller)
            await state["started"].wait()  # type: ignore[attr-defined]
            tg.cancel_scope.cancel()  # the caller gives up: notifications/cancelled is sent
        with anyio.fail_after(2):
            while not state["cancelled"]:
                await anyio.sleep(0.01)
        assert state["finished"] is False
        assert (await client.ping()) == {}  # the session is still usable


async def test_slow_handler_does_not_block_others(demo: Server) -> None:
    async with connect(demo) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "slow_count", {"to": 50, "delay": 0.02})
            with anyio.fail_after(0.5):
                assert text_of(await client.call_tool("echo", {"text": "fast"})) == "fast"
            tg.cancel_scope.cancel()


async def test_server_request_timeout_sends_cancelled() -> None:
    server = build_demo_server()
    server.limits = Limits(request_timeout=0.2)
    cancelled = anyio.Event()

    async def hanging_sampler(params: dict[str, Any]) -> dict[str, Any]:
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return {}

    async with connect(server, sampling=hanging_sampler) as client:
        result = await client.call_tool("summarize", {"text": "x"})
        assert result["isError"] is True and "timed out" in text_of(result)
        with anyio.fail_after(2):
            await cancelled.wait()  # the client's handler was cancelled by the notification


async def test_pagination_cursor_walk_and_bad_cursor() -> None:
    server = Server("paged", page_size=2)
    for i in range(5):
        server.tool(name=f"t{i}")(lambda: "x")
    async with connect(server) as client:
        names: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = await client.list_tools(cursor)
            pages += 1
            names += [t["name"] for t in page["tools"]]
            cursor = page.get("nextCursor")
            if cursor is None:
                break
        assert names == [f"t{i}" for i in range(5)] and pages == 3
        for bad in ("garbage", "bW9iaXVzMTpwcm9tcHRzOjI"):  # the second is a prompts cursor
            with pytest.raises(McpError) as info:
                await client.list_tools(bad)
            assert info.value.code == -32602


async def test_low_level_handler_overrides_builtin() -> None:
    server = Server("raw")

    @server.request_handler("tools/list")
    async def tools_list(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return {"tools": [{"name": "virtual", "inputSchema": {"type": "object"}}]}

    @server.request_handler("tools/call")
    async def tools_call(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return {"content": [{"type": "text", "text": f"called {params['name']}"}]}

    async with connect(server) as client:
        assert (await client.list_tools())["tools"][0]["name"] == "virtual"
        assert text_of(await client.call_tool("virtual")) == "called virtual"


async def test_handler_exception_becomes_internal_error_and_session_survives() -> None:
    server = Server("raw")

    @server.request_handler("tools/call")
    async def tools_call(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    async with connect(server) as client:
        with pytest.raises(McpError) as info:
            await client.call_tool("x")
        assert info.value.code == -32603 and "boom" not in info.value.message
        assert await client.ping() == {}


@pytest.mark.parametrize("transport", ["memory", "stdio"])
async def test_modern_logging_follows_the_request_log_level(transport: str) -> None:
    progress: list[float] = []
    opener = connect(build_demo_server(), revision="2026-07-28") if transport == "memory" \
        else connect_stdio(revision="2026-07-28")
    async with opener as client:
        await client.call_tool("slow_count", {"to": 2, "delay": 0})
        assert not [m for m, _ in client.notifications if m == "notifications/message"]
        await client.request("tools/call", {
            "name": "slow_count", "arguments": {"to": 3, "delay": 0},
            "_meta": {"io.modelcontextprotocol/logLevel": "debug"}},
            on_progress=lambda p, t, m: progress.append(p))
        await anyio.sleep(0.05)
        logs = [p["data"] for m, p in client.notifications if m == "notifications/message"]
        assert logs == ["counted 1", "counted 2", "counted 3"]
    assert progress == [1, 2, 3]


async def test_modern_listen_stream_delivers_only_opted_in_notifications(demo: Server) -> None:
    async with connect(demo, revision="2026-07-28") as client:
        async with anyio.create_task_group() as tg:
            async def listen() -> None:
                await client.request("subscriptions/listen", {"notifications": {
                    "toolsListChanged": True, "resourceSubscriptions": ["notes://todo"]}},
                    timeout=30)

            tg.start_soon(listen)
            with anyio.fail_after(2):
                while not client.notifications:
                    await anyio.sleep(0.01)
            method, params = client.notifications[0]
            assert method == "notifications/subscriptions/acknowledged"
            sub_id = params["_meta"]["io.modelcontextprotocol/subscriptionId"]
            assert params["notifications"] == {"toolsListChanged": True,
                                               "resourceSubscriptions": ["notes://todo"]}
            await client.call_tool("add_note", {"name": "todo", "body": "x"})
            await client.call_tool("add_note", {"name": "other", "body": "y"})
            demo.prompt(name="late")(lambda: "p")  # prompts list_changed: not opted in

            @demo.tool()
            def late() -> str:
                return "late"

            with anyio.fail_after(2):
                while len(client.notifications) < 3:
                    await anyio.sleep(0.01)
            await anyio.sleep(0.05)
            rest = client.notifications[1:]
            assert [m for m, _ in rest] == ["notifications/resources/updated",
                                            "notifications/tools/list_changed"]
            assert rest[0][1]["uri"] == "notes://todo"
            assert all(p["_meta"]["io.modelcontextprotocol/subscriptionId"] == sub_id
                       for _, p in rest)
            tg.cancel_scope.cancel()  # the client cancels: notifications/cancelled ends it
        assert await client.list_tools()  # the connection remains usable


async def never_called(params: dict[str, Any]) -> dict[str, Any]:
    raise AssertionError("the test answers input requests by hand")


async def first_round(client: Any) -> tuple[dict[str, Any], str]:
    first = await client.session.request("tools/call", {
        "name": "ask_user", "arguments": {"question": "name?"}})
    assert first["resultType"] == "input_required"
    (key, embedded), = first["inputRequests"].items()
    assert embedded["method"] == "elicitation/create"
    assert embedded["params"]["requestedSchema"]["required"] == ["name"]
    answer = {key: {"action": "accept", "content": {"name": "Ada", "color": "red"}}}
    return answer, first["requestState"]


async def test_mrtr_tampered_and_mismatched_state(open_demo: OpenDemo) -> None:
    async with open_demo(revision="2026-07-28", elicitation=never_called) as client:
        answer, state = await first_round(client)
        good = await client.session.request("tools/call", {
            "name": "ask_user", "arguments": {"question": "name?"},
            "inputResponses": answer, "requestState": state})
        assert good["content"][0]["text"] == "hello Ada, you like red"
        tampered = state[:-3] + ("AAA" if not state.endswith("AAA") else "BBB")
        for params in (
            {"name": "ask_user", "arguments": {"question": "name?"},
             "inputResponses": answer, "requestState": tampered},
            {"name": "ask_user", "arguments": {"question": "other question"},
             "inputResponses": answer, "requestState": state},
            {"name": "echo", "arguments": {"text": "x"}, "requestState": state},
            {"name": "ask_user", "arguments": {"question": "name?"},
             "inputResponses": answer, "requestState": "not-a-state"},
        ):
            with pytest.raises(McpError) as info:
                await client.session.request("tools/call", params)
            assert info.value.code == -32602 and "requestState" in info.value.message


async def test_mrtr_refusals_are_logged_and_states_expire(
        demo: Server, caplog: pytest.LogCaptureFixture) -> None:
    async with connect(demo, revision="2026-07-28", elicitation=never_called) as client:
        answer, state = await first_round(client)
        with pytest.raises(McpError):
            await client.session.request("tools/call", {
                "name": "ask_user", "arguments": {"question": "name?"},
                "inputResponses": answer, "requestState": state + "x"})
        refusals = [r for r in caplog.records if "refused requestState" in r.getMessage()]
        assert len(refusals) == 1  # every refused attempt is logged
        demo.state_ttl = -1.0  # states sealed from now on are already expired
        answer, stale = await first_round(client)
        with pytest.raises(McpError, match="expired"):
            await client.session.request("tools/call", {
                "name": "ask_user", "arguments": {"question": "name?"},
                "inputResponses": answer, "requestState": stale})


async def test_mrtr_without_declared_capability_is_refused(demo: Server) -> None:
    async with connect(demo, revision="2026-07-28") as client:
        with pytest.raises(McpError) as info:
            await client.call_tool("ask_user", {"question": "?"})
        assert info.value.code == -32021
        assert info.value.data == {"requiredCapabilities": {"elicitation": {}}}


@pytest.mark.parametrize("revision", ["2025-11-25", "2026-07-28"])
async def test_gather_asks_for_several_inputs(revision: str) -> None:
    server = Server("gather")
    rounds: list[int] = []

    @server.tool()
    async def profile(ctx: Context) -> str:
        rounds.append(1)
        got = await ctx.gather(who=ctx.elicit("Who?", {"type": "object", "properties": {
            "name": {"type": "string"}}}), where=ctx.list_roots())
        return f"{got['who']['content']['name']} in {got['where'][0]['uri']}"

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        return {"action": "accept", "content": {"name": "Ann"}}

    async def roots() -> list[dict[str, Any]]:
        return [{"uri": "file:///home"}]

    async with connect(server, revision=revision, elicitation=elicitation,
                       roots=roots) as client:
        if revision == "2026-07-28":
            first = await client.session.request("tools/call", {"name": "profile"})
            assert set(first["inputRequests"]) == {"who", "where"}  # one round, both asks
        result = await client.call_tool("profile", {})
    assert text_of(result) == "Ann in file:///home"


def test_each_connection_follows_the_server_configuration_as_it_is_now() -> None:
    # A stateless server makes a connection per request: a registration or a
    # changed setting must reach the next one.
    server = Server("configured")
    first = server.connection(legacy=False)
    assert "prompts" not in first.capabilities and first.validate is True

    @server.prompt()
    def greet() -> str:
        return "hi"

    server.limits = Limits(max_batch=2)
    server.validate = False
    server.instructions = "be brief"
    later = server.connection(legacy=False)
    assert "prompts" in later.capabilities
    assert later.limits.max_batch == 2 and later.validate is False
    assert later.instructions == "be brief"
    assert later.revisions == () and server.connection().revisions == server.revisions
