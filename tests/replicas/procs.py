"""Real replicas for the two-replica tests: ``mobius serve --http --store URL``
processes, and a round-robin TCP proxy in front of them.

The proxy hands each new TCP connection to the next replica in turn (skipping a
replica that refuses the connection, as a load balancer's health check would),
and copies bytes both ways until either side closes.  It knows nothing of HTTP:
with clients that open a connection per request, consecutive requests of one
session reach alternate replicas.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import SocketStream

URL_LINE = re.compile(r"Streamable HTTP .*: (http://127\.0\.0\.1:\d+)/mcp")


@dataclass
class Replica:
    process: subprocess.Popen[str]
    port: int
    stderr: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def close(self) -> None:
        """Once the process ended: wait for the reader, close the pipe."""
        if self.reader is not None:
            self.reader.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()


def start_replica(store_url: str, name: str) -> Replica:
    """One ``mobius serve --http`` on a free port with the demo fixture, on the store."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MOBIUS_STORE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "mobius_rpc", "--log-level", "WARNING", "serve", "--http",
         "--port", "0", "--fixture", "demo", "--store", store_url, "--no-auth"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=env)
    assert process.stderr is not None
    lines: list[str] = []
    for line in process.stderr:
        lines.append(line)
        found = URL_LINE.search(line)
        if found:
            port = int(found.group(1).rsplit(":", 1)[1])
            break
    else:
        process.wait(10)
        raise AssertionError(f"replica {name} did not start: {''.join(lines)}")
    replica = Replica(process, port, lines)

    def drain() -> None:  # keep reading stderr so the replica never blocks on it
        assert process.stderr is not None
        for line in process.stderr:
            replica.stderr.append(line)

    replica.reader = threading.Thread(target=drain, daemon=True)
    replica.reader.start()
    return replica


@dataclass
class Proxy:
    ports: list[int]
    port: int = 0
    turn: int = 0
    connections: list[int] = field(default_factory=list)  # the replica index of each

    async def _backend(self) -> tuple[int, SocketStream]:
        for _ in range(len(self.ports)):
            index = self.turn % len(self.ports)
            self.turn += 1
            try:
                return index, await anyio.connect_tcp("127.0.0.1", self.ports[index])
            except OSError:
                continue  # down: the next one
        raise OSError("no replica accepts connections")

    async def handle(self, client: SocketStream) -> None:
        async with client:
            try:
                index, backend = await self._backend()
            except OSError:
                return
            self.connections.append(index)
            async with backend, anyio.create_task_group() as tg:
                async def pipe(source: SocketStream, sink: SocketStream) -> None:
                    try:
                        async for chunk in source:
                            await sink.send(chunk)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(pipe, client, backend)
                tg.start_soon(pipe, backend, client)


@asynccontextmanager
async def round_robin(ports: list[int]) -> AsyncIterator[Proxy]:
    proxy = Proxy(ports)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    proxy.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy.handle)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()
