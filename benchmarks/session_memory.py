"""Memory growth per POST: one long legacy session against stateless requests.

Every POST calls the demo's ``slow_count`` tool with a progress token (and,
in the session, ``logging/setLevel debug`` first), so each answer is an SSE
stream: ``--to`` progress notifications, as many log messages in a session,
then the result.  After ``--warmup`` POSTs (enough to fill the event store's
history) it sends ``--posts`` more and reports what the server grew by:

* default: ``mobius serve --http`` runs as its own process and its resident
  set (VmRSS from /proc) is read before and after; the same is then done for
  2026-07-28 stateless POSTs, which keep nothing between requests.
* ``--tracemalloc``: the server runs in this process (uvicorn in a thread),
  traced from before the warm-up, and the allocation sites that grew are
  listed by the deepest frame in mobius_rpc or sse_starlette.

    python benchmarks/session_memory.py [--posts 3000] [--warmup 400] [--to 5]
        [--tracemalloc] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "memory-bench", "version": "1"}}


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def legacy_poster(client: httpx.Client, url: str, to: int) -> Callable[[int], None]:
    reply = client.post(url, headers=ACCEPT, json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "memory-bench", "version": "1"}}})
    headers = {**ACCEPT, "Mcp-Session-Id": reply.headers["mcp-session-id"],
               "MCP-Protocol-Version": "2025-11-25"}
    client.post(url, headers=headers, json={"jsonrpc": "2.0",
                                            "method": "notifications/initialized"})
    client.post(url, headers=headers, json={"jsonrpc": "2.0", "id": -1,
                                            "method": "logging/setLevel",
                                            "params": {"level": "debug"}})

    def post(rid: int) -> None:
        answer = client.post(url, headers=headers, json={
            "jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {
                "name": "slow_count", "arguments": {"to": to, "delay": 0},
                "_meta": {"progressToken": f"t{rid}"}}})
        check(answer, to)

    return post


def modern_poster(client: httpx.Client, url: str, to: int) -> Callable[[int], None]:
    headers = {**ACCEPT, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call",
               "Mcp-Name": "slow_count"}

    def post(rid: int) -> None:
        answer = client.post(url, headers=headers, json={
            "jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {
                "name": "slow_count", "arguments": {"to": to, "delay": 0},
                "_meta": {**META, "progressToken": f"t{rid}"}}})
        check(answer, to)

    return post


def check(answer: httpx.Response, to: int) -> None:
    if not answer.headers.get("content-type", "").startswith("text/event-stream") \
            or f"counted to {to}" not in answer.text:
        raise SystemExit(f"unexpected answer: {answer.status_code} {answer.text[:200]}")


def measure_process(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for era, make in (("legacy session", legacy_poster), ("stateless", modern_poster)):
        proc = subprocess.Popen([sys.executable, "-m", "mobius_rpc", "serve", "--fixture", "demo",
                                 "--http", "--port", "0", "--no-auth"],
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            url = proc.stderr.readline().split()[-1]
            with httpx.Client(timeout=30) as client:
                post = make(client, url, args.to)
                for rid in range(1, args.warmup + 1):
                    post(rid)
                before = rss_of(proc.pid)
                started = time.perf_counter()
                for rid in range(args.warmup + 1, args.warmup + args.posts + 1):
                    post(rid)
                elapsed = time.perf_counter() - started
                grown = rss_of(proc.pid) - before
        finally:
            proc.terminate()
            proc.wait(10)
        rows.append({"era": era, "posts": args.posts, "rss_growth_bytes": grown,
                     "per_post_bytes": grown / args.posts, "posts_per_s": args.posts / elapsed})
        print(f"{era:15} {args.posts} POSTs: server RSS +{grown / 2**20:7.2f} MiB "
              f"({grown / args.posts:8.0f} B/POST), {args.posts / elapsed:.0f} POST/s")
    return rows


def measure_traced(args: argparse.Namespace) -> list[dict[str, Any]]:
    import uvicorn

    from mobius_rpc.demo import build_demo_server

    tracemalloc.start(25)
    app = build_demo_server().http_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on",
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/mcp"
    try:
        with httpx.Client(timeout=30) as client:
            post = legacy_poster(client, url, args.to)
            for rid in range(1, args.warmup + 1):
                post(rid)
            gc.collect()
            before = tracemalloc.take_snapshot()
            for rid in range(args.warmup + 1, args.warmup + args.posts + 1):
                post(rid)
            gc.collect()
            after = tracemalloc.take_snapshot()
    finally:
        server.should_exit = True
        thread.join(10)
    total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    sites: Counter[str] = Counter()
    for stat in after.compare_to(before, "traceback"):
        ours = [frame for frame in stat.traceback
                if "mobius_rpc" in frame.filename or "sse_starlette" in frame.filename]
        frame = ours[-1] if ours else stat.traceback[-1]
        sites[f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno}"] += stat.size_diff
    print(f"legacy session, {args.posts} POSTs, traced: +{total / 2**20:.2f} MiB "
          f"({total / args.posts:.0f} B/POST)")
    for site, size in sites.most_common(8):
        print(f"  {size / args.posts:8.0f} B/POST  {site}")
    return [{"era": "legacy session", "posts": args.posts, "traced_growth_bytes": total,
             "per_post_bytes": total / args.posts,
             "sites": {site: size for site, size in sites.most_common(8)}}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--to", type=int, default=5, help="progress steps per call")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    rows = measure_traced(args) if args.tracemalloc else measure_process(args)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()
