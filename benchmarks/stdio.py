"""stdio benchmark: Mobius RPC next to a bare loop and the official SDK, in one run.

Prints numbers; asserts nothing.  For each server it measures, over a real
subprocess and its pipes:

* ``tools/call`` echo round-trip latency, one request in flight: p50, p99, mean;
* throughput: sequential, and with 64 requests in flight (pipelined);
* cold start: spawn to the ``initialize`` (or first modern) response, median;
* peak RSS of the server process (``VmHWM``).

Servers: ``bare`` (an orjson echo loop, the floor), ``mobius`` (legacy era,
2025-11-25), ``mobius-modern`` (2026-07-28, per-request ``_meta``), ``sdk``
(the official Python SDK low-level server, when ``mcp`` is installed).  The
driver is a raw asyncio pipe client, so its cost is the same for every server.

    python benchmarks/stdio.py [--n 5000] [--servers bare,mobius,mobius-modern,sdk]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
               "io.modelcontextprotocol/clientCapabilities": {},
               "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"}}


@dataclass
class Target:
    name: str
    command: list[str]
    modern: bool = False

    def handshake(self) -> list[dict[str, Any]]:
        if self.modern:
            return [{"jsonrpc": "2.0", "id": 0, "method": "server/discover",
                     "params": {"_meta": MODERN_META}}]
        return [{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "0"}}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"}]

    def call(self, request_id: int) -> bytes:
        params: dict[str, Any] = {"name": "echo", "arguments": {"text": "hello"}}
        if self.modern:
            params["_meta"] = MODERN_META
        return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                             "params": params}) + b"\n"


@dataclass
class Result:
    name: str
    latencies_us: list[float] = field(default_factory=list)
    sequential_rps: float = 0.0
    pipelined_rps: float = 0.0
    cold_start_ms: float = 0.0
    peak_rss_mb: float = 0.0

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies_us)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Pipe:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stdin is not None and process.stdout is not None
        self.stdin = process.stdin
        self.stdout = process.stdout

    async def send(self, data: bytes) -> None:
        self.stdin.write(data)
        await self.stdin.drain()

    async def read(self) -> dict[str, Any]:
        while True:
            line = await self.stdout.readline()
            if not line:
                raise RuntimeError("the server closed stdout")
            message = orjson.loads(line)
            if "id" in message and "method" not in message:
                if "error" in message:
                    raise RuntimeError(f"server error: {message['error']}")
                return message


async def start(target: Target) -> tuple[Pipe, float]:
    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *target.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, limit=1 << 22)
    pipe = Pipe(process)
    for message in target.handshake():
        await pipe.send(orjson.dumps(message) + b"\n")
    await pipe.read()
    return pipe, (time.perf_counter() - began) * 1000


async def stop(pipe: Pipe) -> None:
    pipe.stdin.close()
    try:
        await asyncio.wait_for(pipe.process.wait(), 5)
    except TimeoutError:
        pipe.process.kill()
        await pipe.process.wait()


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def measure(target: Target, n: int, in_flight: int, starts: int) -> Result:
    result = Result(target.name)
    colds = []
    for _ in range(starts):
        pipe, cold = await start(target)
        colds.append(cold)
        await stop(pipe)
    result.cold_start_ms = statistics.median(colds)

    pipe, _ = await start(target)
    next_id = 1
    for _ in range(min(500, n)):  # warm-up
        await pipe.send(target.call(next_id))
        await pipe.read()
        next_id += 1
    began = time.perf_counter()
    for _ in range(n):
        sent = time.perf_counter()
        await pipe.send(target.call(next_id))
        await pipe.read()
        result.latencies_us.append((time.perf_counter() - sent) * 1e6)
        next_id += 1
    result.sequential_rps = n / (time.perf_counter() - began)

    began = time.perf_counter()
    outstanding = 0
    sent_count = 0
    received = 0
    while received < n:
        while outstanding < in_flight and sent_count < n:
            pipe.stdin.write(target.call(next_id))
            next_id += 1
            sent_count += 1
            outstanding += 1
        await pipe.stdin.drain()
        await pipe.read()
        received += 1
        outstanding -= 1
    result.pipelined_rps = n / (time.perf_counter() - began)
    result.peak_rss_mb = peak_rss_mb(pipe.process.pid)
    await stop(pipe)
    return result


def targets(python: str) -> dict[str, Target]:
    found = {
        "bare": Target("bare", [python, str(HERE / "bare_echo.py")]),
        "mobius": Target("mobius", [python, "-m", "mobius_rpc", "serve",
                                    "--fixture", "demo", "--stdio"]),
        "mobius-modern": Target("mobius-modern", [python, "-m", "mobius_rpc", "serve",
                                                  "--fixture", "demo", "--stdio"],
                                modern=True),
    }
    if importlib.util.find_spec("mcp") is not None:
        found["sdk"] = Target("sdk", [python, str(HERE / "sdk_lowlevel_echo.py")])
    return found


def report(results: list[Result]) -> str:
    bare = next((r for r in results if r.name == "bare"), None)
    header = (f"{'server':<15}{'p50 us':>9}{'p99 us':>9}{'mean us':>9}{'seq req/s':>11}"
              f"{'@64 req/s':>11}{'cold ms':>9}{'RSS MB':>8}{'p50/bare':>10}{'@64/bare':>10}")
    lines = [header, "-" * len(header)]
    for r in results:
        ratio = f"{r.p(0.5) / bare.p(0.5):.2f}x" if bare else "-"
        tput = f"{r.pipelined_rps / bare.pipelined_rps:.2f}x" if bare else "-"
        lines.append(f"{r.name:<15}{r.p(0.5):>9.1f}{r.p(0.99):>9.1f}"
                     f"{statistics.fmean(r.latencies_us):>9.1f}{r.sequential_rps:>11.0f}"
                     f"{r.pipelined_rps:>11.0f}{r.cold_start_ms:>9.1f}{r.peak_rss_mb:>8.1f}"
                     f"{ratio:>10}{tput:>10}")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="requests per measurement")
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--starts", type=int, default=5, help="spawns for the cold start")
    parser.add_argument("--servers", default="bare,mobius,mobius-modern,sdk")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    available = targets(sys.executable)
    chosen = [name for name in args.servers.split(",") if name in available]
    results = [await measure(available[name], args.n, args.in_flight, args.starts)
               for name in chosen]
    print(f"stdio tools/call echo, n={args.n}, {args.in_flight} in flight, "
          f"python {sys.version.split()[0]}")
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps([{
            "server": r.name, "p50_us": r.p(0.5), "p99_us": r.p(0.99),
            "sequential_rps": r.sequential_rps, "pipelined_rps": r.pipelined_rps,
            "cold_start_ms": r.cold_start_ms, "peak_rss_mb": r.peak_rss_mb} for r in results],
            indent=2))


if __name__ == "__main__":
    asyncio.run(main())
