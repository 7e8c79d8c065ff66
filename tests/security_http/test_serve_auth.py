"""``mobius serve --http`` authenticates by default, as a real process on a real store.

The first start on an empty store creates the owner and prints a one-time API
token; the official Python SDK client authenticates with it; a token revoked
by ``mobius token revoke`` (another process) fails on the next request; a
second start prints how to make a token instead; ``--no-auth`` and the
conformance fixture serve without credentials and say so.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "serve-auth-test", "version": "1"}}}
HEADERS = {"accept": "application/json, text/event-stream"}


def env_for(home: Path) -> dict[str, str]:
    env = {**os.environ, "MOBIUS_HOME": str(home)}
    env.pop("MOBIUS_STORE", None)
    return env


@contextmanager
def serving(home: Path, *flags: str) -> Iterator[tuple[str, list[str]]]:
    """``mobius serve --http`` on a free port; yields its URL and its stderr lines up
    to and including the authentication notes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mobius_rpc", "serve", "--fixture", "demo",
                             "--http", "--port", str(port), *flags], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env_for(home))
    try:
        assert proc.stderr is not None
        lines = []
        for _ in range(30):
            line = proc.stderr.readline()
            assert line, f"serve ended early: {lines}"
            lines.append(line.rstrip("\n"))
            if line.startswith(("authentication: ON (store", "send it as", "WARNING")):
                break
        yield f"http://127.0.0.1:{port}/mcp", lines
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


def mobius(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mobius_rpc", *args], capture_output=True,
                          text=True, timeout=60, env=env_for(home))


def token_of(lines: list[str]) -> str:
    found = [line.rsplit(" ", 1)[-1] for line in lines if line.startswith("API token")]
    assert len(found) == 1, lines
    return found[0]


async def sdk_session(url: str, token: str) -> list[str]:
    mcp = pytest.importorskip("mcp")
    from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

    with anyio.fail_after(60):
        async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) \
                as http, mcp.Client(streamable_http_client(url, http_client=http),
                                    mode="legacy") as client:
            names = [t.name for t in (await client.list_tools()).tools]
            echoed = await client.call_tool("echo", {"text": "with a token"})
            assert echoed.content[0].text == "with a token"
            return names


@pytest.mark.peers
def test_first_start_prints_a_token_the_python_sdk_authenticates_with(tmp_path: Path) -> None:
    with serving(tmp_path) as (url, lines):
        assert any("First start on an empty store" in line for line in lines)
        token = token_of(lines)
        refused = httpx.post(url, json=INIT, headers=HEADERS, timeout=10)
        assert refused.status_code == 401 and "Bearer" in refused.headers["www-authenticate"]
        names: Any = anyio.run(sdk_session, url, token)
        assert "echo" in names
        listed = mobius(tmp_path, "token", "list", "--json")
        assert listed.returncode == 0 and token not in listed.stdout
        token_id = token[4:16]
        assert token_id in listed.stdout
        assert mobius(tmp_path, "token", "revoke", token_id).returncode == 0
        again = httpx.post(url, json=INIT, timeout=10,
                           headers={**HEADERS, "authorization": f"Bearer {token}"})
        assert again.status_code == 401
    failed = mobius(tmp_path, "audit", "search", "--method", "auth/failed", "--json")
    assert failed.returncode == 0 and failed.stdout.count('"auth/failed"') == 2
    assert token not in failed.stdout
    assert mobius(tmp_path, "audit", "verify").returncode == 0
    # a second start on the same store: no new owner, but how to make a token
    with serving(tmp_path) as (_, lines):
        assert not any(line.startswith("API token") for line in lines)
        assert any("mobius token create --user NAME --org ORG" in line for line in lines)


def test_no_auth_and_the_conformance_fixture_serve_without_credentials(tmp_path: Path) -> None:
    for flags in (("--no-auth",), ("--fixture", "conformance")):
        with serving(tmp_path, *flags) as (url, lines):
            assert lines[0].startswith("Streamable HTTP")  # the URL still comes first
            assert "authentication is OFF" in lines[-1] and flags[-1] in lines[-1]
            answer = httpx.post(url, json=INIT, headers=HEADERS, timeout=10)
            assert answer.status_code == 200
    assert not (tmp_path / "mobius.db").exists()  # nothing was opened or created


def test_a_store_that_cannot_be_opened_is_a_one_line_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mobius_rpc", "serve", "--http", "--port", "0",
                           "--store", "bogus:x"], capture_output=True, text=True, timeout=60,
                          env=env_for(tmp_path))
    assert done.returncode == 2
    assert "unknown store" in done.stderr and "Traceback" not in done.stderr
