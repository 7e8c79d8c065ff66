"""A Streamable HTTP response stream cut mid-call is resumed with ``Last-Event-ID``.

A TCP proxy on loopback sits between our client and a real uvicorn serving
the demo.  It cuts the connection of one POST's SSE answer after a chosen
number of events; the client reopens the stream with GET and the event id it
saw last, and the server replays the rest from its event store.  Whatever the
cut point, every progress notification arrives exactly once, in order, and
then the result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketStream

from mobius_rpc import Context, Server
from mobius_rpc.client import Client
from mobius_rpc.demo import build_demo_server
from tests.conftest import serve_asgi

pytestmark = pytest.mark.anyio


class CuttingProxy:
    """Forwards TCP; the first POST answered with SSE is cut after ``cut_after`` events."""

    def __init__(self, upstream_port: int, cut_after: int) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.cuts = 0

    async def handle(self, client: SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", self.upstream_port) as server:
            first = await client.receive()
            is_post = first.startswith(b"POST")
            await server.send(first)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pipe, client, server, tg, False)
                tg.start_soon(self._pipe, server, client, tg, is_post)

    async def _pipe(self, source: SocketStream, sink: SocketStream, tg: anyio.abc.TaskGroup,
                    may_cut: bool) -> None:
        seen = b""
        try:
            async for chunk in source:
                await sink.send(chunk)
                if may_cut and self.cuts == 0 and b"text/event-stream" in seen + chunk:
                    seen += chunk
                    if seen.count(b"\nid:") >= self.cut_after:
                        self.cuts += 1
                        tg.cancel_scope.cancel()  # drop both directions at once
                        return
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        tg.cancel_scope.cancel()


@asynccontextmanager
async def proxied_demo(cut_after: int) -> AsyncIterator[tuple[str, CuttingProxy]]:
    async with serve_asgi(build_demo_server().asgi_app().app) as base:
        proxy = CuttingProxy(int(base.rsplit(":", 1)[1]), cut_after)
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, proxy.handle)
            try:
                yield f"http://127.0.0.1:{port}/mcp", proxy
            finally:
                tg.cancel_scope.cancel()


@pytest.mark.parametrize("cut_after", [1, 2, 4, 7])
async def test_dropped_stream_resumes_without_loss_or_duplicates(cut_after: int) -> None:
    steps: list[float] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        steps.append(value)

    with anyio.fail_after(30):
        async with proxied_demo(cut_after) as (url, proxy):
            async with Client(url, revision="2025-11-25") as client:
                result = await client.call_tool("slow_count", {"to": 8, "delay": 0.05},
                                                on_progress=progress)
            assert proxy.cuts == 1  # the stream really was cut
    assert result["content"][0]["text"] == "counted to 8"
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]


async def test_server_closed_stream_is_polled_back() -> None:
    """2025-11-25 polling: the tool ends its own SSE response mid-call; the client
    waits the server's retry delay, reconnects with Last-Event-ID and gets the rest."""
    server = Server("polling")
    closed: list[bool] = []

    @server.tool()
    async def long_job(ctx: Context) -> str:
        await ctx.report_progress(1, 2, "half way")
        closed.append(ctx.close_sse_stream())
        await anyio.sleep(0.2)
        await ctx.report_progress(2, 2, "done")
        return "job finished"

    steps: list[float] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        steps.append(value)

    with anyio.fail_after(30):
        async with serve_asgi(server.asgi_app(retry_ms=100).app) as base:
            async with Client(f"http://{base}/mcp", revision="2025-11-25") as client:
                result = await client.call_tool("long_job", {}, on_progress=progress)
            async with Client(f"http://{base}/mcp", revision="2025-06-18") as client:
                await client.call_tool("long_job", {})  # no polling before 2025-11-25
    assert result["content"][0]["text"] == "job finished"
    assert steps == [1, 2]
    assert closed == [True, False]
