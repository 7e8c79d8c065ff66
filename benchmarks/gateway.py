"""Gateway overhead per ``tools/call``: through ``mobius serve --gateway`` against
calling the same upstream directly, in the same run.

    .venv/bin/python benchmarks/gateway.py [--n 2000] [--in-flight 16] [--rounds 3]
        [--transports stdio,http] [--revision 2025-11-25] [--json out.json]

The upstream is our own server (``mobius serve``).  Over stdio the direct path
spawns it as a child; the gateway path spawns ``mobius serve --stdio --gateway
cfg.json`` whose config launches the same command as its upstream.  Over HTTP
one upstream process (``mobius serve --http``) is called directly and by a
gateway process (``mobius serve --http --gateway cfg.json``) that reaches it over
Streamable HTTP.  The driver is our ``Client`` on both paths, pinned to one
revision, calling ``echo`` (direct) and ``up__echo`` (gateway).

Per path: p50 and mean latency with one call in flight (M=1), and throughput
with ``--in-flight`` calls kept in flight.  Rounds interleave direct and gateway
so that the machine's drift hits both alike; the numbers are medians over rounds.
Ratios: latency gateway/direct (target <= 1.3), throughput gateway/direct
(target >= 0.7).  CPU columns: microseconds of CPU per call spent by the process
the client talks to (the upstream when direct, the gateway process itself when
through the gateway), which a loaded machine disturbs less than wall time.
Nothing is asserted: these are numbers.

``--floor`` adds a labelled extra row over stdio: ``benchmarks/pipe_relay.py``
(a process that copies bytes and parses nothing) where the gateway would be,
i.e. what one more process and two more pipe crossings cost by themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mobius_rpc.client import Client, HttpTarget, StdioTarget  # noqa: E402

SERVE = [sys.executable, "-m", "mobius_rpc", "serve", "--fixture", "demo"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (Linux /proc), 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def http_server(*extra: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    process = subprocess.Popen([*SERVE, "--http", "--port", str(port), "--no-auth", *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}/mcp", process.pid
    finally:
        process.terminate()
        process.wait(10)


async def measure(client: Client, tool: str, n: int, in_flight: int,
                  pid: int | None) -> dict[str, float]:
    args = {"text": "hello"}
    for _ in range(50):  # warm-up
        await client.call_tool(tool, args)
    cpu = cpu_seconds(pid)
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        await client.call_tool(tool, args)
        latencies.append((time.perf_counter() - started) * 1e6)
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await client.call_tool(tool, args)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(in_flight):
            tg.start_soon(worker)
    elapsed = time.perf_counter() - started
    return {"p50_us": statistics.median(latencies), "mean_us": statistics.fmean(latencies),
            "loaded_rps": n / elapsed,
            "server_cpu_us": (cpu_seconds(pid) - cpu) / (2 * n) * 1e6}


async def run_transport(kind: str, args: argparse.Namespace, workdir: Path
                        ) -> dict[str, dict[str, float]]:
    config = workdir / f"{kind}.json"
    rounds: dict[str, list[dict[str, float]]] = {"direct": [], "gateway": []}
    if kind == "stdio" and args.floor:
        rounds["relay"] = []
        rounds["relay_asyncio"] = []
    if args.general:
        rounds["general"] = []

    async def one(path: str, target: Any, tool: str, pid: int | None = None) -> None:
        async with Client(target, revision=args.revision, timeout=30) as client:
            await client.list_tools()  # the gateway connects its upstream first
            stream = getattr(client, "_stream", None)
            pid = pid or getattr(stream, "pid", None)
            rounds[path].append(await measure(client, tool, args.n, args.in_flight, pid))

    if kind == "stdio":
        entry: dict[str, Any] = {"command": SERVE[0], "args": [*SERVE[1:], "--stdio"]}
        if args.upstream_revision != "probe":
            entry["protocolVersion"] = args.upstream_revision
        config.write_text(json.dumps({"mcpServers": {"up": entry}}))
        direct = StdioTarget(SERVE[0], (*SERVE[1:], "--stdio"))
        gateway = StdioTarget(SERVE[0], (*SERVE[1:], "--stdio", "--gateway", str(config),
                                         "--gateway-pins", "off"))
        relay = StdioTarget(sys.executable, (str(ROOT / "benchmarks" / "pipe_relay.py"),
                                             *SERVE, "--stdio"))
        relay_asyncio = StdioTarget(sys.executable, (
            str(ROOT / "benchmarks" / "pipe_relay_asyncio.py"), *SERVE, "--stdio"))
        general = StdioTarget(SERVE[0], (*SERVE[1:], "--stdio", "--gateway", str(config),
                                         "--gateway-pins", "off", "--gateway-lane", "off"))
        for _ in range(args.rounds):
            await one("direct", direct, "echo")
            await one("gateway", gateway, "up__echo")
            if "general" in rounds:
                await one("general", general, "up__echo")
            if "relay" in rounds:
                await one("relay", relay, "echo")
                await one("relay_asyncio", relay_asyncio, "echo")
    else:
        with http_server() as (upstream_url, upstream_pid):
            entry = {"type": "http", "url": upstream_url}
            if args.upstream_revision != "probe":
                entry["protocolVersion"] = args.upstream_revision
            config.write_text(json.dumps({"mcpServers": {"up": entry}}))
            lane_off = ("--gateway-lane", "off") if args.general else ()
            with http_server("--gateway", str(config), "--gateway-pins", "off") as (gw_url,
                                                                                      gw_pid), \
                    http_server("--gateway", str(config), "--gateway-pins", "off",
                                *lane_off) as (general_url, general_pid):
                for _ in range(args.rounds):
                    await one("direct", HttpTarget(upstream_url), "echo", upstream_pid)
                    await one("gateway", HttpTarget(gw_url), "up__echo", gw_pid)
                    if "general" in rounds:
                        await one("general", HttpTarget(general_url), "up__echo", general_pid)
    return {path: {key: statistics.median(r[key] for r in samples) for key in samples[0]}
            for path, samples in rounds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="calls per measurement")
    parser.add_argument("--in-flight", type=int, default=16, help="calls in flight under load")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--transports", default="stdio,http")
    parser.add_argument("--revision", default="2025-11-25")
    parser.add_argument("--upstream-revision", metavar="REV",
                        help="the revision the gateway speaks to its upstream (default: "
                             "--revision, like for like with the direct path; 'probe': "
                             "what it negotiates itself, 2026-07-28 with our server)")
    parser.add_argument("--floor", action="store_true",
                        help="stdio: also measure byte-copying relay processes (threads, "
                             "and an asyncio loop) where the gateway would be, as extra rows")
    parser.add_argument("--general", action="store_true",
                        help="also measure the gateway with its lane off (--gateway-lane off: "
                             "every call on the general path), as an extra row")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    args.upstream_revision = args.upstream_revision or args.revision
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.transports.split(","):
            numbers = anyio.run(run_transport, kind, args, Path(tmp))
            direct, gateway = numbers["direct"], numbers["gateway"]
            results.append({"transport": kind, "revision": args.revision, **{
                f"{path}_{key}": value for path, row in numbers.items()
                for key, value in row.items()},
                "latency_ratio": gateway["p50_us"] / direct["p50_us"],
                "throughput_ratio": gateway["loaded_rps"] / direct["loaded_rps"]})
            results[-1]["upstream_revision"] = args.upstream_revision
            for path in ("relay", "relay_asyncio", "general"):
                if path in numbers:
                    relay = numbers[path]
                    results[-1].update({
                        f"{path}_latency_ratio": relay["p50_us"] / direct["p50_us"],
                        f"{path}_throughput_ratio": relay["loaded_rps"] / direct["loaded_rps"]})
    print(f"tools/call through the gateway vs direct ({args.revision}, gateway to upstream "
          f"{args.upstream_revision}, n={args.n}, M={args.in_flight} under load, median of "
          f"{args.rounds} rounds)")
    print(f"{'transport':9} {'direct p50':>11} {'gw p50':>9} {'ratio':>6} "
          f"{'direct req/s':>13} {'gw req/s':>9} {'ratio':>6} {'upstream cpu':>13} "
          f"{'gw cpu':>8}")
    for row in results:
        print(f"{row['transport']:9} {row['direct_p50_us']:9.0f}us {row['gateway_p50_us']:7.0f}us"
              f" {row['latency_ratio']:6.2f} {row['direct_loaded_rps']:13.0f}"
              f" {row['gateway_loaded_rps']:9.0f} {row['throughput_ratio']:6.2f}"
              f" {row['direct_server_cpu_us']:11.0f}us {row['gateway_server_cpu_us']:6.0f}us")
    for row in results:
        if "general_p50_us" in row:
            print(f"{row['transport']:9} {'gateway, lane off:':>21} {row['general_p50_us']:7.0f}us"
                  f" {row['general_latency_ratio']:6.2f} {'':13}"
                  f" {row['general_loaded_rps']:9.0f} {row['general_throughput_ratio']:6.2f}"
                  f" {'':13} {row['general_server_cpu_us']:6.0f}us")
        for path, label in (("relay", "byte relay, threads:"),
                            ("relay_asyncio", "byte relay, asyncio:")):
            if f"{path}_p50_us" in row:
                print(f"{row['transport']:9} {label:>21} {row[f'{path}_p50_us']:7.0f}us"
                      f" {row[f'{path}_latency_ratio']:6.2f} {'':13}"
                      f" {row[f'{path}_loaded_rps']:9.0f} {row[f'{path}_throughput_ratio']:6.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
