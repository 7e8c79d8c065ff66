"""A legacy Streamable HTTP POST serves its request in its own task.

What that must not change, on a real uvicorn server: messages sent before
the answer stream while the handler still runs, ``notifications/cancelled``
and DELETE still stop the handler (and the POST is not left waiting for an
answer that will never come), and requests of one session still run side by
side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx
import orjson
import pytest

from mobius_rpc.server.app import Server
from mobius_rpc.server.context import Context
from tests.conftest import serve_asgi
from tests.transports.test_streamable_http import legacy_session, sse_messages

pytestmark = pytest.mark.anyio


class Probe:
    def __init__(self) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.cancelled = anyio.Event()
        self.finished = False


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Probe]]:
    probe = Probe()
    server = Server("inline-test")

    @server.tool()
    async def hold(ctx: Context) -> str:
        """Report progress, then wait until the test releases it."""
        await ctx.report_progress(1, 2, "waiting")
        probe.started.set()
        await probe.release.wait()
        probe.finished = True
        return "released"

    @server.tool()
    async def wait_forever() -> str:
        """Sleep until cancelled."""
        probe.started.set()
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            probe.cancelled.set()
            raise
        probe.finished = True
        return "woke"

    @server.tool()
    def echo(text: str) -> str:
        """Echo."""
        return text

    @server.tool()
    def cancelled_meanwhile(ctx: Context) -> str:
        """Finish, but only after the peer's cancel for this request landed.

        Fed to the connection directly: a cancel that arrives while a handler
        runs without a checkpoint, which no cancel scope can interrupt.
        """
        ctx.session.connection.receive(orjson.dumps({
            "jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": ctx.request_id}}), 0.0)
        probe.finished = True
        return "finished anyway"

    async with serve_asgi(server.asgi_app().app) as base:
        yield f"http://{base}/mcp", probe


def call(request_id: int, name: str, **arguments: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments,
                       "_meta": {"progressToken": f"p{request_id}"}}}


async def test_progress_streams_before_the_handler_returns(served: tuple[str, Probe]) -> None:
    url, probe = served
    async with httpx.AsyncClient(timeout=10) as client:
        headers = await legacy_session(client, url)
        with anyio.fail_after(10):
            async with client.stream("POST", url, headers=headers, json=call(1, "hold")) as reply:
                assert reply.headers["content-type"].startswith("text/event-stream")
                seen: list[dict[str, Any]] = []
                async for line in reply.aiter_lines():
                    if line.startswith("data:") and line[5:].strip():
                        seen.append(orjson.loads(line[5:]))
                        if seen[-1].get("method") == "notifications/progress":
                            # The handler is still waiting: this came out ahead of it.
                            assert not probe.finished
                            probe.release.set()
                        if "id" in seen[-1]:
                            break
        assert [m.get("method") for m in seen] == ["notifications/progress", None]
        assert seen[-1]["result"]["content"][0]["text"] == "released"


async def post_while(client: httpx.AsyncClient, url: str, headers: dict[str, str],
                     body: dict[str, Any], probe: Probe,
                     meanwhile: Callable[[], Awaitable[None]]) -> httpx.Response:
    """POST ``body``; once its handler has started, run ``meanwhile``; the POST's reply."""
    replies: list[httpx.Response] = []

    async def post() -> None:
        replies.append(await client.post(url, headers=headers, json=body))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(post)
            await probe.started.wait()
            await meanwhile()
    return replies[0]


async def test_cancelled_request_stops_and_its_post_ends(served: tuple[str, Probe]) -> None:
    url, probe = served
    async with httpx.AsyncClient(timeout=10) as client:
        headers = await legacy_session(client, url)

        async def cancel() -> None:
            note = await client.post(url, headers=headers, json={
                "jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": 5, "reason": "test"}})
            assert note.status_code == 202
            await probe.cancelled.wait()

        reply = await post_while(client, url, headers, call(5, "wait_forever"), probe, cancel)
        # No answer is owed for a cancelled request: an event stream with none.
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert sse_messages(reply.text) == []
        assert not probe.finished
        ping = await client.post(url, headers=headers,
                                 json={"jsonrpc": "2.0", "id": 6, "method": "ping"})
        assert ping.json() == {"jsonrpc": "2.0", "id": 6, "result": {}}


async def test_an_answer_dropped_for_a_late_cancel_does_not_hold_its_post(
        served: tuple[str, Probe]) -> None:
    # The handler finishes, but the peer cancelled the request meanwhile: the
    # connection drops the answer, and the POST must end without one.
    url, probe = served
    async with httpx.AsyncClient(timeout=10) as client:
        headers = await legacy_session(client, url)
        with anyio.fail_after(5):
            reply = await client.post(url, headers=headers, json=call(7, "cancelled_meanwhile"))
        assert probe.finished
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert sse_messages(reply.text) == []
        ping = await client.post(url, headers=headers,
                                 json={"jsonrpc": "2.0", "id": 8, "method": "ping"})
        assert ping.json() == {"jsonrpc": "2.0", "id": 8, "result": {}}


async def test_deleting_the_session_stops_its_running_request(
        served: tuple[str, Probe]) -> None:
    url, probe = served
    async with httpx.AsyncClient(timeout=10) as client:
        headers = await legacy_session(client, url)

        async def delete() -> None:
            assert (await client.delete(url, headers=headers)).status_code == 200
            await probe.cancelled.wait()

        reply = await post_while(client, url, headers, call(1, "wait_forever"), probe, delete)
        assert reply.status_code == 200 and sse_messages(reply.text) == []
        gone = await client.post(url, headers=headers,
                                 json={"jsonrpc": "2.0", "id": 2, "method": "ping"})
        assert gone.status_code == 404


async def test_requests_of_one_session_still_run_side_by_side(
        served: tuple[str, Probe]) -> None:
    url, probe = served
    async with httpx.AsyncClient(timeout=10) as client:
        headers = await legacy_session(client, url)

        async def echo_then_release() -> None:
            echoed = await client.post(url, headers=headers,
                                       json=call(2, "echo", text="meanwhile"))
            assert echoed.json()["result"]["content"][0]["text"] == "meanwhile"
            assert not probe.finished
            probe.release.set()

        held = await post_while(client, url, headers, call(1, "hold"), probe, echo_then_release)
        messages = sse_messages(held.text)
        assert messages[-1]["result"]["content"][0]["text"] == "released"
