"""The pieces under the replicas: a connection taken up past its handshake, request
ids that name their replica, and ``mobius serve --store`` on the command line."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from mobius_rpc.core.connection import Connection, Role
from mobius_rpc.core.errors import LocalProtocolError
from mobius_rpc.core.events import RequestReceived
from mobius_rpc.core.state import SessionState
from mobius_rpc.storage import open_store
from mobius_rpc.transports.http_shared import SharedSessions

from .kit import ACCEPT


def server() -> Connection:
    return Connection(Role.SERVER, info={"name": "s", "version": "1"},
                      capabilities={"tools": {}})


def test_a_restored_connection_serves_requests_without_a_handshake() -> None:
    conn = server()
    conn.restore_legacy("2025-06-18", {"name": "c", "version": "1"}, {"sampling": {}})
    assert conn.state is SessionState.READY and conn.revision == "2025-06-18"
    events = conn.receive(orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}),
                          0.0)
    assert [type(e) for e in events] == [RequestReceived]
    # what the client declared still gates what the server may ask of it
    conn.id_prefix = "r1~"
    assert conn.request("sampling/createMessage", {
        "messages": [], "maxTokens": 1}, now=0.0) == "r1~1"
    with pytest.raises(LocalProtocolError):
        conn.request("roots/list", None, now=0.0)  # not declared


@pytest.mark.parametrize("revision", ["1999-01-01", "2026-07-28"])
def test_only_a_legacy_revision_we_speak_is_restored(revision: str) -> None:
    with pytest.raises(LocalProtocolError):
        server().restore_legacy(revision, None, None)
    client = Connection(Role.CLIENT, info={"name": "c", "version": "1"})
    with pytest.raises(LocalProtocolError):
        client.restore_legacy("2025-06-18", None, None)
    ready = server()
    ready.restore_legacy("2025-06-18", None, None)
    with pytest.raises(LocalProtocolError):
        ready.restore_legacy("2025-06-18", None, None)  # only once, before anything


@pytest.mark.anyio
async def test_shared_sessions_refuse_bad_settings() -> None:
    async with open_store("memory:") as store:
        for bad in ({"session_ttl": 0}, {"poll_interval": -1}, {"replica": "a~b"},
                    {"replica": "a.b"}):
            with pytest.raises(ValueError):
                SharedSessions(store, **bad)  # type: ignore[arg-type]


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mobius_rpc", "serve", "--http", "--port", "0",
                           "--fixture", "demo", "--no-auth", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("args", "says"), [
    (["--store", "postgresql://nobody@127.0.0.1:1/none"], "cannot connect to PostgreSQL"),
    (["--store", "bogus://x"], "unknown store"),
    (["--store", "sqlite:///tmp/x.db", "--session-ttl", "0"], "--session-ttl"),
])
def test_a_store_that_cannot_be_used_is_one_line_and_status_2(args: list[str],
                                                              says: str) -> None:
    done = serve(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in done.stderr


def test_mobius_store_in_the_environment_is_used(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    env = {**os.environ, "MOBIUS_STORE": f"sqlite:///{path}", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "mobius_rpc", "serve", "--http",
                                "--port", "0", "--fixture", "demo", "--no-auth"], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        url = None
        for line in process.stderr:
            if line.startswith("Streamable HTTP"):
                url = line.rsplit(" ", 1)[1].strip()
                break
        assert url is not None
        reply = httpx.post(url, headers=ACCEPT, timeout=10, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "env", "version": "1"}}})
        session_id = reply.headers["mcp-session-id"]
        db = sqlite3.connect(path)  # written before initialize was answered
        try:
            rows = db.execute("SELECT protocol_version FROM sessions WHERE session_id = ?",
                              (session_id,)).fetchall()
        finally:
            db.close()
        assert rows == [("2025-11-25",)]
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()
