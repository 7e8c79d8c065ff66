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

from .kit import LegacyClient, fresh_connections, sse_events
from .scenario import next_message, scenario

pytestmark = pytest.mark.anyio


class Alternate:
    """Hands HTTP requests to the apps in turn; the lifespan runs all of theirs."""

    def __init__(self, *apps: Any) -> None:
        self.apps = apps
        self.servers: list[Any] = []
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
        apps, servers = [], []
        for name in ("a", "b"):
            store = await stack.enter_async_context(target.open())
            shared = SharedSessions(store, replica=name, poll_interval=0.2)
            servers.append(build_demo_server())
            apps.append(servers[-1].http_app(shared=shared))
        front = Alternate(*apps)
        front.servers = servers
        address = await stack.enter_async_context(serve_asgi(front))
        yield f"http://{address}/mcp", front


async def test_a_session_alternating_between_replicas(target: Any) -> None:
    async with two_replicas(target) as (url, front), fresh_connections() as http:
        await scenario(LegacyClient(url, http), http, lambda: front.served)


async def test_tasks_are_records_any_replica_answers_for(target: Any) -> None:
    async with two_replicas(target) as (url, front), fresh_connections() as http:
        client = LegacyClient(url, http)
        await client.initialize()
        created = await client.call("tools/call", {  # on a
            "name": "slow_count", "arguments": {"to": 3, "delay": 0.05}, "task": {"ttl": 60000}})
        task = created["task"]
        assert task["status"] == "working" and task["taskId"].startswith("a~")
        got = await client.call("tasks/get", {"taskId": task["taskId"]})  # on b
        assert got["taskId"] == task["taskId"]
        result = await client.call("tasks/result", {"taskId": task["taskId"]})  # on a
        assert result["content"][0]["text"] == "counted to 3"
        again = await client.call("tasks/result", {"taskId": task["taskId"]})  # on b
        assert again["content"][0]["text"] == "counted to 3"
        listed = await client.call("tasks/list")
        assert [t["status"] for t in listed["tasks"]] == ["completed"]

        # cancelled through the replica that does not run it: the handler stops (told
        # through the channel: the renewal, which would also tell it, is too far off)
        for server in front.servers:
            server.task_manager.lease = 600
        long = (await client.call("tools/call", {  # on b
            "name": "slow_count", "arguments": {"to": 50, "delay": 2.0},
            "task": {"ttl": 60000}}))["task"]
        assert long["taskId"].startswith("b~")
        cancelled = await client.call("tasks/cancel", {"taskId": long["taskId"]})  # on a
        assert cancelled["status"] == "cancelled"
        refused = await client.send(client.request("tasks/result", {"taskId": long["taskId"]}))
        assert "was cancelled" in refused.json()["error"]["message"]
        with anyio.fail_after(20):
            while long["taskId"] in front.servers[1].task_manager._running:
                await anyio.sleep(0.05)
        assert front.served[-3:] == [1, 0, 1]

        # a task whose replica stopped renewing it fails, saying why
        from mobius_rpc.storage import TaskRecord
        store = front.apps[0].shared.store
        session_id = client.headers["Mcp-Session-Id"]
        await store.tasks.create(TaskRecord("gone~1", session_id, "working", 1.0, 1.0, 100,
                                            None))
        orphan = await client.call("tasks/get", {"taskId": "gone~1"})
        assert orphan["status"] == "failed" and "stopped" in orphan["statusMessage"]
        failed = await client.send(client.request("tasks/result", {"taskId": "gone~1"}))
        assert "stopped" in failed.json()["error"]["message"]


async def test_a_new_standalone_stream_starts_where_the_last_one_stopped(target: Any) -> None:
    async with two_replicas(target) as (url, front), fresh_connections() as http:
        client = LegacyClient(url, http)
        await client.initialize()
        await client.call("resources/subscribe", {"uri": "notes://p"})
        async with client.get() as first:  # on b
            await client.call("tools/call", {"name": "add_note",
                                             "arguments": {"name": "p", "body": "1"}})
            assert (await next_message(first)).data["params"]["uri"] == "notes://p"
        await client.call("resources/subscribe", {"uri": "notes://q"})  # b
        await client.call("tools/call", {"name": "add_note",  # a
                                         "arguments": {"name": "q", "body": "2"}})
        await client.call("ping")  # b
        async with client.get() as second:  # a: what b delivered is not sent again
            assert front.served[-1] == 0
            assert (await next_message(second)).data["params"]["uri"] == "notes://q"
        # our own bookkeeping stream is not resumable
        headers = {**client.headers, "Accept": "text/event-stream",
                   "Last-Event-ID": "get-position#1"}
        assert (await http.get(url, headers=headers)).status_code == 400
        headers["Last-Event-ID"] = "nothing#1"
        assert (await http.get(url, headers=headers)).status_code == 400
        headers.pop("Last-Event-ID")
        headers["Mcp-Session-Id"] = "not-a-session"
        assert (await http.get(url, headers=headers)).status_code == 404


async def test_a_listen_stream_hears_of_an_update_made_on_the_other_replica(
        target: Any) -> None:
    from tests.transports.test_streamable_http import modern, modern_headers

    async with two_replicas(target) as (url, front), fresh_connections() as http:
        listen = modern(1, "subscriptions/listen", notifications={
            "resourceSubscriptions": ["notes://l"]})
        async with http.stream("POST", url, headers=modern_headers("subscriptions/listen"),
                               json=listen) as response:  # on a
            assert response.status_code == 200
            events = sse_events(response)
            acknowledged = await next_message(events)
            assert acknowledged.data["method"] == "notifications/subscriptions/acknowledged"
            client = LegacyClient(url, http)
            await client.initialize()  # b, a
            await client.call("tools/call", {"name": "add_note",  # b
                                             "arguments": {"name": "l", "body": "x"}})
            assert front.served == [0, 1, 0, 1]
            update = await next_message(events)
            assert update.data["method"] == "notifications/resources/updated"
            assert update.data["params"]["uri"] == "notes://l"
