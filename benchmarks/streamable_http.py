"""Streamable HTTP benchmark: M concurrent sessions calling a tool, next to a bare
Starlette JSON handler on the same uvicorn, in one run.  Prints numbers only.

Two servers run as separate processes (uvicorn, one worker, bound to 127.0.0.1):
``mobius serve --http`` and a bare Starlette handler that answers the same
JSON-RPC body with no MCP machinery.  For each M (default 1, 8, 32) both are
loaded by the same load generator in interleaved slices (bare, mobius, mobius,
bare, ... ``--rounds`` each), so that a machine whose speed drifts (a shared
host does) slows both alike:

* ``wrk`` (the default when it is on PATH): ``wrk -t min(M,2) -c M -d SECS
  --latency`` with a generated Lua script that sets the request and counts
  every non-200 status and every body that is not a successful echo result;
  any such response, or any socket error, fails the run.
* ``python`` (the fallback): M httpx clients in this process, one connection
  each.  It uses a whole core by itself and leaves the server mostly idle, so
  it measures itself rather than the server.

Each row also shows the CPU the server process used per wall second (from
/proc): near 100% means the server, not the load generator, was the limit.

Eras: ``modern`` (2026-07-28, the default) sends self-contained POSTs - no
session, the version and client capabilities in ``params._meta`` and the
``MCP-Protocol-Version``/``Mcp-Method``/``Mcp-Name`` headers.  ``legacy``
(2025-11-25) first opens M sessions from Python, then the load cycles through
their ``Mcp-Session-Id`` values with a fresh request id per call.  Before any
load, one request per server and era is sent with httpx and must come back 200
with a non-error result.

    python benchmarks/streamable_http.py [--duration 5] [--rounds 3] [--sessions 1,8,32]
        [--eras modern,legacy] [--generator auto|wrk|python] [--pin] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import orjson
from bench_servers import BenchmarkError, Server, free_port, listening

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
ERAS = {"modern": MODERN, "legacy": LEGACY}
TOOL = "echo"
TEXT = "hello"
#: every successful echo result from either server contains this, byte for byte
SUCCESS_MARK = '"isError":false'
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
MODERN_META = {"io.modelcontextprotocol/protocolVersion": MODERN,
               "io.modelcontextprotocol/clientCapabilities": {},
               "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"}}
MODERN_HEADERS = {**ACCEPT, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call",
                  "Mcp-Name": TOOL}
TARGET_RATIO = 0.8
TARGET_P99_MS = 10.0
TARGET_P99_SESSIONS = 32

BARE_APP = '''
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

INFO = {"name": "bare", "version": "0"}


async def mcp(request: Request) -> Response:
    message = orjson.loads(await request.body())
    if "id" not in message:
        return Response(status_code=202)
    params = message.get("params") or {}
    if message.get("method") == "initialize":
        result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                  "serverInfo": INFO}
    else:
        text = params["arguments"]["text"]
        result = {"content": [{"type": "text", "text": text}],
                  "structuredContent": {"result": text}, "isError": False}
        if "_meta" in params:
            result["resultType"] = "complete"
            result["_meta"] = {"io.modelcontextprotocol/serverInfo": INFO}
    return Response(orjson.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}),
                    media_type="application/json", headers={"mcp-session-id": "bare"})

app = Starlette(routes=[Route("/mcp", mcp, methods=["POST"])])
'''


class Sample(NamedTuple):
    """What one load run reports."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int


@dataclass
class Point:
    """One measurement: a server under one load for one duration."""

    era: str
    server: str
    sessions: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    server_cpu: float | None  # CPU seconds the server used per wall second (1.0 = a core)


# --------------------------------------------------------------------------- servers


def pinned(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that confines the child (and every thread it starts) to ``cpus``."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def split_cpus() -> tuple[set[int], set[int]]:
    """``--pin``'s split: the first CPU for the server, the others for this process
    and what it starts later (wrk), to which it moves now.  ValueError with fewer
    than 2 CPUs."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        raise ValueError("--pin needs at least 2 CPUs")
    server, load = {available[0]}, set(available[1:])
    os.sched_setaffinity(0, load)
    return server, load


def server_command(kind: str, port: int, workdir: Path) -> list[str]:
    """The command line of a benchmark server: ``bare`` (the Starlette handler, whose
    app file is written into ``workdir``) or ``mobius serve`` on the demo fixture."""
    if kind == "bare":
        (workdir / "bare_http_app.py").write_text(BARE_APP)
        return [sys.executable, "-m", "uvicorn", "--app-dir", str(workdir), "bare_http_app:app",
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--log-level", "warning"]
    return [sys.executable, "-m", "mobius_rpc", "serve", "--fixture", "demo", "--http",
            "--host", "127.0.0.1", "--port", str(port), "--no-auth"]


@contextmanager
def running(kind: str, workdir: Path, cpus: set[int] | None = None) -> Iterator[Server]:
    """Start one server process on loopback (on ``cpus`` if given); uvicorn runs in it."""
    port = free_port()
    command = server_command(kind, port, workdir)
    with listening(kind, command, port, startup=20, preexec_fn=pinned(cpus)) as server:
        yield server


# --------------------------------------------------------------------------- requests


def call_body(era: str, request_id: int) -> dict[str, Any]:
    params: dict[str, Any] = {"name": TOOL, "arguments": {"text": TEXT}}
    if era == "modern":
        params["_meta"] = MODERN_META
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def legacy_headers(session_id: str) -> dict[str, str]:
    return {**ACCEPT, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": LEGACY}


def open_legacy_sessions(url: str, count: int) -> list[str]:
    """Initialize ``count`` legacy sessions and return their ids."""
    ids: list[str] = []
    with httpx.Client(timeout=10) as client:
        for _ in range(count):
            init = client.post(url, headers=ACCEPT, json={
                "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": LEGACY, "capabilities": {},
                    "clientInfo": {"name": "bench", "version": "0"}}})
            session_id = init.headers.get("mcp-session-id")
            if init.status_code != 200 or not session_id:
                raise BenchmarkError(f"initialize failed: {init.status_code} {init.text[:200]}")
            done = client.post(url, headers=legacy_headers(session_id),
                               json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            if done.status_code != 202:
                raise BenchmarkError(f"notifications/initialized answered {done.status_code}")
            ids.append(session_id)
    return ids


def check_one_call(url: str, era: str, headers: dict[str, str]) -> None:
    """Send one tools/call with httpx; it must be a 200 carrying a non-error echo result."""
    reply = httpx.post(url, headers=headers, json=call_body(era, 1), timeout=10)
    problem = None
    if reply.status_code != 200:
        problem = f"status {reply.status_code}"
    else:
        result = reply.json().get("result")
        if not isinstance(result, dict) or result.get("isError") is not False:
            problem = "no result or an error result"
        elif result["content"][0]["text"] != TEXT:
            problem = "the echo text differs"
        elif era == "modern" and result.get("resultType") != "complete":
            problem = "no resultType on a modern result"
        elif SUCCESS_MARK not in reply.text:
            problem = f"the body lacks {SUCCESS_MARK}, which the load generator looks for"
    if problem:
        raise BenchmarkError(f"{era} check request to {url}: {problem}: {reply.text[:300]}")


# --------------------------------------------------------------------------- wrk


def lua_string(text: str) -> str:
    """``text`` as a double-quoted Lua string literal."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif " " <= char <= "~":
            out.append(char)
        else:
            out.extend(f"\\{byte}" for byte in char.encode())
    return '"' + "".join(out) + '"'


def lua_table(headers: dict[str, str]) -> str:
    return "{" + ", ".join(f"[{lua_string(k)}] = {lua_string(v)}"
                           for k, v in headers.items()) + "}"


# Counts failures per thread; done() sums them and prints one line the harness parses.
LUA_CHECKS = """
local threads = {}
function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

non200 = 0
not_ok = 0
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  elseif not string.find(body, %(mark)s, 1, true) then
    not_ok = not_ok + 1
  end
end

function done(summary, latency, requests)
  local bad_status, bad_body = 0, 0
  for _, thread in ipairs(threads) do
    bad_status = bad_status + thread:get("non200")
    bad_body = bad_body + thread:get("not_ok")
  end
  local e = summary.errors
  io.write(string.format(
    "@@bench requests=%%d non200=%%d not_ok=%%d connect=%%d read=%%d write=%%d timeout=%%d\\n",
    summary.requests, bad_status, bad_body, e.connect, e.read, e.write, e.timeout))
end
"""


def modern_script() -> str:
    """Every request is the same self-contained POST: wrk builds it once."""
    lines = ['wrk.method = "POST"',
             f"wrk.body = {lua_string(orjson.dumps(call_body('modern', 1)).decode())}"]
    lines += [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in MODERN_HEADERS.items()]
    return "\n".join(lines) + LUA_CHECKS % {"mark": lua_string(SUCCESS_MARK)}


def legacy_script(session_ids: list[str], threads: int) -> str:
    """Thread k cycles through sessions k, k+threads, ...; ids never repeat in a session."""
    body = orjson.dumps(call_body("legacy", 0)).decode().replace('"id":0', '"id":%d', 1)
    tables = ",\n  ".join(lua_table(legacy_headers(sid)) for sid in session_ids)
    return f"""
wrk.method = "POST"
local all_headers = {{
  {tables}
}}
local body_format = {lua_string(body)}
local mine = {{}}
local sent = 0
function init(args)
  for i = index + 1, #all_headers, {threads} do
    table.insert(mine, all_headers[i])
  end
end
function request()
  sent = sent + 1
  return wrk.format(nil, nil, mine[(sent % #mine) + 1], string.format(body_format, sent))
end
""" + LUA_CHECKS % {"mark": lua_string(SUCCESS_MARK)}


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_latency_ms(output: str, percent: int) -> float:
    found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.MULTILINE)
    if not found:
        raise BenchmarkError(f"no {percent}% latency line in wrk output:\n{output}")
    return float(found.group(1)) * _UNITS_MS[found.group(2)]


def parse_wrk(output: str) -> Sample:
    """Requests/sec, p50 ms, p99 ms and the request count; raise on any failed request."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    counts = re.search(r"^@@bench (.*)$", output, re.MULTILINE)
    if not rps or not counts:
        raise BenchmarkError(f"unexpected wrk output:\n{output}")
    fields = {key: int(value) for key, value in
              (pair.split("=") for pair in counts.group(1).split())}
    failures = {key: value for key, value in fields.items() if key != "requests" and value}
    if failures:
        raise BenchmarkError(f"requests failed {failures}:\n{output}")
    return Sample(float(rps.group(1)), parse_latency_ms(output, 50),
                  parse_latency_ms(output, 99), fields["requests"])


def run_wrk(url: str, script: Path, sessions: int, seconds: int) -> Sample:
    threads = min(sessions, 2)
    command = ["wrk", "-t", str(threads), "-c", str(sessions), "-d", f"{seconds}s",
               "--latency", "-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise BenchmarkError(f"wrk exited with {done.returncode}: {done.stderr}{done.stdout}")
    return parse_wrk(done.stdout)


def wrk_version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" [")[0] if first else "wrk"


# --------------------------------------------------------------------------- python fallback


async def python_session(url: str, era: str, headers: dict[str, str], until: float,
                         latencies: list[float]) -> None:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=1)) as client:
        request_id = 0
        while time.perf_counter() < until:
            request_id += 1
            began = time.perf_counter()
            reply = await client.post(url, headers=headers, json=call_body(era, request_id))
            latencies.append(time.perf_counter() - began)
            if reply.status_code != 200 or SUCCESS_MARK not in reply.text:
                raise BenchmarkError(f"request failed: {reply.status_code} {reply.text[:300]}")


async def python_load(url: str, era: str, header_sets: list[dict[str, str]],
                      seconds: int) -> Sample:
    latencies: list[float] = []
    began = time.perf_counter()
    await asyncio.gather(*(python_session(url, era, headers, began + seconds, latencies)
                           for headers in header_sets))
    elapsed = time.perf_counter() - began
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return Sample(len(latencies) / elapsed, p50, p99, len(latencies))


# --------------------------------------------------------------------------- the run


def measure(server: Server, era: str, sessions: int, seconds: int, generator: str,
            workdir: Path) -> tuple[Sample, float | None]:
    """Load ``server`` with ``sessions`` concurrent sessions; the sample and the server's CPU."""
    if era == "modern":
        session_ids: list[str] = []
        header_sets = [MODERN_HEADERS] * sessions
    else:
        session_ids = open_legacy_sessions(server.url, sessions)
        header_sets = [legacy_headers(sid) for sid in session_ids]
    script: Path | None = None
    if generator == "wrk":
        script = workdir / f"{era}-{sessions}.lua"
        script.write_text(modern_script() if era == "modern"
                          else legacy_script(session_ids, min(sessions, 2)))
    cpu_before, began = server.cpu_seconds(), time.perf_counter()
    if script is not None:
        sample = run_wrk(server.url, script, sessions, seconds)
    else:
        sample = asyncio.run(python_load(server.url, era, header_sets, seconds))
    elapsed, cpu_after = time.perf_counter() - began, server.cpu_seconds()
    cpu = None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) / elapsed
    return sample, cpu


def combine(slices: list[tuple[Sample, float | None]]) -> tuple[float, float, float, int,
                                                               float | None]:
    """One point from equal-length slices: mean req/s, median p50 and p99, total
    requests, mean server CPU."""
    def median(values: list[float]) -> float:
        ordered = sorted(values)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    samples = [sample for sample, _ in slices]
    cpus = [cpu for _, cpu in slices if cpu is not None]
    return (sum(s.rps for s in samples) / len(samples), median([s.p50_ms for s in samples]),
            median([s.p99_ms for s in samples]), sum(s.requests for s in samples),
            sum(cpus) / len(cpus) if cpus else None)


def pick_generator(choice: str) -> str:
    if choice == "python":
        return "python"
    if shutil.which("wrk"):
        return "wrk"
    if choice == "wrk":
        raise SystemExit("streamable_http.py: --generator wrk, but wrk is not on PATH "
                         "(Debian/Ubuntu: apt-get install wrk)")
    print("NOTE: wrk is not on PATH; falling back to the Python (httpx) load generator. It "
          "saturates a core by itself, so above one session it measures itself, not the server. "
          "Install wrk (apt-get install wrk) for meaningful numbers.", file=sys.stderr)
    return "python"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def percent(cpu: float | None) -> str:
    return "?" if cpu is None else f"{cpu * 100:.0f}"


def print_table(era: str, counts: list[int], points: dict[tuple[str, str, int], Point],
                round_ratios: dict[tuple[str, int], list[float]]) -> None:
    print(f"\n{era} era ({ERAS[era]}), tools/call {TOOL!r}, JSON answers")
    print(f"{'M':>4}{'mobius req/s':>14}{'bare req/s':>12}{'ratio':>8}{'mobius p99':>12}"
          f"{'bare p99':>10}{'ratio>=' + format(TARGET_RATIO, 'g'):>12}"
          f"{f'p99<={TARGET_P99_MS:g}ms@{TARGET_P99_SESSIONS}':>15}{'server CPU% m/b':>17}"
          "  ratio per round")
    for m in counts:
        mobius, bare = points[(era, "mobius", m)], points[(era, "bare", m)]
        ratio = mobius.rps / bare.rps
        p99_target = (verdict(mobius.p99_ms <= TARGET_P99_MS) if m == TARGET_P99_SESSIONS
                      else "-")
        cpu = f"{percent(mobius.server_cpu)}/{percent(bare.server_cpu)}"
        rounds = " ".join(f"{r:.2f}" for r in round_ratios[(era, m)])
        print(f"{m:>4}{mobius.rps:>14.0f}{bare.rps:>12.0f}{ratio:>7.2f}x"
              f"{mobius.p99_ms:>10.2f}ms{bare.p99_ms:>8.2f}ms"
              f"{verdict(ratio >= TARGET_RATIO):>12}{p99_target:>15}{cpu:>17}  {rounds}")
    if TARGET_P99_SESSIONS not in counts:
        print(f"(the p99 target applies at M={TARGET_P99_SESSIONS}, which was not measured)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=int, default=5,
                        help="whole seconds of load per server and point (default 5)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="slices per server and point, interleaved between the two "
                             "servers; each lasts --duration (default 3)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="seconds of load per server and era before measuring (0: none)")
    parser.add_argument("--sessions", default="1,8,32", help="comma-separated values of M")
    parser.add_argument("--eras", default="modern", help="comma-separated: modern, legacy")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto",
                        help="auto: wrk when it is on PATH, else the Python generator")
    parser.add_argument("--pin", action="store_true",
                        help="pin the servers to one CPU and the load generator to the others")
    parser.add_argument("--json", type=Path, help="also write the points to this file")
    args = parser.parse_args()
    counts = [int(n) for n in args.sessions.split(",")]
    eras = [era.strip() for era in args.eras.split(",")]
    if unknown := [era for era in eras if era not in ERAS]:
        parser.error(f"unknown era(s) {unknown}; choose from {sorted(ERAS)}")
    if args.duration < 1 or args.rounds < 1 or min(counts) < 1:
        parser.error("--duration, --rounds and every session count must be at least 1")
    generator = pick_generator(args.generator)
    server_cpus: set[int] | None = None
    if args.pin:
        try:
            server_cpus, _ = split_cpus()
        except ValueError as error:
            parser.error(str(error))
    points: dict[tuple[str, str, int], Point] = {}
    # mobius/bare per round: each round's two slices ran back to back, so the
    # spread of these says how far the machine drifted during the point.
    round_ratios: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="mobius-bench-") as tmp:
        workdir = Path(tmp)
        with running("bare", workdir, server_cpus) as bare, \
                running("mobius", workdir, server_cpus) as mobius:
            for era in eras:
                for server in (bare, mobius):
                    check_one_call(server.url, era, MODERN_HEADERS if era == "modern" else
                                   legacy_headers(open_legacy_sessions(server.url, 1)[0]))
                    if args.warmup > 0:
                        measure(server, era, max(counts), args.warmup, generator, workdir)
                for m in counts:
                    # Interleaved slices (bare, mobius, mobius, bare, ...), so that
                    # drift in the machine's speed hits both servers alike.
                    slices: dict[str, list[tuple[Sample, float | None]]] = {"bare": [],
                                                                          "mobius": []}
                    for round_no in range(args.rounds):
                        order = (bare, mobius) if round_no % 2 == 0 else (mobius, bare)
                        for server in order:
                            slices[server.kind].append(
                                measure(server, era, m, args.duration, generator, workdir))
                    for kind, taken in slices.items():
                        points[(era, kind, m)] = Point(era, kind, m, *combine(taken))
                    paired = zip(slices["mobius"], slices["bare"], strict=True)
                    round_ratios[(era, m)] = [ours.rps / theirs.rps
                                              for (ours, _), (theirs, _) in paired]
    if generator == "wrk":
        load = f"{wrk_version()} (-t min(M,2) -c M --latency)"
    else:
        load = "the Python httpx generator (one connection per session)"
        if args.generator == "auto":
            load += " because wrk is not on PATH"
    print(f"Streamable HTTP benchmark: load from {load}; per point and server {args.rounds} "
          f"slices of {args.duration} s, interleaved with the other server's (req/s: their "
          "mean; p50/p99: their median)")
    print("servers: separate processes, uvicorn with 1 worker on 127.0.0.1"
          + (f"; pinned to CPU {sorted(server_cpus)}, load elsewhere" if server_cpus else ""))
    print(f"NOTE: this machine has {os.cpu_count()} CPU cores, shared by the load generator and "
          "the server under test; absolute numbers are low and noisy, compare the ratios.")
    for era in eras:
        print_table(era, counts, points, round_ratios)
    if args.json:
        args.json.write_text(json.dumps(
            [{**asdict(p), "round_ratios": round_ratios[(p.era, p.sessions)]}
             for p in points.values()], indent=2))


if __name__ == "__main__":
    try:
        main()
    except BenchmarkError as exc:
        raise SystemExit(f"streamable_http.py: FAILED: {exc}") from None
