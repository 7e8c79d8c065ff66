"""``Client`` against ``mobius serve`` on every transport, in both eras, and its faults.

Real parts throughout: server subprocesses over stdio, a real uvicorn on
loopback for the network transports.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from mobius_rpc import Context, Server
from mobius_rpc.client import Client, ConnectError, HttpTarget, StdioTarget
from mobius_rpc.core.errors import ConnectionClosedError, RequestTimeoutError
from mobius_rpc.core.revisions import Era
from mobius_rpc.demo import build_demo_server
from mobius_rpc.transports.http_client import HttpSseClientStream
from tests.conftest import SERVE_STDIO, serve_asgi

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"


def stdio_target(*extra: str) -> StdioTarget:
    return StdioTarget(SERVE_STDIO[0], (*SERVE_STDIO[1:], *extra))


@pytest.fixture
async def demo_base() -> AsyncIterator[str]:
    async with serve_asgi(build_demo_server().asgi_app().app) as base:
        yield base


def network_target(base: str, kind: str) -> HttpTarget:
    path = {"http": "/mcp", "sse": "/sse", "ws": "/ws"}[kind]
    scheme = "ws" if kind == "ws" else "http"
    return HttpTarget(f"{scheme}://{base}{path}", kind)  # type: ignore[arg-type]


async def exercise(client: Client) -> None:
    tools = {tool["name"] for tool in await client.list_tools()}
    assert {"echo", "add", "slow_count"} <= tools
    echoed = await client.call_tool("echo", {"text": "round trip"})
    assert echoed["content"][0]["text"] == "round trip"
    steps: list[float] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        steps.append(value)

    counted = await client.call_tool("slow_count", {"to": 3, "delay": 0}, on_progress=progress)
    assert counted["content"][0]["text"] == "counted to 3" and steps == [1, 2, 3]
    assert any(r["uri"] == "mobius://readme" for r in await client.list_resources())
    readme = await client.read_resource("mobius://readme")
    assert "Mobius" in readme["contents"][0]["text"]
    assert any(p["name"] == "review_code" for p in await client.list_prompts())
    prompt = await client.get_prompt("review_code", {"code": "x = 1"})
    assert "x = 1" in str(prompt["messages"])


@pytest.mark.parametrize("era", ["both", "legacy"])
async def test_stdio_probe_picks_the_era(era: str) -> None:
    async with Client(stdio_target("--era", era)) as client:
        expected = Era.MODERN if era == "both" else Era.LEGACY
        assert client.era is expected
        assert client.protocol_version == (MODERN if era == "both" else "2025-11-25")
        assert client.server_info["name"]
        await exercise(client)


@pytest.mark.parametrize("revision", ["2024-11-05", "2025-06-18", MODERN])
async def test_stdio_pinned_revision(revision: str) -> None:
    async with Client(stdio_target(), revision=revision) as client:
        assert client.protocol_version == revision
        await exercise(client)


@pytest.mark.parametrize("kind", ["http", "sse", "ws"])
@pytest.mark.parametrize("revision", [None, "2025-11-25"])
async def test_network_transports(demo_base: str, kind: str, revision: str | None) -> None:
    async with Client(network_target(demo_base, kind), revision=revision) as client:
        assert client.protocol_version == (revision or MODERN)
        await exercise(client)


async def test_http_probe_falls_back_to_legacy_on_a_legacy_only_server() -> None:
    server = build_demo_server(modern=False)
    async with serve_asgi(server.asgi_app().app) as base:
        async with Client(f"http://{base}/mcp") as client:
            assert client.era is Era.LEGACY and client.protocol_version == "2025-11-25"
            await exercise(client)


async def test_http_url_without_streamable_http_falls_back_to_http_sse(demo_base: str
                                                                      ) -> None:
    """A server that refuses the Streamable HTTP handshake at a URL is tried as HTTP+SSE."""
    async with Client(f"http://{demo_base}/sse") as client:
        assert isinstance(client._stream, HttpSseClientStream)
        await exercise(client)
    async with Client(f"http://{demo_base}/sse", revision="2024-11-05") as client:
        assert isinstance(client._stream, HttpSseClientStream)
        assert client.era is Era.LEGACY and client.protocol_version == "2024-11-05"


async def test_sampling_and_elicitation_handlers_in_both_eras() -> None:
    async def sampler(params: dict[str, Any]) -> dict[str, Any]:
        return {"role": "assistant", "model": "test",
                "content": {"type": "text", "text": "a summary"}}

    async def elicitor(params: dict[str, Any]) -> dict[str, Any]:
        return {"action": "accept", "content": {"answer": "blue"}}

    for revision in ("2025-11-25", MODERN):
        async with Client(stdio_target(), revision=revision, sampling=sampler,
                          elicitation=elicitor) as client:
            summary = await client.call_tool("summarize", {"text": "long text"})
            assert "a summary" in summary["content"][0]["text"]
            asked = await client.call_tool("ask_user", {"question": "colour?"})
            assert "blue" in asked["content"][0]["text"]


async def test_bad_command_fails_fast_with_a_clear_error() -> None:
    started = time.monotonic()
    with pytest.raises(ConnectError, match="no-such-mcp-server"):
        await Client(StdioTarget("no-such-mcp-server-binary")).connect()
    crashing = StdioTarget(sys.executable, ("-c", "import sys; print('boom', file=sys.stderr);"
                                                  " sys.exit(3)"))
    with pytest.raises(ConnectError) as info:
        await Client(crashing).connect()
    assert "code 3" in str(info.value) and "boom" in str(info.value)
    assert time.monotonic() - started < 10


async def test_unreachable_url_fails_with_a_clear_error() -> None:
    with pytest.raises(ConnectError, match="127.0.0.1:9"):
        await Client("http://127.0.0.1:9/mcp", connect_timeout=5).connect()


async def test_open_in_one_task_close_in_another_with_calls_in_flight() -> None:
    client = Client(stdio_target())
    outcome: list[BaseException] = []

    async def opener() -> None:
        await client.connect()

    async def caller() -> None:
        try:
            await client.call_tool("slow_count", {"to": 50, "delay": 1})
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcome.append(exc)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(opener)
        # opener's task is gone; the connection lives on
        assert client.state == "ready"
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            await anyio.sleep(0.3)
            started = time.monotonic()
            async with anyio.create_task_group() as closer:
                closer.start_soon(client.aclose)
        assert time.monotonic() - started < 5
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionClosedError)
    assert client.state == "closed"
    with pytest.raises(ConnectionClosedError):
        await client.list_tools()


def child_pids(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry))
    return found


async def test_server_killed_mid_request_fails_fast_and_reconnects() -> None:
    async with Client(stdio_target()) as client:
        stream = client._stream
        pid = stream.pid
        failure: list[BaseException] = []

        async def call() -> None:
            try:
                await client.call_tool("slow_count", {"to": 50, "delay": 1})
            except BaseException as exc:  # noqa: BLE001
                failure.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await anyio.sleep(0.3)
            os.kill(pid, 9)
            killed_at = time.monotonic()
        assert time.monotonic() - killed_at < 1.0
        assert isinstance(failure[0], ConnectionClosedError)
        with anyio.fail_after(5):
            while client.state != "disconnected":
                await anyio.sleep(0.01)
        assert "code -9" in (client.last_error or "")
        await client.reconnect()
        assert (await client.call_tool("echo", {"text": "back"}))["content"][0]["text"] == "back"
        assert client._stream.pid != pid


async def test_timeout_sends_cancelled_to_the_server() -> None:
    cancelled = anyio.Event()
    server = Server("slow")

    @server.tool()
    async def wait_forever(ctx: Context) -> str:
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return "never"

    @server.tool()
    def echo_back(text: str) -> str:
        return text

    async with serve_asgi(server.asgi_app().app) as base:
        for revision in ("2025-11-25", None):
            cancelled = anyio.Event()
            async with Client(f"ws://{base}/ws", revision=revision) as client:
                with pytest.raises(RequestTimeoutError):
                    await client.call_tool("wait_forever", timeout=0.3)
                with anyio.fail_after(5):
                    await cancelled.wait()
                # and a caller's own cancellation does the same
                cancelled = anyio.Event()
                with anyio.move_on_after(0.3):
                    await client.call_tool("wait_forever")
                with anyio.fail_after(5):
                    await cancelled.wait()
                echoed = await client.call_tool("echo_back", {"text": "still usable"})
                assert echoed["content"][0]["text"] == "still usable"


async def test_expired_http_session_is_reestablished(demo_base: str) -> None:
    async with Client(f"http://{demo_base}/mcp", revision="2025-11-25") as client:
        stream = client._stream
        old = stream.session_id
        async with httpx.AsyncClient() as http:
            gone = await http.delete(f"http://{demo_base}/mcp",
                                     headers={"Mcp-Session-Id": old})
            assert gone.status_code == 200
        echoed = await client.call_tool("echo", {"text": "again"})
        assert echoed["content"][0]["text"] == "again"
        assert client._stream.session_id not in (None, old)


async def test_many_clients_leave_no_process_or_descriptor_behind(demo_base: str) -> None:
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    # warm up lazily created resources (thread pools, DNS caches) first
    async with Client(stdio_target()) as client:
        await client.list_tools()
    before_fds, before_children = fds(), child_pids(os.getpid())
    for batch in range(10):
        async with anyio.create_task_group() as tg:
            for i in range(10):
                target = stdio_target() if (batch + i) % 2 else network_target(demo_base, "http")

                async def one(target: Any = target) -> None:
                    async with Client(target) as c:
                        assert await c.list_tools()

                tg.start_soon(one)
    await anyio.sleep(0.2)
    assert child_pids(os.getpid()) == before_children
    assert fds() <= before_fds + 2  # a little slack for the loop's own bookkeeping
