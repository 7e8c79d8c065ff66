"""Two ``mobius serve --http`` processes on one real PostgreSQL behind a round-robin
TCP proxy: the Must-show of issue 14.

A client initializes through the proxy and every later request (each on a new
connection) goes to the other replica: tools, a subscription whose update is
produced on the other replica, sampling and elicitation, progress,
cancellation, a stream dropped on one replica and resumed on the other with
Last-Event-ID.  Then one replica is killed (SIGKILL) mid-session and nothing the
client had been given is lost: the session, its subscription and the stream the
dead replica had sent are all served by the survivor.  The official Python SDK
client does the same through the proxy.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from .kit import LegacyClient, fresh_connections
from .procs import Proxy, Replica, round_robin, start_replica
from .scenario import next_message, scenario

pytestmark = pytest.mark.anyio


@pytest.fixture
def replicas(pg_cluster: Any) -> Iterator[list[Replica]]:
    database = pg_cluster.create_database(f"r{uuid.uuid4().hex[:10]}")
    started = [start_replica(database, name) for name in ("a", "b")]
    try:
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.process.terminate()
                try:
                    replica.process.wait(10)
                except Exception:
                    replica.kill()
        for replica in started:
            replica.close()


@pytest.fixture
async def proxy(replicas: list[Replica]) -> AsyncIterator[Proxy]:
    async with round_robin([r.port for r in replicas]) as running:
        yield running


def no_errors(replicas: list[Replica]) -> None:
    for replica in replicas:
        text = "".join(replica.stderr)
        assert "Traceback" not in text and "ERROR" not in text, text


async def test_one_session_alternating_between_two_processes(
        proxy: Proxy, replicas: list[Replica]) -> None:
    url = f"http://127.0.0.1:{proxy.port}/mcp"
    async with fresh_connections() as http:
        await scenario(LegacyClient(url, http), http, lambda: proxy.connections)
    no_errors(replicas)


async def test_killing_a_replica_loses_nothing_acknowledged(
        proxy: Proxy, replicas: list[Replica]) -> None:
    url = f"http://127.0.0.1:{proxy.port}/mcp"
    async with fresh_connections() as http:
        client = LegacyClient(url, http)
        await client.initialize()  # a, b
        await client.call("resources/subscribe", {"uri": "notes://k"})  # a
        await client.call("logging/setLevel", {"level": "debug"})  # b
        call = client.request("tools/call", {"name": "slow_count", "arguments": {
            "to": 3, "delay": 0}})
        call["params"]["_meta"] = {"progressToken": "k"}
        async with client.stream(call) as events:  # a
            assert proxy.connections[-1] == 0
            first = await next_message(events)
            got = [first] + [e async for e in events if e.data is not None]
        assert got[-1].data["result"]["content"][0]["text"] == "counted to 3"

        replicas[0].kill()  # everything above was answered by, or through, a
        # the session goes on, served by b alone
        echoed = await client.call("tools/call", {"name": "echo", "arguments": {"text": "on"}})
        assert echoed["content"][0]["text"] == "on"
        # the stream a sent is still there, from its first event
        async with client.get(last_event_id=first.id) as resumed:
            with anyio.fail_after(10):
                replayed = [e.data async for e in resumed if e.data is not None]
        assert replayed == [e.data for e in got[1:]]
        # and the subscription made on a still holds
        async with client.get() as standalone:
            await client.call("tools/call", {"name": "add_note",
                                             "arguments": {"name": "k", "body": "v"}})
            update = await next_message(standalone)
            assert update.data["params"] == {"uri": "notes://k"}
        assert set(proxy.connections[-4:]) == {1}
    no_errors(replicas[1:])


async def test_the_official_sdk_client_through_the_proxy(proxy: Proxy,
                                                         replicas: list[Replica]) -> None:
    pytest.importorskip("mcp")
    types = pytest.importorskip("mcp_types")
    httpx2 = pytest.importorskip("httpx2")
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    url = f"http://127.0.0.1:{proxy.port}/mcp"
    progress: list[float] = []
    updates: list[str] = []

    async def elicit(context: Any, params: Any) -> Any:
        return types.ElicitResult(action="accept", content={"name": "Lin", "color": "red"})

    async def sample(context: Any, params: Any) -> Any:
        return types.CreateMessageResult(role="assistant", model="canned",
                                         content=types.TextContent(type="text", text="short"))

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def on_message(message: Any) -> None:
        root = getattr(message, "root", message)
        if getattr(root, "method", None) == "notifications/resources/updated":
            updates.append(str(root.params.uri))

    http = httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=60),
                              limits=httpx2.Limits(max_keepalive_connections=0))
    async with http:
        transport = streamable_http_client(url, http_client=http)
        with anyio.fail_after(90):
            async with Client(transport, mode="legacy", elicitation_callback=elicit,
                              sampling_callback=sample, message_handler=on_message) as client:
                assert (await client.call_tool("echo", {"text": "via"})).content[0].text \
                    == "via"
                with warnings.catch_warnings():  # legacy-only, which is what we test
                    warnings.simplefilter("ignore", UserWarning)
                    await client.subscribe_resource("notes://sdk")
                await client.call_tool("add_note", {"name": "sdk", "body": "b"})
                asked = await client.call_tool("ask_user", {"question": "?"})
                assert asked.content[0].text == "hello Lin, you like red"
                summary = await client.call_tool("summarize", {"text": "t"})
                assert summary.content[0].text == "short"
                counted = await client.call_tool("slow_count", {"to": 3, "delay": 0},
                                                 progress_callback=on_progress)
                assert counted.content[0].text == "counted to 3"
                while not updates:
                    await anyio.sleep(0.05)
    assert progress == [1, 2, 3]
    assert updates[0] == "notes://sdk"
    assert set(proxy.connections) == {0, 1}
    no_errors(replicas)
