"""Shared fixtures: client/server pairs over the real runtime.

``connect`` serves a ``Server`` object in-process over the memory pair;
``open_demo`` gives the same client over either the memory pair or a real
``mobius serve --stdio`` subprocess, so feature tests run on both.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import pytest

from mobius_rpc.client.session import ClientSession
from mobius_rpc.demo import build_demo_server
from mobius_rpc.server.app import Server
from mobius_rpc.transports.memory import memory_pair
from mobius_rpc.transports.process import ProcessTransport

SERVE_STDIO = [sys.executable, "-m", "mobius_rpc", "serve", "--stdio"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def connect(server: Server, *, revision: str = "2025-11-25",
                  **client_kw: Any) -> AsyncIterator[ClientSession]:
    """Serve ``server`` on one end of a memory pair and an initialized client on the other."""
    server_end, client_end = memory_pair()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, server_end)
            client = ClientSession(client_end, **client_kw)
            await client.start(tg)
            await client.initialize(revision)
            try:
                yield client
            finally:
                client.close()
                tg.cancel_scope.cancel()


@asynccontextmanager
async def connect_stdio(command: list[str] | None = None, *, revision: str = "2025-11-25",
                        **client_kw: Any) -> AsyncIterator[ClientSession]:
    """An initialized client on a real server subprocess over stdio."""
    transport = ProcessTransport(command or SERVE_STDIO)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await transport.start(tg)
            client = ClientSession(transport, **client_kw)
            await client.start(tg)
            await client.initialize(revision)
            try:
                yield client
            finally:
                client.close()


OpenDemo = Callable[..., AbstractAsyncContextManager[ClientSession]]


@pytest.fixture
def demo() -> Server:
    return build_demo_server()


@pytest.fixture(params=["memory", "stdio"])
def open_demo(request: pytest.FixtureRequest) -> OpenDemo:
    """A factory: ``async with open_demo(revision=..., sampling=...) as client``."""
    if request.param == "memory":
        return lambda **kw: connect(build_demo_server(), **kw)
    return lambda **kw: connect_stdio(**kw)
