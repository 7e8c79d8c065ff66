"""The stateless (2026-07-28) POST path: served in the POST's own task.

What the fast path must keep: a client that leaves an SSE answer cancels its
request, work a handler starts beside itself runs and ends with the request,
notifications alone get 202, and the transport's fallback (no lifespan
running) behaves the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import orjson
import pytest

from mobius_rpc.core.events import RequestReceived
from mobius_rpc.server.app import Server
from mobius_rpc.server.context import Context
from mobius_rpc.transports.http_session import status_for
from tests.conftest import serve_asgi

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
META = {"io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "exchange-test", "version": "1"}}


def call(rid: int, tool: str, arguments: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call",
            "params": {"_meta": {**META, **meta}, "name": tool, "arguments": arguments}}


def headers(tool: str) -> dict[str, str]:
    return {**ACCEPT, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call",
            "Mcp-Name": tool}


class Probe:
    """What the tools below saw happen to them."""

    def __init__(self) -> None:
        self.cancelled = anyio.Event()
        self.background_ran = anyio.Event()
        self.background_cancelled = anyio.Event()


def probe_server(probe: Probe) -> Server:
    server = Server("exchange-test", revisions=())

    @server.tool()
    async def wait_forever(ctx: Context) -> str:
        """Report progress once, then wait until cancelled."""
        await ctx.report_progress(1, 2, "started")
        try:
            await anyio.sleep_forever()
        finally:
            probe.cancelled.set()
        return "unreachable"

    @server.tool()
    async def start_background(ctx: Context) -> str:
        """Start work beside the request that outlives its answer."""
        async def work() -> None:
            probe.background_ran.set()
            try:
                await anyio.sleep_forever()
            finally:
                probe.background_cancelled.set()

        ctx.session.start_soon(work)
        await probe.background_ran.wait()
        return "started"

    return server


@pytest.fixture(params=["lifespan", "no-lifespan"])
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Probe]]:
    probe = Probe()
    app = probe_server(probe).http_app()
    if request.param == "lifespan":
        async with serve_asgi(app) as base:
            yield f"http://{base}/mcp", probe
        return
    # Without the lifespan the transport lends each request a task group of its own.
    async def no_lifespan(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await app(scope, receive, send)

    async with serve_asgi(no_lifespan) as base:
        yield f"http://{base}/mcp", probe


async def test_leaving_an_sse_answer_cancels_the_request(served: tuple[str, Probe]) -> None:
    url, probe = served
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("POST", url, headers=headers("wait_forever"),
                                 json=call(1, "wait_forever", {}, progressToken="p")) as reply:
            assert reply.headers["content-type"].startswith("text/event-stream")
            async for line in reply.aiter_lines():
                if line.startswith("data:"):
                    assert orjson.loads(line[5:])["method"] == "notifications/progress"
                    break
    with anyio.fail_after(5):
        await probe.cancelled.wait()


async def test_work_started_beside_a_request_ends_with_it(served: tuple[str, Probe]) -> None:
    url, probe = served
    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.post(url, headers=headers("start_background"),
                                  json=call(1, "start_background", {}))
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["result"]["content"][0]["text"] == "started"
    with anyio.fail_after(5):
        await probe.background_cancelled.wait()


async def test_notifications_alone_get_202(served: tuple[str, Probe]) -> None:
    url, _ = served
    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.post(url, headers={**ACCEPT, "MCP-Protocol-Version": MODERN},
                                  json={"jsonrpc": "2.0", "method": "notifications/cancelled",
                                        "params": {"requestId": 1}})
    assert reply.status_code == 202 and reply.content == b""


def test_status_of_an_answer() -> None:
    assert status_for(b'{"jsonrpc":"2.0","id":1,"result":{"text":"no error here"}}') == 200
    # "error" inside a result is not an error answer
    assert status_for(b'{"jsonrpc":"2.0","id":1,"result":{"error":{"code":-32601}}}') == 200
    assert status_for(b'{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"m"}}') == 404


def test_which_requests_may_send_before_their_answer() -> None:
    # A stateless request is made cancellable (served inside the transport's
    # cancel scope) only when its handling may send before the answer.
    server = probe_server(Probe())

    @server.tool()
    def plain(text: str) -> str:
        return text

    @server.request_handler("completion/complete")
    async def complete(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return {"completion": {"values": []}}

    def request(method: str, **params: Any) -> RequestReceived:
        return RequestReceived(1, method, params)

    assert server.dispatcher.may_send_early(request("tools/call", name="wait_forever")) is True
    assert server.dispatcher.may_send_early(request("tools/call", name="plain")) is False
    assert server.dispatcher.may_send_early(request("tools/call", name="plain", task={})) is True
    assert server.dispatcher.may_send_early(request("tools/call", name="no-such-tool")) is False
    assert server.dispatcher.may_send_early(request("completion/complete")) is True  # custom
    for method in ("prompts/get", "resources/read", "subscriptions/listen", "tasks/result"):
        assert server.dispatcher.may_send_early(request(method)) is True
    for method in ("tools/list", "prompts/list", "resources/list", "server/discover"):
        assert server.dispatcher.may_send_early(request(method)) is False
