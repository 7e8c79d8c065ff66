"""A long legacy session on a real uvicorn server: its SSE history stays within the event
store's retention bounds, every stream the bounds keep still resumes with Last-Event-ID,
and an evicted one is refused with 410 Gone and a JSON-RPC error saying why (not 404,
which would tell the client that its whole session is gone)."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
import orjson
import pytest

from mobius_rpc import Context, Server
from mobius_rpc.client import Client, HttpTarget
from mobius_rpc.core.errors import McpError
from mobius_rpc.demo import build_demo_server
from mobius_rpc.transports.event_store import MemoryEventStore, Retention
from mobius_rpc.transports.http_client import StreamableHTTPClientStream
from tests.conftest import serve_asgi, serve_in_thread

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
#: documented in docs/architecture.md (event store): what 3,000 SSE-answered POSTs in one
#: session may add to the server's resident memory once its history is full
RSS_BOUND = 16 << 20


@contextmanager
def running(app: Any) -> Iterator[str]:
    with serve_in_thread(app) as base:
        yield f"{base}/mcp"

def session(client: httpx.Client, url: str, version: str = "2025-11-25") -> dict[str, str]:
    reply = client.post(url, headers=ACCEPT, json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "retention", "version": "1"}}})
    headers = {**ACCEPT, "Mcp-Session-Id": reply.headers["mcp-session-id"],
               "MCP-Protocol-Version": version}
    client.post(url, headers=headers, json={"jsonrpc": "2.0",
                                            "method": "notifications/initialized"})
    return headers


def count(rid: int, to: int) -> dict[str, Any]:
    """A call answered with an SSE stream: ``to`` progress notifications, then the result."""
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {
        "name": "slow_count", "arguments": {"to": to, "delay": 0},
        "_meta": {"progressToken": f"t{rid}"}}}


def events(text: str) -> list[tuple[str, str]]:
    """(id, data) of each SSE event that has an id."""
    found = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.split("\n") if ":" in line
                      and not line.startswith(":"))
        if "id" in fields:
            found.append((fields["id"].strip(), fields.get("data", "").strip()))
    return found


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_memory_of_a_long_session_stays_within_the_bounds() -> None:
    app = build_demo_server().http_app()
    bounds = Retention()  # the defaults the documentation states
    with running(app) as url, httpx.Client(timeout=30) as client:
        headers = session(client, url, "2025-06-18")
        client.post(url, headers=headers, json={
            "jsonrpc": "2.0", "id": -1, "method": "logging/setLevel",
            "params": {"level": "debug"}})

        def post(rid: int) -> None:
            reply = client.post(url, headers=headers, json=count(rid, 1))
            assert reply.headers["content-type"].startswith("text/event-stream")
            assert [orjson.loads(data).get("method") for _, data in events(reply.text)] == [
                "notifications/progress", "notifications/message", None]

        for rid in range(1, 401):  # fill the history (3 events a POST) before measuring
            post(rid)
        gc.collect()
        before = rss()
        for rid in range(401, 3401):
            post(rid)
        gc.collect()
        grown = rss() - before
        assert grown < RSS_BOUND, f"{grown / 3000:.0f} bytes per POST"
        held, size = app.hub.store.usage(headers["Mcp-Session-Id"])
        assert held == bounds.max_events  # full, and no more
        assert 0 < size <= bounds.max_bytes
        # the newest stream resumes; the first one is long gone
        last = f"{headers['Mcp-Session-Id']}.3400#0"
        again = client.get(url, headers={**headers, "Last-Event-ID": last})
        assert again.status_code == 200 and len(events(again.text)) == 3
        gone = client.get(url, headers={**headers,
                                        "Last-Event-ID": f"{headers['Mcp-Session-Id']}.1#0"})
        assert gone.status_code == 410


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_every_stream_the_bounds_keep_resumes_and_evicted_ones_are_refused() -> None:
    clock = Clock()
    bounds = Retention(max_events=22, max_bytes=1 << 20, max_age=60)
    app = build_demo_server().http_app(event_store=MemoryEventStore(bounds, clock=clock))
    with running(app) as url, httpx.Client(timeout=10) as client:
        headers = session(client, url)
        sid = headers["Mcp-Session-Id"]
        streams: list[list[tuple[str, str]]] = []  # every event of every POST, as sent
        for rid in range(1, 13):
            reply = client.post(url, headers=headers, json=count(rid, 3))
            sent = events(reply.text)
            assert sent[0] == (f"{sid}.{rid}#0", "")  # 2025-11-25: the priming event
            assert len(sent) == 5  # the priming event, 3 progress notifications, the result
            streams.append(sent)
        history = [event for sent in streams for event in sent[1:]]  # 48, in append order
        kept = set(history[-bounds.max_events:])
        resumed = refused = 0
        for sent in streams:
            for position, (last_id, _) in enumerate(sent):
                rest = sent[position + 1:]
                reply = client.get(url, headers={**headers, "Last-Event-ID": last_id})
                # replayable when every later event is kept; once none of a finished
                # stream's events is kept, the store has forgotten it altogether
                if set(rest) <= kept and kept & set(sent[1:]):
                    assert reply.status_code == 200, (last_id, reply.text)
                    assert events(reply.text) == rest  # exactly what followed, in order
                    resumed += 1
                else:
                    assert reply.status_code == 410, (last_id, reply.text)
                    error = reply.json()["error"]
                    assert "no longer retained" in error["message"]
                    assert "last 22 events" in error["message"]
                    assert error["data"] == {"lastEventId": last_id, "retained": False}
                    refused += 1
        # 22 events: the last 5 streams whole, the 2 newest events of the one before
        assert (resumed, refused) == (5 * 5 + 3, 7 * 5 - 3)
        newest = streams[-1]
        never_sent = client.get(url, headers={**headers, "Last-Event-ID": f"{sid}.12#9"})
        assert never_sent.status_code == 400
        no_such_stream = client.get(url, headers={**headers, "Last-Event-ID": f"{sid}.13#0"})
        assert no_such_stream.status_code == 400
        for odd in (f"{sid}.12#\u00b2", f"{sid}.\u00b9#1", f"{sid}.12#" + "9" * 5000,
                    f"{sid}.{'9' * 5000}#1", f"{sid}.get#-1", f"{sid}.#1", f"{sid}12#1"):
            raw = {name.encode(): value.encode() for name, value in headers.items()}
            refused_id = client.get(url, headers={**raw,
                                                  b"Last-Event-ID": odd.encode("latin-1")})
            assert refused_id.status_code == 400, odd  # not a crash: "²" is a digit to str
        clock.now += 61  # past the age bound: nothing is replayed any more
        aged = client.get(url, headers={**headers, "Last-Event-ID": newest[0][0]})
        assert aged.status_code == 410 and "no longer retained" in aged.json()["error"]["message"]
        assert app.hub.store.usage(sid) == (0, 0)
        # the session itself lives on, and its next stream resumes as before
        reply = client.post(url, headers=headers, json=count(13, 2))
        sent = events(reply.text)
        again = client.get(url, headers={**headers, "Last-Event-ID": sent[1][0]})
        assert again.status_code == 200 and events(again.text) == sent[2:]


def test_serve_takes_the_bounds_from_its_flags() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "mobius_rpc", "serve",
                             "--fixture", "demo", "--http", "--port",
                             "0", "--retain-events", "4", "--retain-seconds", "600",
                             "--no-auth"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "Streamable HTTP" in line, line
        url = line.split()[-1]
        with httpx.Client(timeout=10) as client:
            headers = session(client, url, "2025-06-18")
            sid = headers["Mcp-Session-Id"]
            for rid in (1, 2, 3):  # two events each: one progress notification, the result
                client.post(url, headers=headers, json=count(rid, 1))
            old = client.get(url, headers={**headers, "Last-Event-ID": f"{sid}.1#0"})
            assert old.status_code == 410
            assert "last 4 events" in old.json()["error"]["message"]
            assert "600 s" in old.json()["error"]["message"]
            new = client.get(url, headers={**headers, "Last-Event-ID": f"{sid}.2#0"})
            assert new.status_code == 200 and len(events(new.text)) == 2
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
    bad = subprocess.run([sys.executable, "-m", "mobius_rpc", "serve",
                          "--fixture", "demo", "--http",
                          "--retain-bytes", "-5"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2
    assert "--retain-bytes" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.anyio
async def test_our_client_gets_an_error_and_keeps_its_session_when_a_stream_was_evicted(
        ) -> None:
    """Our client resumes a stream the server closed (2025-11-25 polling); when the
    events it needs were evicted meanwhile, the call fails with the server's reason, and
    the client neither starts a new session nor runs the tool a second time (which a
    404 would make it do)."""
    clock = Clock()
    store = MemoryEventStore(Retention(max_age=60), clock=clock)
    runs: list[int] = []
    resuming = anyio.Event()
    server = Server("evicting", version="1")

    @server.tool()
    async def closes_its_stream(ctx: Context) -> str:
        """Ends its SSE response at once; the client fetches the rest with GET."""
        runs.append(1)
        ctx.close_sse_stream()
        await resuming.wait()  # nothing is sent before the client has let go
        await ctx.report_progress(1, 2)
        return "done"

    async def before_resuming(headers: dict[str, str]) -> None:
        if "last-event-id" not in headers:
            return
        resuming.set()
        session_id = headers["mcp-session-id"]
        with anyio.fail_after(5):  # the call has ended, and all it sent is stored
            while not store.finished(session_id, f"{session_id}.1"):
                await anyio.sleep(0.01)
        clock.now += 1000  # then the client is too late: all of it is past the age bound

    inner = server.http_app(event_store=store)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        # runs before the server looks the resumed stream up, whichever HTTP client sent it
        if scope["type"] == "http":
            await before_resuming({k.decode("latin-1").lower(): v.decode("latin-1")
                                   for k, v in scope["headers"]})
        await inner(scope, receive, send)

    async with serve_asgi(app) as base, \
            Client(HttpTarget(f"http://{base}/mcp"), revision="2025-11-25") as client:
        stream = client._stream
        assert isinstance(stream, StreamableHTTPClientStream)
        session_id = stream.session_id
        with pytest.raises(McpError, match="no longer retained"):
            await client.call_tool("closes_its_stream", {},
                                   on_progress=lambda *_: anyio.sleep(0))
        assert runs == [1] and not stream.session_expired
        assert stream.session_id == session_id
        assert await client.list_tools()  # the session goes on
