"""Shared fixtures: client/server pairs over the real runtime.

``connect`` serves a ``Server`` object in-process over the memory pair;
``open_demo`` gives the same client over either the memory pair or a real
``mobius serve --stdio`` subprocess, so feature tests run on both.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any

import anyio
import pytest
import uvicorn

from mobius_rpc.client.session import ClientSession
from mobius_rpc.demo import build_demo_server
from mobius_rpc.server.app import Server
from mobius_rpc.transports.http_client import HttpSseClientStream, StreamableHTTPClientStream
from mobius_rpc.transports.memory import memory_pair
from mobius_rpc.transports.process import ProcessTransport
from mobius_rpc.transports.websocket import WebSocketClientStream

SERVE_STDIO = [sys.executable, "-m", "mobius_rpc", "serve", "--fixture", "demo", "--stdio"]

# Every Python subprocess a test starts dumps its threads' stacks to its stderr if it
# dies of a fatal signal (SIGSEGV and the like), so that a rare crash seen in a run
# says where it happened; it prints nothing otherwise.
os.environ.setdefault("PYTHONFAULTHANDLER", "1")

# Every test, and every `mobius` subprocess a test starts, gets a data directory of
# its own run: the user's real ~/.local/share/mobius (its store, keys and saved
# logins) is never read or migrated by the suite.  Tests that need an empty store
# still set MOBIUS_HOME themselves.
os.environ["MOBIUS_HOME"] = _TEST_HOME = tempfile.mkdtemp(prefix="mobius-test-home-")
atexit.register(shutil.rmtree, _TEST_HOME, True)

# pytester runs the conformance plugin the way another project would use it
pytest_plugins = ("pytester",)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def client_on(stream: Any, tg: Any, revision: str,
                    **client_kw: Any) -> AsyncIterator[ClientSession]:
    """An initialized ClientSession on ``stream``, closed (and its stream) on exit."""
    client = ClientSession(stream, **client_kw)
    await client.start(tg)
    await client.initialize(revision)
    try:
        yield client
    finally:
        with anyio.move_on_after(5):
            await client.aclose()


@asynccontextmanager
async def connect(server: Server, *, revision: str = "2025-11-25",
                  **client_kw: Any) -> AsyncIterator[ClientSession]:
    """Serve ``server`` on one end of a memory pair and an initialized client on the other."""
    server_end, client_end = memory_pair()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, server_end)
            async with client_on(client_end, tg, revision, **client_kw) as client:
                yield client
            tg.cancel_scope.cancel()


@asynccontextmanager
async def connect_stdio(command: list[str] | None = None, *, revision: str = "2025-11-25",
                        **client_kw: Any) -> AsyncIterator[ClientSession]:
    """An initialized client on a real server subprocess over stdio."""
    transport = ProcessTransport(command or SERVE_STDIO)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await transport.start(tg)
            async with client_on(transport, tg, revision, **client_kw) as client:
                yield client


@asynccontextmanager
async def serve_asgi(app: Any, *, sock: socket.socket | None = None,
                     **config: Any) -> AsyncIterator[str]:
    """Run ``app`` on a real uvicorn bound to a free loopback port (or on ``sock``,
    bound by a caller that needed its port first); yields ``host:port``.
    ``config`` goes to ``uvicorn.Config`` as it is (TLS files, limits).

    On exit uvicorn is asked to stop and closes its own sockets before the task
    group is torn down.
    """
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on",
                                           log_level="warning", timeout_graceful_shutdown=3,
                                           **config))
    stopped = anyio.Event()

    async def run() -> None:
        try:
            await server.serve(sockets=[sock] if sock is not None else None)
        finally:
            stopped.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.01)
        try:
            yield f"127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        finally:
            server.should_exit = True
            with anyio.move_on_after(5):
                await stopped.wait()
            tg.cancel_scope.cancel()


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run ``app`` on a real uvicorn in a thread (for synchronous clients); yields
    ``http://127.0.0.1:PORT``."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on",
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


@asynccontextmanager
async def connect_network(kind: str, *, revision: str = "2025-11-25",
                          server: Server | None = None,
                          **client_kw: Any) -> AsyncIterator[ClientSession]:
    """An initialized client on ``server`` (default: the demo) served by a real
    uvicorn on loopback, over Streamable HTTP (``http``), HTTP+SSE (``sse``) or
    WebSocket (``ws``)."""
    served = server if server is not None else build_demo_server()
    with anyio.fail_after(30):
        async with serve_asgi(served.asgi_app().app) as base, \
                anyio.create_task_group() as tg:
            stream: Any
            if kind == "http":
                stream = StreamableHTTPClientStream(f"http://{base}/mcp", tg)
            elif kind == "sse":
                stream = HttpSseClientStream(f"http://{base}/sse", tg)
                await stream.start()
            else:
                stream = await WebSocketClientStream.connect(f"ws://{base}/ws")
            # the client (and its connections) closes before the server stops
            async with client_on(stream, tg, revision, **client_kw) as client:
                yield client
            tg.cancel_scope.cancel()


OpenDemo = Callable[..., AbstractAsyncContextManager[ClientSession]]


@pytest.fixture
def demo() -> Server:
    return build_demo_server()


CONTRACT_TRANSPORTS = ["memory", "stdio", "http", "sse", "ws"]


@pytest.fixture(params=CONTRACT_TRANSPORTS)
def open_demo(request: pytest.FixtureRequest) -> OpenDemo:
    """A factory: ``async with open_demo(revision=..., sampling=...) as client``.

    The contract suite: every test that takes it runs over the memory pair, a
    stdio subprocess, Streamable HTTP, HTTP+SSE and WebSocket.
    """
    kind = request.param
    if kind == "memory":
        return lambda **kw: connect(build_demo_server(), **kw)
    if kind == "stdio":
        return lambda **kw: connect_stdio(**kw)
    return lambda **kw: connect_network(kind, **kw)
