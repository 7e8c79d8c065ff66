"""A gateway task that drives an upstream task (a tool the upstream runs only as a
task) follows it: for as long as the task lives, not the upstream's per-request
timeout; with the upstream's status mirrored; with its questions relayed to
the task's owner; failing at once when the upstream dies.

Upstream: the Python test upstream over stdio, pinned to 2025-11-25, with a
short per-request timeout (1 s) that every task here outlives.  Downstream:
our client in 2025-11-25 on a memory pair.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from mobius_rpc.core.errors import McpError
from mobius_rpc.gateway import Gateway
from mobius_rpc.gateway.tasks import upstream_task_status
from tests.conftest import connect

from .conftest import FAST, local_server, py_entry

pytestmark = pytest.mark.anyio

REVISION = "2025-11-25"
RELATED = "io.modelcontextprotocol/related-task"
#: the upstream's per-request timeout (seconds): the tasks below take longer
TIMEOUT = 1.0


async def gateway_server(tmp_path: Path, gateways: list[Gateway], *,
                         timeout: float = TIMEOUT) -> Any:
    entry = py_entry("py", UPSTREAM_MARKER=str(tmp_path / "marker"),
                     UPSTREAM_RELEASE=str(tmp_path / "release"))
    entry.update(timeout=timeout, protocolVersion=REVISION)
    server = local_server()
    gateway = Gateway({"py": entry}, options=FAST).attach(server)
    gateways.append(gateway)
    await gateway.wait_ready()
    return server


def marks(tmp_path: Path) -> list[str]:
    path = tmp_path / "marker"
    return path.read_text().splitlines() if path.exists() else []


async def wait_mark(tmp_path: Path, prefix: str) -> str:
    with anyio.fail_after(10):
        while True:
            found = [m for m in marks(tmp_path) if m.startswith(prefix)]
            if found:
                return found[0]
            await anyio.sleep(0.02)


async def start(client: Any, name: str, arguments: dict[str, Any] | None = None,
                ttl: int = 60_000) -> str:
    created = await client.request("tools/call", {"name": name, "arguments": arguments or {},
                                                  "task": {"ttl": ttl}})
    task_id: str = created["task"]["taskId"]
    return task_id


async def poll_until(client: Any, task_id: str, **wanted: Any) -> dict[str, Any]:
    """tasks/get until the gateway task shows ``wanted`` (a hang guard, not a timing)."""
    with anyio.fail_after(10):
        while True:
            task: dict[str, Any] = await client.request("tasks/get", {"taskId": task_id})
            if all(task.get(k) == v for k, v in wanted.items()):
                return task
            await anyio.sleep(0.05)


async def test_a_task_longer_than_the_request_timeout_completes(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    server = await gateway_server(tmp_path, gateways)
    async with connect(server, revision=REVISION) as client:
        tools = {t["name"]: t for t in (await client.list_tools())["tools"]}
        assert tools["py__long_task"]["execution"] == {"taskSupport": "required"}
        task_id = await start(client, "py__long_task", {"seconds": 2.5 * TIMEOUT})
        result = await client.request("tasks/result", {"taskId": task_id})
        assert result["content"][0]["text"] == f"long done after {2.5 * TIMEOUT}"
        assert result["_meta"][RELATED] == {"taskId": task_id}
        assert (await client.request("tasks/get", {"taskId": task_id}))["status"] == "completed"


async def test_an_optional_tool_as_a_task_may_outlast_the_request_timeout(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    """An ``optional`` tool run as a gateway task is a plain upstream call, bounded
    by the task's lifetime rather than by one request's timeout."""
    server = await gateway_server(tmp_path, gateways)
    async with connect(server, revision=REVISION) as client:
        tools = {t["name"]: t for t in (await client.list_tools())["tools"]}
        assert tools["py__long_optional"]["execution"] == {"taskSupport": "optional"}
        task_id = await start(client, "py__long_optional", {"seconds": 2.5 * TIMEOUT})
        result = await client.request("tasks/result", {"taskId": task_id})
        assert result["content"][0]["text"] == f"long optional done after {2.5 * TIMEOUT}"
        with pytest.raises(McpError):  # called plainly, the request timeout still holds
            await client.call_tool("py__long_optional", {"seconds": 2.5 * TIMEOUT})


async def test_the_status_message_follows_the_upstreams(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    server = await gateway_server(tmp_path, gateways)
    async with connect(server, revision=REVISION) as client:
        await client.list_tools()
        task_id = await start(client, "py__phases_task")
        shown = await poll_until(client, task_id, statusMessage="fetching")
        assert shown["status"] == "working"
        (tmp_path / "release.fetching").touch()
        await poll_until(client, task_id, status="working", statusMessage="crunching")
        (tmp_path / "release.crunching").touch()
        result = await client.request("tasks/result", {"taskId": task_id})
        assert result["content"][0]["text"] == "phases done"
        # the downstream heard of each change, too (notifications/tasks/status)
        heard = [p.get("statusMessage") for m, p in client.notifications
                 if m == "notifications/tasks/status" and p.get("taskId") == task_id]
        assert "fetching" in heard and "crunching" in heard


async def test_an_upstream_killed_mid_task_fails_the_task_at_once(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    server = await gateway_server(tmp_path, gateways)
    async with connect(server, revision=REVISION) as client:
        await client.list_tools()
        task_id = await start(client, "py__pid_task")
        pid = int((await wait_mark(tmp_path, "pid ")).split()[1])
        await anyio.sleep(1.5 * TIMEOUT)  # past the per-request timeout: still running
        assert (await client.request("tasks/get", {"taskId": task_id}))["status"] == "working"
        os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(5), pytest.raises(McpError) as caught:
            await client.request("tasks/result", {"taskId": task_id})
        assert "session was lost" in caught.value.message
        polled = await client.request("tasks/get", {"taskId": task_id})
        assert polled["status"] == "failed" and "session was lost" in polled["statusMessage"]


async def test_a_question_mid_task_reaches_the_owner_and_the_answer_gets_back(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    server = await gateway_server(tmp_path, gateways)
    asked: list[dict[str, Any]] = []
    shown: list[dict[str, Any]] = []

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        asked.append(params)
        shown.append(await client.request("tasks/get", {"taskId": task_id}))
        await anyio.sleep(1.5 * TIMEOUT)  # a user who thinks longer than a request may take
        return {"action": "accept", "content": {"answer": "teal"}}

    async with connect(server, revision=REVISION, elicitation=elicitation) as client:
        await client.list_tools()
        task_id = await start(client, "py__ask_task", {"wait": 1.5 * TIMEOUT})
        result = await client.request("tasks/result", {"taskId": task_id})
        assert result["content"][0]["text"] == "colour teal"
    assert asked[0]["message"] == "Colour?"
    assert asked[0]["_meta"][RELATED] == {"taskId": task_id}  # the gateway's task, not upstream's
    assert shown[0]["status"] == "input_required"
    assert marks(tmp_path) == ["answer teal"]


async def test_cancelling_the_task_cancels_the_upstream_task(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    server = await gateway_server(tmp_path, gateways)
    async with connect(server, revision=REVISION) as client:
        await client.list_tools()
        task_id = await start(client, "py__hang_task")
        await wait_mark(tmp_path, "started")
        await anyio.sleep(1.5 * TIMEOUT)  # past the per-request timeout: still running
        cancelled = await client.request("tasks/cancel", {"taskId": task_id})
        assert cancelled["status"] == "cancelled"
        await wait_mark(tmp_path, "cancelled")  # tasks/cancel reached the upstream task
        with pytest.raises(McpError) as caught:
            await client.request("tasks/result", {"taskId": task_id})
        assert "cancelled" in caught.value.message


async def test_an_upstream_task_cancelled_upstream_ends_cancelled(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    server = await gateway_server(tmp_path, gateways)
    async with connect(server, revision=REVISION) as client:
        await client.list_tools()
        task_id = await start(client, "py__self_cancel_task")
        with pytest.raises(McpError):
            await client.request("tasks/result", {"taskId": task_id})
        polled = await client.request("tasks/get", {"taskId": task_id})
        assert polled["status"] == "cancelled"


async def test_the_wait_is_bounded_by_the_tasks_ttl(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    """With a long per-request timeout, a task whose ttl runs out first is given up
    (and cancelled upstream) at its ttl."""
    server = await gateway_server(tmp_path, gateways, timeout=120.0)
    async with connect(server, revision=REVISION) as client:
        await client.list_tools()
        await start(client, "py__hang_task", ttl=3000)  # given up at 2.7 s
        await wait_mark(tmp_path, "started")
        await wait_mark(tmp_path, "cancelled")  # within 10 s, far below the 120 s timeout


async def test_a_question_asked_as_the_task_starts_reaches_the_owner(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    """Asked at once: the question may arrive right after the task's creation, before
    any poll; it must still find this task's owner (not be refused as unrelated)."""
    server = await gateway_server(tmp_path, gateways)

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        return {"action": "accept", "content": {"answer": params["_meta"][RELATED]["taskId"]}}

    async with connect(server, revision=REVISION, elicitation=elicitation) as client:
        await client.list_tools()
        for _ in range(3):
            task_id = await start(client, "py__ask_task")
            result = await client.request("tasks/result", {"taskId": task_id})
            assert result["content"][0]["text"] == f"colour {task_id}"


async def test_an_upstream_status_notification_is_shown_at_once(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    """``upstream_task_status`` (the hook for an upstream's notifications/tasks/status)
    updates the gateway task following that upstream task, and only that one."""
    server = await gateway_server(tmp_path, gateways)
    upstream = gateways[0].upstreams["py"]
    async with connect(server, revision=REVISION) as client:
        await client.list_tools()
        task_id = await start(client, "py__phases_task")
        upstream_id = (await wait_mark(tmp_path, "task ")).split()[1]
        await poll_until(client, task_id, statusMessage="fetching")  # followed by now
        assert not upstream_task_status(upstream, {"taskId": "no-such-task"})
        assert upstream_task_status(upstream, {"taskId": upstream_id, "status": "working",
                                               "statusMessage": "notified"})
        with anyio.fail_after(10):
            while not any(p.get("statusMessage") == "notified" and p.get("taskId") == task_id
                          for m, p in client.notifications):
                await anyio.sleep(0.02)
        (tmp_path / "release.fetching").touch()
        (tmp_path / "release.crunching").touch()
        await client.request("tasks/result", {"taskId": task_id})
        assert not upstream_task_status(upstream, {"taskId": upstream_id})  # it ended


async def test_questions_of_two_owners_tasks_go_each_to_its_owner(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    """Two downstream sessions' tasks on one upstream, both asking: each question
    goes to the session whose task asks (by the upstream's related-task _meta)."""
    server = await gateway_server(tmp_path, gateways)
    gateways[0].upstreams["py"].client.session.ambiguous_wait = 1.0  # fail fast if not

    def answer(who: str) -> Any:
        async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
            return {"action": "accept", "content": {"answer": who}}
        return elicitation

    async with connect(server, revision=REVISION, elicitation=answer("ann")) as ann, \
            connect(server, revision=REVISION, elicitation=answer("bob")) as bob:
        await ann.list_tools()
        ann_task = await start(ann, "py__ask_task", {"wait": 0.5})
        bob_task = await start(bob, "py__ask_task", {"wait": 0.5})
        got = {}

        async def result(who: str, client: Any, task_id: str) -> None:
            got[who] = (await client.request("tasks/result", {"taskId": task_id}))
        async with anyio.create_task_group() as tg:
            tg.start_soon(result, "ann", ann, ann_task)
            tg.start_soon(result, "bob", bob, bob_task)
    assert {who: r["content"][0]["text"] for who, r in got.items()} == {
        "ann": "colour ann", "bob": "colour bob"}
