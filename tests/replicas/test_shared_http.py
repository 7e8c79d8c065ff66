"""Two replicas of one server in one process, sharing legacy sessions through a store.

An ASGI front alternates every HTTP request between the replicas (each its own
Server and transport, each opening the store itself), so every exchange that
spans requests crosses replicas: the session taken up from its record, a
resource update produced on one reaching the GET stream held by the other,
sampling and elicitation answers forwarded to the replica waiting for them,
cancellation, and an SSE stream resumed on the other replica with Last-Event-ID.
Runs on memory, SQLite and real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

from mobius_rpc.demo import build_demo_server
from mobius_rpc.transports.http_shared import SharedSessions
from tests.conftest import serve_asgi

from .kit import LegacyClient, SseEvent, fresh_connections

pytestmark = pytest.mark.anyio


class Alternate:
    """Hands HTTP requests to the apps in turn; the lifespan runs all of theirs."""

    def __init__(self, *apps: Any) -> None:
        self.apps = apps
        self.turn = 0
        self.served: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            assert message["type"] == "lifespan.startup"
            async with AsyncExitStack() as stack:
                for app in self.apps:
                    await stack.enter_async_context(app.lifespan())
                await send({"type": "lifespan.startup.complete"})
                await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        index = self.turn % len(self.apps)
        self.turn += 1
        self.served.append(index)
        await self.apps[index](scope, receive, send)


@asynccontextmanager
async def two_replicas(target: Any) -> AsyncIterator[tuple[str, Alternate]]:
    async with AsyncExitStack() as stack:
        apps = []
        for name in ("a", "b"):
            store = await stack.enter_async_context(target.open())
            shared = SharedSessions(store, replica=name, poll_interval=0.2)
            apps.append(build_demo_server().http_app(shared=shared))
        front = Alternate(*apps)
        address = await stack.enter_async_context(serve_asgi(front))
        yield f"http://{address}/mcp", front


async def next_message(events: AsyncIterator[SseEvent]) -> SseEvent:
    with anyio.fail_after(10):
        async for event in events:
            if event.data is not None:
                return event
    raise AssertionError("the stream ended")


async def test_a_session_alternating_between_replicas(target: Any) -> None:
    async with two_replicas(target) as (url, front), fresh_connections() as http:
        client = LegacyClient(url, http)
        await client.initialize()  # initialize on a, initialized on b
        echoed = await client.call("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
        assert echoed["content"][0]["text"] == "hi"
        await client.call("logging/setLevel", {"level": "error"})
        await client.call("resources/subscribe", {"uri": "notes://n1"})
        assert front.served == [0, 1, 0, 1, 0]

        # the GET stream is held by b; the update is produced on a
        async with client.get() as standalone:
            assert front.served[-1] == 1
            saved = await client.call("tools/call", {"name": "add_note",
                                                     "arguments": {"name": "n1", "body": "x"}})
            assert front.served[-1] == 0 and "saved" in saved["content"][0]["text"]
            update = await next_message(standalone)
            assert update.data == {"jsonrpc": "2.0", "method": "notifications/resources/updated",
                                   "params": {"uri": "notes://n1"}}

        # sampling asked on one replica, answered through the other
        call = client.request("tools/call", {"name": "summarize", "arguments": {"text": "t"}})
        async with client.stream(call) as events:
            asked = (await next_message(events)).data
            assert asked["method"] == "sampling/createMessage"
            answer = await client.send({"jsonrpc": "2.0", "id": asked["id"], "result": {
                "role": "assistant", "model": "m",
                "content": {"type": "text", "text": "short"}}})
            assert answer.status_code == 202
            assert front.served[-1] != front.served[-2]
            done = (await next_message(events)).data
            assert done["id"] == call["id"] and done["result"]["content"][0]["text"] == "short"

        # elicitation the same way
        call = client.request("tools/call", {"name": "ask_user",
                                             "arguments": {"question": "who?"}})
        async with client.stream(call) as events:
            asked = (await next_message(events)).data
            assert asked["method"] == "elicitation/create"
            await client.send({"jsonrpc": "2.0", "id": asked["id"], "result": {
                "action": "accept", "content": {"name": "Ada", "color": "red"}}})
            done = (await next_message(events)).data
            assert done["result"]["content"][0]["text"] == "hello Ada, you like red"

        # progress, then cancellation sent to the other replica
        call = client.request("tools/call", {"name": "slow_count", "arguments": {
            "to": 50, "delay": 0.2}, })
        call["params"]["_meta"] = {"progressToken": "p1"}
        async with client.stream(call) as events:
            progress = (await next_message(events)).data
            assert progress["method"] == "notifications/progress"
            cancelled = await client.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                           "params": {"requestId": call["id"]}})
            assert cancelled.status_code == 202
            with anyio.fail_after(10):
                rest = [event.data async for event in events]
            assert all(m.get("id") != call["id"] for m in rest if m)  # no answer to it
            assert len(rest) < 10

        # a stream dropped on one replica, resumed on the other
        call = client.request("tools/call", {"name": "slow_count", "arguments": {
            "to": 6, "delay": 0.05}})
        call["params"]["_meta"] = {"progressToken": "p2"}
        seen: list[SseEvent] = []
        async with client.stream(call) as events:
            seen.append(await next_message(events))
            seen.append(await next_message(events))
        assert seen[-1].id is not None
        async with client.get(last_event_id=seen[-1].id) as resumed:
            with anyio.fail_after(10):
                rest = [event async for event in resumed if event.data is not None]
        messages = [e.data for e in seen + rest]
        steps = [m["params"]["progress"] for m in messages if m.get("method") ==
                 "notifications/progress"]
        assert steps == [1, 2, 3, 4, 5, 6]  # nothing lost, nothing twice
        assert messages[-1]["id"] == call["id"]
        assert messages[-1]["result"]["content"][0]["text"] == "counted to 6"
        ids = [e.id for e in seen + rest]
        assert len(set(ids)) == len(ids)

        # the end of the session reaches every replica
        ended = await http.delete(url, headers=client.headers)
        assert ended.status_code == 200
        await gone_everywhere(client)


async def gone_everywhere(client: LegacyClient) -> None:
    """Every replica refuses the session, once the news travelled (at once through
    LISTEN/NOTIFY or in memory, within the poll interval through SQLite's outbox)."""
    refused = 0
    with anyio.fail_after(10):
        while refused < 2:
            reply = await client.send(client.request("ping"))
            refused = refused + 1 if reply.status_code == 404 else 0
            await anyio.sleep(0.05)
