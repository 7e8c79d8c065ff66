"""CPU instructions per Streamable HTTP tools/call, Mobius next to the bare handler.

Wall-clock throughput on a shared 2-core host drifts by a third between runs
(see ``streamable_http.py``); instruction counts do not.  This runs each
server (the same two as ``streamable_http.py``: ``mobius serve --http`` and
the bare Starlette JSON handler, one uvicorn worker on 127.0.0.1) under
``valgrind --tool=callgrind`` and sends it tools/call requests one after
another on one keep-alive connection, checking every answer.  Two runs per
server and era, with ``--base`` and ``--base + --requests`` calls, cancel
out start-up and shutdown: their difference divided by ``--requests`` is
what one request costs, uvicorn's HTTP parsing and the socket work included.

Instructions are not time (Python code with more branches and cache misses
runs at fewer instructions per cycle), so the ratio here is an upper bound on
the throughput ratio, repeatable to a fraction of a percent.

    python benchmarks/http_instructions.py [--requests 500] [--base 50]
        [--eras modern,legacy] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
from callgrind import (
    MeasurementError,
    callgrind_command,
    collected,
    per_request,
    require_valgrind,
)
from streamable_http import (
    ACCEPT,
    ERAS,
    LEGACY,
    MODERN_HEADERS,
    SUCCESS_MARK,
    BenchmarkError,
    call_body,
    free_port,
    server_command,
)


def post(conn: http.client.HTTPConnection, body: dict[str, object],
         headers: dict[str, str]) -> http.client.HTTPResponse:
    conn.request("POST", "/mcp", orjson.dumps(body), headers)
    reply = conn.getresponse()
    reply.read()
    return reply


def drive(port: int, era: str, calls: int) -> None:
    """Send ``calls`` checked tools/call requests on one connection (after a session
    handshake in the legacy era)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = dict(MODERN_HEADERS)
    if era == "legacy":
        conn.request("POST", "/mcp", orjson.dumps({
            "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": LEGACY, "capabilities": {},
                "clientInfo": {"name": "bench", "version": "0"}}}), ACCEPT)
        init = conn.getresponse()
        init.read()
        session = init.getheader("mcp-session-id")
        if init.status != 200 or not session:
            raise BenchmarkError(f"initialize answered {init.status}")
        headers = {**ACCEPT, "Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY}
        if post(conn, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                headers).status != 202:
            raise BenchmarkError("notifications/initialized was not accepted")
    for request_id in range(1, calls + 1):
        conn.request("POST", "/mcp", orjson.dumps(call_body(era, request_id)), headers)
        reply = conn.getresponse()
        body = reply.read()
        if reply.status != 200 or SUCCESS_MARK.encode() not in body:
            raise BenchmarkError(f"{era} call {request_id}: {reply.status} {body[:200]!r}")
    conn.close()


def instructions(kind: str, era: str, calls: int, workdir: Path) -> int:
    """Instructions a whole server process ran while serving ``calls`` requests."""
    port = free_port()
    out = workdir / f"callgrind.{kind}.{era}.{calls}"
    proc = subprocess.Popen(callgrind_command(out, server_command(kind, port, workdir)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise BenchmarkError(f"{kind} server exited: {proc.stderr.read()[-500:]}"
                                     if proc.stderr else f"{kind} server exited")
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"{kind} server did not start under valgrind") from None
                time.sleep(0.2)
        drive(port, era, calls)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return collected(stderr or "", kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=500,
                        help="requests whose cost is measured (default 500)")
    parser.add_argument("--base", type=int, default=50,
                        help="requests of the baseline run that is subtracted (default 50)")
    parser.add_argument("--eras", default="modern,legacy", help="comma-separated: modern, legacy")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    eras = [era.strip() for era in args.eras.split(",")]
    if unknown := [era for era in eras if era not in ERAS]:
        parser.error(f"unknown era(s) {unknown}; choose from {sorted(ERAS)}")
    if args.requests < 1 or args.base < 1:
        parser.error("--requests and --base must be at least 1")
    require_valgrind("http_instructions.py")
    servers = [(kind, era) for era in eras for kind in ("bare", "mobius")]
    runs = [(server, calls) for server in servers
            for calls in (args.base, args.base + args.requests)]
    with tempfile.TemporaryDirectory(prefix="mobius-instr-") as tmp, \
            ThreadPoolExecutor(max_workers=2) as pool:  # counts do not depend on contention
        totals = dict(zip(runs, pool.map(
            lambda run: instructions(*run[0], run[1], Path(tmp)), runs), strict=True))
    cost = per_request(totals, servers, args.base, args.requests)
    print(f"Instructions per tools/call over Streamable HTTP (callgrind; {args.requests} "
          f"requests on one connection, minus a {args.base}-request run)")
    print(f"{'era':<8}{'mobius':>14}{'bare':>14}{'bare/mobius':>13}")
    for era in eras:
        mobius, bare = cost[("mobius", era)], cost[("bare", era)]
        print(f"{era:<8}{mobius:>14,.0f}{bare:>14,.0f}{bare / mobius:>12.2f}x")
    if args.json:
        args.json.write_text(json.dumps([
            {"era": era, "server": kind, "instructions_per_request": value}
            for (kind, era), value in cost.items()], indent=2))


if __name__ == "__main__":
    try:
        main()
    except (BenchmarkError, MeasurementError) as exc:
        raise SystemExit(f"http_instructions.py: FAILED: {exc}") from None
