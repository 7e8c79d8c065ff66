"""Streamable HTTP benchmark: M concurrent sessions calling a tool, next to a bare
Starlette JSON handler on the same uvicorn, in one run.  Prints numbers only.

For M = 1, 8, 32 sessions (each a legacy 2025-11-25 session with its own
Mcp-Session-Id), every session calls ``echo`` in a loop for a fixed number of
requests; we report throughput (req/s) and latency percentiles, and the same
for a handler that answers the same JSON-RPC body with no MCP machinery at all.
Servers run as separate uvicorn processes on loopback; the load comes from
this process (httpx, one connection per session).

    python benchmarks/streamable_http.py [--requests 400] [--sessions 1,8,32]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
BARE_APP = '''
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

async def mcp(request: Request) -> Response:
    message = orjson.loads(await request.body())
    if message.get("method") == "initialize":
        result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                  "serverInfo": {"name": "bare", "version": "0"}}
    elif "id" not in message:
        return Response(status_code=202)
    else:
        result = {"content": [{"type": "text", "text": message["params"]["arguments"]["text"]}],
                  "isError": False}
    return Response(orjson.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}),
                    media_type="application/json", headers={"mcp-session-id": "bare"})

app = Starlette(routes=[Route("/mcp", mcp, methods=["POST"])])
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(kind: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if kind == "bare":
        (HERE / "_bare_http_app.py").write_text(BARE_APP)
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(HERE), "_bare_http_app:app",
                   "--port", str(port), "--log-level", "warning"]
    else:
        command = [sys.executable, "-m", "mobius_rpc", "serve", "--http", "--port", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start")


async def session_load(url: str, requests: int, latencies: list[float]) -> None:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=1)) as client:
        init = await client.post(url, headers=ACCEPT, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "bench", "version": "0"}}})
        headers = {**ACCEPT, "Mcp-Session-Id": init.headers.get("mcp-session-id", ""),
                   "MCP-Protocol-Version": "2025-11-25"}
        await client.post(url, headers=headers,
                          json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        for i in range(requests):
            began = time.perf_counter()
            reply = await client.post(url, headers=headers, json={
                "jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "hello"}}})
            latencies.append(time.perf_counter() - began)
            assert reply.status_code == 200, reply.text


async def measure(url: str, sessions: int, requests: int) -> tuple[float, float, float]:
    latencies: list[float] = []
    began = time.perf_counter()
    await asyncio.gather(*(session_load(url, requests, latencies) for _ in range(sessions)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return len(latencies) / elapsed, p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per session")
    parser.add_argument("--sessions", default="1,8,32")
    args = parser.parse_args()
    counts = [int(n) for n in args.sessions.split(",")]
    rows: dict[tuple[str, int], tuple[float, float, float]] = {}
    for kind in ("bare", "mobius"):
        proc, url = start(kind)
        try:
            asyncio.run(measure(url, 1, 50))  # warm-up
            for m in counts:
                rows[(kind, m)] = asyncio.run(measure(url, m, args.requests))
        finally:
            proc.terminate()
            proc.wait(10)
    (HERE / "_bare_http_app.py").unlink(missing_ok=True)
    print(f"Streamable HTTP tools/call (JSON answers), {args.requests} requests per session")
    print(f"{'sessions':>8} {'server':<8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'req/s vs bare':>15}")
    for m in counts:
        bare = rows[("bare", m)]
        for kind in ("bare", "mobius"):
            rps, p50, p99 = rows[(kind, m)]
            print(f"{m:>8} {kind:<8}{rps:>10.0f}{p50:>9.2f}{p99:>9.2f}{rps / bare[0]:>14.2f}x")


if __name__ == "__main__":
    main()
