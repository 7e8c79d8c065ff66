"""The lane at its edges: errors and breaker equal to the general path, ordering on the wire,
Streamable HTTP and slow downstreams, the rounds of a 2026-07-28 question, nothing left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from mobius_rpc.core.errors import McpError
from mobius_rpc.gateway import Gateway, UpstreamOptions
from tests.conftest import connect

from .conftest import FAST, StdioGateway, local_server, py_entry
from .test_lane import _counting, _outcome

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("era", ["2025-11-25", None])
@pytest.mark.parametrize("downstream", ["2025-11-25", "2026-07-28"])
async def test_errors_equal(gateways: list[Gateway], tmp_path: Path, era: str | None,
                            downstream: str) -> None:
    """crash and timeout: same error through the lane and the general path, same breaker."""
    entry = py_entry("s", UPSTREAM_MARKER=str(tmp_path / "m"))
    if era:
        entry["protocolVersion"] = era
    opts = UpstreamOptions(timeout=0.5, connect_timeout=20.0, health_interval=0,
                           backoff_initial=0.1, backoff_max=0.2, breaker_threshold=100)
    server = local_server()
    gateway = Gateway({"s": entry}, options=opts).attach(server)
    gateways.append(gateway)
    lane = server.lane
    async with connect(server, revision=downstream) as client:
        await client.list_tools()
        out: dict[str, list[Any]] = {}
        for which in ("lane", "general"):
            server.lane = lane if which == "lane" else None
            taken = _counting(server) if which == "lane" else []
            up = gateway.upstreams["s"]
            with anyio.fail_after(20):
                while True:
                    try:
                        await client.call_tool("s__echo", {"text": "x"})
                        break
                    except McpError:
                        await anyio.sleep(0.1)
            up.failures = 0
            got = [await _outcome(client, "tools/call", {"name": "s__hang", "arguments": {}})]
            got.append(up.failures)
            up.failures = 0
            got.append(await _outcome(client, "tools/call", {"name": "s__crash", "arguments": {}}))
            got.append(up.failures)
            out[which] = got
            if which == "lane":
                # a 2026-07-28 call to a legacy upstream would park: not the lane's
                eligible = not (era == "2025-11-25" and downstream == "2026-07-28")
                assert len(taken) >= 3 if eligible else taken == []  # echo, hang, crash
            server.lane = lane
        assert out["lane"] == out["general"], out


@pytest.mark.parametrize("era", ["2025-11-25", "2026-07-28"])
def test_logs_and_progress_precede_the_answer_on_the_wire(tmp_path: Path, era: str) -> None:
    with StdioGateway(tmp_path, {**py_entry("s"), "protocolVersion": era}) as gateway:
        gateway.initialize({"jsonrpc": "2.0", "id": 1, "method": "logging/setLevel",
                            "params": {"level": "debug"}},
                           {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        gateway.until(2)
        for n in range(3, 40):
            gateway.send({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {
                "name": "s__slow", "arguments": {"steps": 3}, "_meta": {"progressToken": n}}})
            seen = gateway.until(n)
            logs = [m for m in seen if m.get("method") == "notifications/message"]
            prog = [m for m in seen if m.get("method") == "notifications/progress"
                    and m["params"]["progressToken"] == n]
            assert len(prog) == 3 and len(logs) == 3, (n, seen)


@pytest.mark.parametrize("era", ["2025-11-25", "2026-07-28"])
async def test_lane_over_streamable_http(gateways: list[Gateway], tmp_path: Path,
                                         era: str) -> None:
    from mobius_rpc.client.client import Client
    from mobius_rpc.client.targets import HttpTarget
    from tests.conftest import serve_asgi
    marker = tmp_path / "m"
    server = local_server()
    gateway = Gateway({"s": {**py_entry("s", UPSTREAM_MARKER=str(marker)),
                             "protocolVersion": era}}, options=FAST).attach(server)
    gateways.append(gateway)
    taken = _counting(server)
    seen: list[Any] = []

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        return {"action": "accept", "content": {"answer": "blue"}}

    async def sampling(params: dict[str, Any]) -> dict[str, Any]:
        return {"role": "assistant", "content": {"type": "text", "text": "42"},
                "model": "m"}

    async def progress(p: float, total: float | None, message: str | None) -> None:
        seen.append(p)

    with anyio.fail_after(60):
        async with serve_asgi(server.http_app()) as base:
            async with Client(HttpTarget(f"http://{base}/mcp"), revision="2025-11-25",
                              elicitation=elicitation, sampling=sampling) as client:
                await client.list_tools()
                await client.request("logging/setLevel", {"level": "debug"})
                results: dict[int, Any] = {}

                async def one(i: int) -> None:
                    results[i] = await client.request(
                        "tools/call", {"name": "s__echo", "arguments": {"text": str(i)}})
                async with anyio.create_task_group() as tg:
                    for i in range(20):
                        tg.start_soon(one, i)
                assert all(results[i]["content"][0]["text"] == f"s:{i}" for i in range(20))
                got = await client.request("tools/call", {"name": "s__slow", "arguments": {}},
                                           on_progress=progress)
                assert got["content"][0]["text"] == "slow done" and seen == [1, 2, 3]
                got = await client.request("tools/call", {"name": "s__ask",
                                                          "arguments": {"question": "c?"}})
                assert "blue" in got["content"][0]["text"]
                got = await client.request("tools/call", {"name": "s__sample",
                                                          "arguments": {"prompt": "?"}})
                assert "42" in got["content"][0]["text"]
                with anyio.move_on_after(0.5):
                    await client.request("tools/call", {"name": "s__hang", "arguments": {}})
                with anyio.fail_after(5):
                    while not marker.exists():
                        await anyio.sleep(0.05)
                got = await client.request("tools/call", {"name": "s__echo",
                                                          "arguments": {"text": "z"}})
                assert got["content"][0]["text"] == "s:z"
    assert len(taken) >= 24
    assert gateway.upstreams["s"].client.session._calls == {}


async def test_concurrent_lane_calls_over_a_memory_stream_all_get_answers(
        gateways: list[Gateway]) -> None:
    """No answer may stay queued: a downstream stream without send_nowait (memory,
    WebSocket) flushes every lane answer in a scheduled task."""
    server = local_server()
    gateway = Gateway({"py": {**py_entry(), "protocolVersion": "2025-11-25"}},
                      options=FAST).attach(server)
    gateways.append(gateway)
    async with connect(server) as client:
        await client.list_tools()
        taken = _counting(server)
        done: list[int] = []

        async def one(i: int) -> None:
            got = await client.call_tool("py__echo", {"text": str(i)})
            assert got["content"][0]["text"] == f"py-upstream:{i}"
            done.append(i)
        for _round in range(5):
            done.clear()
            with anyio.move_on_after(8):
                async with anyio.create_task_group() as tg:
                    for i in range(40):
                        tg.start_soon(one, i)
            assert len(done) == 40, f"{40 - len(done)} calls got no answer; taken {len(taken)}"


class _SlowSend:
    """A memory stream whose sends take a moment (a WebSocket to a distant peer)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.capabilities = inner.capabilities
        self.transport_context = inner.transport_context

    async def receive(self) -> bytes:
        return bytes(await self._inner.receive())

    async def send(self, message: bytes) -> None:
        await anyio.sleep(0.005)
        await self._inner.send(message)

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.mark.parametrize("lane", [True, False])
async def test_lane_answers_reach_a_downstream_whose_sends_take_time(
        gateways: list[Gateway], lane: bool) -> None:
    from mobius_rpc.transports.memory import memory_pair
    from tests.conftest import client_on
    server = local_server()
    gateway = Gateway({"py": {**py_entry(), "protocolVersion": "2025-11-25"}},
                      options=FAST).attach(server)
    gateways.append(gateway)
    server_end, client_end = memory_pair()
    async with anyio.create_task_group() as outer:
        outer.start_soon(server.serve, _SlowSend(server_end))
        async with client_on(client_end, outer, "2025-11-25") as client:
            await client.list_tools()
            taken = _counting(server)
            if not lane:
                server.lane = None
            done: list[int] = []

            async def one(i: int) -> None:
                got = await client.call_tool("py__echo", {"text": str(i)})
                assert got["content"][0]["text"] == f"py-upstream:{i}"
                done.append(i)
            with anyio.move_on_after(10):
                async with anyio.create_task_group() as tg:
                    for i in range(20):
                        tg.start_soon(one, i)
            assert len(done) == 20, f"{20 - len(done)} of 20 calls got no answer " \
                                    f"({len(taken)} took the lane)"
        outer.cancel_scope.cancel()


@pytest.mark.parametrize("kind", ["ws", "sse", "http"])
async def test_concurrent_lane_calls_over_network_transports(gateways: list[Gateway],
                                                             kind: str) -> None:
    from tests.conftest import connect_network
    server = local_server()
    gateway = Gateway({"py": {**py_entry(), "protocolVersion": "2025-11-25"}},
                      options=FAST).attach(server)
    gateways.append(gateway)
    async with connect_network(kind, server=server) as client:
        await client.list_tools()
        taken = _counting(server)
        for _round in range(10):
            done: list[int] = []

            async def one(i: int, done: list[int]) -> None:
                got = await client.call_tool("py__echo", {"text": str(i)})
                assert got["content"][0]["text"] == f"py-upstream:{i}"
                done.append(i)
            with anyio.move_on_after(8):
                async with anyio.create_task_group() as tg:
                    for i in range(60):
                        tg.start_soon(one, i, done)
            assert len(done) == 60, f"{60 - len(done)} of 60 got no answer ({len(taken)} took)"


def test_a_slow_reading_host_gets_every_lane_answer_over_stdio(tmp_path: Path) -> None:
    """Big answers fill the stdout pipe; answers queued while a flush waits must go too."""
    import threading
    import time
    upstream = {**py_entry("s"), "protocolVersion": "2025-11-25"}
    with StdioGateway(tmp_path, upstream) as gateway:
        gateway.initialize({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        gateway.until(1)
        big = "x" * 200_000
        gateway.send(*({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {
            "name": "s__echo", "arguments": {"text": big}}} for n in range(2, 12)))
        time.sleep(2)  # a host busy elsewhere: the pipe fills
        got: set[int] = set()

        def reader() -> None:
            while len(got) < 10:
                message = gateway.read()
                if message is None:
                    return  # the gateway exited: the assertion below says what came
                if isinstance(message.get("id"), int):
                    got.add(message["id"])
        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        thread.join(15)
        assert len(got) == 10, f"{10 - len(got)} of 10 answers never came"


@pytest.mark.parametrize("lane", [True, False])
async def test_count_upstream_rounds_of_a_modern_question(gateways: list[Gateway],
                                                          lane: bool) -> None:
    server = local_server()
    gateway = Gateway({"py": py_entry()}, options=FAST).attach(server)  # 2026-07-28 upstream
    gateways.append(gateway)

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        return {"action": "accept", "content": {"answer": "blue"}}
    async with connect(server, elicitation=elicitation) as client:
        await client.list_tools()
        if not lane:
            server.lane = None
        connection = gateway.upstreams["py"].client.session.connection
        sent: list[str] = []
        original = connection.request

        def counting(method: str, params: Any, **kw: Any) -> Any:
            sent.append(method)
            return original(method, params, **kw)
        connection.request = counting  # type: ignore[method-assign]
        got = await client.call_tool("py__ask", {"question": "c?"})
        assert "blue" in got["content"][0]["text"]
        assert sent.count("tools/call") == 2, sent


async def test_upstream_cancelling_its_question_and_nothing_left_behind(
        gateways: list[Gateway], tmp_path: Path) -> None:
    server = local_server()
    opts = UpstreamOptions(timeout=1.0, connect_timeout=20.0, health_interval=0,
                           backoff_initial=0.1, backoff_max=0.2, breaker_threshold=100)
    gateway = Gateway({"py": {**py_entry(UPSTREAM_MARKER=str(tmp_path / "m")),
                              "protocolVersion": "2025-11-25"}}, options=opts).attach(server)
    gateways.append(gateway)
    cancelled: list[bool] = []

    async def sampling(params: dict[str, Any]) -> dict[str, Any]:
        try:
            await anyio.sleep(3)
        except BaseException:
            cancelled.append(True)
            raise
        return {"role": "assistant", "content": {"type": "text", "text": "late"}, "model": "m"}
    async with connect(server, sampling=sampling) as client:
        await client.list_tools()
        taken = _counting(server)
        got = await client.call_tool("py__impatient", {})
        assert got["content"][0]["text"] == "gave up"
        with anyio.fail_after(3):
            while not cancelled:
                await anyio.sleep(0.05)
        # a mix: timeouts, cancels, plain calls, at once
        async def hang() -> None:
            with pytest.raises(McpError):
                await client.call_tool("py__hang", {})

        async def cancelled_call() -> None:
            with anyio.move_on_after(0.2):
                await client.call_tool("py__hang", {})

        async def echo(i: int) -> None:
            await client.call_tool("py__echo", {"text": str(i)})
        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(hang)
                tg.start_soon(cancelled_call)
                tg.start_soon(echo, i)
        await anyio.sleep(0.3)
        upstream = gateway.upstreams["py"].client.session
        assert upstream._calls == {} and upstream._call_ids == {}
        assert upstream.session._forwards == {}
        assert len(taken) >= 16
    sessions = list(server.dispatcher._sessions)
    assert all(s._taken == {} for s in sessions)


@pytest.mark.parametrize("lane", [True, False])
async def test_where_progress_goes_over_streamable_http(gateways: list[Gateway],
                                                        lane: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from mobius_rpc.client.client import Client
    from mobius_rpc.client.targets import HttpTarget
    from mobius_rpc.transports.http_session import HttpMessageStream
    from tests.conftest import serve_asgi
    routed: list[tuple[str, Any]] = []
    original = HttpMessageStream.send_routed_nowait

    def spy(self: Any, message: bytes, related: Any, answers: Any) -> bool:
        decoded = orjson.loads(message)
        if decoded.get("method") in ("notifications/progress", "notifications/message"):
            routed.append((decoded["method"], related))
        return original(self, message, related, answers)
    monkeypatch.setattr(HttpMessageStream, "send_routed_nowait", spy)
    server = local_server()
    gateway = Gateway({"s": {**py_entry("s"), "protocolVersion": "2025-11-25"}},
                      options=FAST).attach(server)
    gateways.append(gateway)

    async def progress(p: float, total: float | None, message: str | None) -> None:
        pass
    with anyio.fail_after(30):
        async with serve_asgi(server.http_app()) as base:
            async with Client(HttpTarget(f"http://{base}/mcp"), revision="2025-11-25") as client:
                await client.list_tools()
                if not lane:
                    server.lane = None
                await client.request("tools/call", {"name": "s__slow", "arguments": {}},
                                     on_progress=progress)
    assert routed and all(related is not None for _, related in routed), routed
