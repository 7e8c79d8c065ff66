"""The gateway's lane (``mobius_rpc.gateway.lane``): plain upstream calls relayed
without a task answer exactly as the general path does, and the lane steps
aside wherever it must (middleware, a later handler, task calls, parking)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobius_rpc.core.errors import McpError
from mobius_rpc.gateway import Gateway
from mobius_rpc.server.app import Server
from tests.conftest import connect

from .conftest import FAST, StdioGateway, local_server, py_entry

pytestmark = pytest.mark.anyio


def _counting(server: Server) -> list[Any]:
    """Record the ids of the requests the server's lane took."""
    taken: list[Any] = []
    lane = server.lane
    assert lane is not None

    def counting(session: Any, event: Any) -> Callable[[], None] | None:
        cancel = lane(session, event)
        if cancel is not None:
            taken.append(event.id)
        return cancel
    server.lane = counting
    return taken


async def _outcome(client: Any, method: str, params: dict[str, Any]) -> Any:
    try:
        return ("result", await client.request(method, params))
    except McpError as exc:
        return ("error", exc.code, exc.message)


_CALLS = st.one_of(
    st.builds(lambda text: ("tools/call", {"name": "py__echo", "arguments": {"text": text}}),
              st.text(max_size=300)),
    st.builds(lambda value: ("tools/call", {"name": "py__echo", "arguments": {"text": value}}),
              st.integers(min_value=-(2**53), max_value=2**53) | st.none()
              | st.lists(st.integers(min_value=0, max_value=2**31), max_size=3)),
    st.just(("tools/call", {"name": "py__echo", "arguments": {}})),
    st.builds(lambda who: ("prompts/get", {"name": "py__greet", "arguments": {"who": who}}),
              st.text(max_size=40)),
    st.builds(lambda n: ("resources/read", {"uri": f"py+mem://notes/{n}"}),
              st.integers(min_value=0, max_value=4)),
    st.just(("resources/read", {"uri": "py+mem://static"})))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=st.lists(_CALLS, min_size=1, max_size=12))
def test_the_lane_answers_exactly_as_the_general_path(calls: list[tuple[str, dict[str, Any]]]
                                                      ) -> None:
    """Every call, result or error, is the same through the lane as without it."""
    async def check() -> None:
        server = local_server()
        gateway = Gateway({"py": {**py_entry(), "protocolVersion": "2025-11-25"}},
                          options=FAST).attach(server)
        lane = server.lane
        try:
            async with connect(server) as client:
                await client.list_tools()
                taken = _counting(server)
                through_lane = [await _outcome(client, m, p) for m, p in calls]
                assert len(taken) == len(calls)  # every one of them took the lane
                server.lane = None
                general = [await _outcome(client, m, p) for m, p in calls]
                assert through_lane == general
                server.lane = lane
        finally:
            await gateway.aclose()
    anyio.run(check)


async def test_progress_logs_and_questions_in_the_lane(gateways: list[Gateway]) -> None:
    server = local_server()
    gateway = Gateway({"py": {**py_entry(), "protocolVersion": "2025-11-25"}},
                      options=FAST).attach(server)
    gateways.append(gateway)
    seen: list[float] = []

    async def progress(p: float, total: float | None, message: str | None) -> None:
        seen.append(p)

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        return {"action": "accept", "content": {"answer": "blue"}}

    async with connect(server, elicitation=elicitation) as client:
        await client.list_tools()
        taken = _counting(server)
        slow = await client.request("tools/call", {"name": "py__slow", "arguments": {}},
                                    on_progress=progress)
        asked = await client.call_tool("py__ask", {"question": "colour?"})
        assert len(taken) == 2
        assert slow["content"][0]["text"] == "slow done" and seen == [1, 2, 3]
        logs = [p["data"] for m, p in client.notifications if m == "notifications/message"]
        assert logs == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
        assert "blue" in asked["content"][0]["text"]


async def test_a_cancel_in_the_lane_reaches_the_upstream(gateways: list[Gateway],
                                                         tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    server = local_server()
    gateway = Gateway({"s": {**py_entry("s", UPSTREAM_MARKER=str(marker)),
                             "protocolVersion": "2025-11-25"}}, options=FAST).attach(server)
    gateways.append(gateway)
    async with connect(server) as client:
        await client.list_tools()
        taken = _counting(server)
        with anyio.move_on_after(0.5):
            await client.call_tool("s__hang", {})
        assert len(taken) == 1
        with anyio.fail_after(5):
            while not marker.exists():
                await anyio.sleep(0.05)
        got = await client.call_tool("s__echo", {"text": "next"})
        assert got["content"][0]["text"] == "s:next"


async def test_the_end_of_the_downstream_session_cancels_lane_calls(
        gateways: list[Gateway], tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    server = local_server()
    gateway = Gateway({"s": {**py_entry("s", UPSTREAM_MARKER=str(marker)),
                             "protocolVersion": "2025-11-25"}}, options=FAST).attach(server)
    gateways.append(gateway)
    async with connect(server) as client:
        await client.list_tools()
        taken = _counting(server)
        client.session.connection.request("tools/call", {"name": "s__hang", "arguments": {}},
                                          now=0.0, timeout=60.0)
        await client.session._flush()
        with anyio.fail_after(5):
            while not taken:
                await anyio.sleep(0.01)
    # the downstream session is gone: its call is cancelled upstream
    with anyio.fail_after(5):
        while not marker.exists():
            await anyio.sleep(0.05)
    upstream = gateway.upstreams["s"]
    assert upstream.client.session._calls == {}  # nothing of it is left behind


async def test_middleware_and_later_handlers_keep_every_call_on_the_general_path(
        gateways: list[Gateway]) -> None:
    server = local_server()
    gateway = Gateway({"py": {**py_entry(), "protocolVersion": "2025-11-25"}},
                      options=FAST).attach(server)
    gateways.append(gateway)
    seen: list[str] = []

    async def watching(ctx: Any, call_next: Any) -> dict[str, Any]:
        seen.append(ctx.method)
        result: dict[str, Any] = await call_next(ctx)
        return result

    async with connect(server) as client:
        await client.list_tools()
        taken = _counting(server)
        server.dispatcher.use(watching)
        got = await client.call_tool("py__echo", {"text": "a"})
        assert got["content"][0]["text"] == "py-upstream:a"
        assert seen == ["tools/call"] and taken == []
        server.dispatcher.middleware.clear()
        server.dispatcher.use(watching)  # rebuilds the chain ...
        server.dispatcher.middleware.clear()  # ... and leaves none installed
        server.dispatcher._chain = server.dispatcher._route

        # a layer that takes tools/call over after the gateway sees every call
        gateway_call = server.request_handlers["tools/call"]
        wrapped: list[str] = []

        async def later(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
            wrapped.append(params["name"])
            result: dict[str, Any] = await gateway_call(ctx, params)
            return result
        server.request_handler("tools/call")(later)
        got = await client.call_tool("py__echo", {"text": "b"})
        assert got["content"][0]["text"] == "py-upstream:b"
        assert wrapped == ["py__echo"] and taken == []


async def test_calls_the_lane_leaves_alone(gateways: list[Gateway]) -> None:
    """Local tools, unknown names, task calls and 2026-07-28 calls to a legacy
    upstream (whose questions park the call) take the general path."""
    server = local_server()
    gateway = Gateway({"py": {**py_entry(), "protocolVersion": "2025-11-25"}},
                      options=FAST).attach(server)
    gateways.append(gateway)
    async with connect(server) as client:
        await client.list_tools()
        taken = _counting(server)
        assert (await client.call_tool("local_echo", {"text": "x"}))["content"][0]["text"] \
            == "local:x"
        with pytest.raises(McpError):
            await client.call_tool("py__nope", {})
        with pytest.raises(McpError, match="task"):  # py__echo cannot run as a task
            await client.request("tools/call", {"name": "py__echo", "task": {},
                                                "arguments": {"text": "t"}})
        assert taken == []
    async with connect(server, revision="2026-07-28") as modern:
        got = await modern.call_tool("py__echo", {"text": "m"})
        assert got["content"][0]["text"] == "py-upstream:m"
        assert taken == []


def test_end_of_input_answers_lane_calls_then_cancels_the_stuck_one(tmp_path: Path) -> None:
    """A host that closes stdin gets every lane call answered: those that finish in
    the grace period with their result, a stuck one with an error (and the upstream
    is told to stop)."""
    import time

    marker = tmp_path / "cancelled"
    upstream = {**py_entry("s", UPSTREAM_MARKER=str(marker)), "protocolVersion": "2025-11-25"}
    with StdioGateway(tmp_path, upstream, "--end-of-input-grace", "1") as gateway:
        gateway.initialize({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        gateway.until(0)
        # the upstream is connected: calls take the lane
        assert "s__hang" in str(gateway.until(1)[-1])
        gateway.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "s__hang", "arguments": {}}},
                     {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "s__echo", "arguments": {"text": "last"}}})
        gateway.close_input()
        started = time.monotonic()
        answers: dict[int, dict[str, Any]] = {}
        while len(answers) < 2:
            message = gateway.read()
            assert message is not None, f"no answer to {set((2, 3)) - set(answers)}"
            if message.get("id") in (2, 3):
                answers[message["id"]] = message
        assert answers[3]["result"]["content"][0]["text"] == "s:last"
        assert "closed its input" in answers[2]["error"]["message"]
        assert gateway.proc.wait(timeout=20) == 0
        assert time.monotonic() - started < 15
        assert marker.exists()  # the stuck call was cancelled upstream


async def test_a_gateway_without_its_lane_serves_every_call_the_general_way(
        gateways: list[Gateway]) -> None:
    server = local_server()
    gateway = Gateway({"py": {**py_entry(), "protocolVersion": "2025-11-25"}},
                      options=FAST, lane=False).attach(server)
    gateways.append(gateway)
    assert server.lane is None  # what `mobius serve --gateway-lane off` builds
    async with connect(server) as client:
        await client.list_tools()
        got = await client.call_tool("py__echo", {"text": "g"})
        assert got["content"][0]["text"] == "py-upstream:g"
