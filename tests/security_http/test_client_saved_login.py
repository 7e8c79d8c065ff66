"""``mobius client login`` saves its token; later, separate ``mobius client`` processes
use it, refresh it, never offer it to another server, and ``logout`` forgets it.

Everything is real: oidc-provider as the authorization server, the protected demo
server on uvicorn, each command its own Python process on an SQLite store in a
temporary ``MOBIUS_HOME`` (whose key file seals the tokens), and a user agent
(httpx) standing in for the browser.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from ..storage.conftest import pg_cluster  # noqa: F401  (the real PostgreSQL fixture)
from .test_authorization_server import provider_script  # noqa: F401  (a fixture)
from .test_client_login import login_server, protected_server

pytestmark = [pytest.mark.anyio, pytest.mark.peers]


#: the store the commands use (``$MOBIUS_STORE``); None: the default SQLite file
_STORE: dict[Path, str] = {}


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MOBIUS_STORE", "MOBIUS_CLIENT_KEY")}
    env["MOBIUS_HOME"] = str(home)
    if home in _STORE:
        env["MOBIUS_STORE"] = _STORE[home]
    return env


def _sql(home: Path, query: str) -> list[tuple[Any, ...]]:
    """Plain SQL on the commands' database, below the store."""
    if home not in _STORE:
        db = sqlite3.connect(home / "mobius.db")
        try:
            with db:
                return db.execute(query).fetchall()
        finally:
            db.close()
    import psycopg
    with psycopg.connect(_STORE[home], autocommit=True) as pg:
        pg.execute('SET search_path TO "mobius"')
        cursor = pg.execute(query)  # type: ignore[call-overload]
        return list(cursor.fetchall()) if cursor.description else []


def _stored(home: Path) -> bytes:
    """Everything the database holds of the client's tables (and the SQLite files)."""
    rows = repr(_sql(home, "SELECT * FROM client_tokens")
                + _sql(home, "SELECT * FROM client_registrations")).encode()
    return rows + (_files(home) if home not in _STORE else b"")


async def _login(url: str, home: Path) -> str:
    """Run ``mobius client login URL`` and play the browser; its standard output."""
    process = await anyio.open_process(
        [sys.executable, "-m", "mobius_rpc", "client", "login", url, "--timeout", "30"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=_env(home))
    try:
        assert process.stderr is not None and process.stdout is not None
        text = b""
        with anyio.fail_after(30):
            async for chunk in process.stderr:
                text += chunk
                if b"\n  http" in text and text.endswith(b"\n"):
                    break
        login_url = text.decode().split("\n  ", 1)[1].strip()
        async with httpx.AsyncClient(timeout=10, follow_redirects=True) as browser:
            landed = await browser.get(login_url)
        assert landed.status_code == 200 and "login is complete" in landed.text
        with anyio.fail_after(30):
            await process.wait()
            out = await process.stdout.receive()
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()
    assert process.returncode == 0
    return out.decode()


async def _mobius(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(60):
        return await anyio.run_process([sys.executable, "-m", "mobius_rpc", *args],
                                       env=_env(home), check=False,
                                       stdin=subprocess.DEVNULL)


def _bearers(seen: list[str | None]) -> list[str]:
    return [value.removeprefix("Bearer ") for value in seen
            if value and value.startswith("Bearer ")]


def _files(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.glob("mobius.db*"))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_saved_login_serves_later_commands(provider_script: Path,  # noqa: F811
                                                   tmp_path: Path, backend: str,
                                                   request: pytest.FixtureRequest) -> None:
    home = tmp_path / "home"
    if backend == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        _STORE[home] = cluster.create_database(f"c{uuid.uuid4().hex[:10]}")
    async with login_server(provider_script) as issuer, \
            protected_server(issuer) as (url, recorder), \
            protected_server(issuer) as (other_url, other_recorder):
        out = await _login(url, home)
        assert f"logged in to {url}: token from {issuer}" in out and "saved" in out
        first = set(_bearers(recorder.seen))
        assert first, "the login itself used the token"

        # a second process, no browser: the saved token calls the tool
        done = await _mobius(home, "client", "call", "whoami", "--url", url, "--json")
        assert done.returncode == 0, done.stderr.decode()
        me = json.loads(json.loads(done.stdout)["content"][0]["text"])
        assert me["user"] == "ada"
        assert set(_bearers(recorder.seen)) == first  # the same token, no new login

        # nothing of the token in the database files; the key file is private
        data = _stored(home)
        assert b"mcp:tools" in data and all(token.encode() not in data for token in first)
        assert (home / "client.key").stat().st_mode & 0o077 == 0

        # another server (same authorization server) is never shown that token
        refused = await _mobius(home, "client", "tools", "--url", other_url)
        assert refused.returncode == 2
        error = refused.stderr.decode()
        assert "needs a login" in error and "mobius client login" in error
        assert "Traceback" not in error and len(error.strip().splitlines()) == 1
        assert not set(_bearers(other_recorder.seen)) & first

        # an expired token is refreshed by a later process, and the new one saved
        _sql(home, "UPDATE client_tokens SET expires_at = 1")
        seen_before = len(recorder.seen)
        done = await _mobius(home, "client", "tools", "--url", url, "--json")
        assert done.returncode == 0, done.stderr.decode()
        fresh = set(_bearers(recorder.seen[seen_before:]))
        assert fresh and not fresh & first
        [(expires_at,)] = _sql(home, "SELECT expires_at FROM client_tokens")
        assert expires_at > 1
        assert all(token.encode() not in _stored(home) for token in fresh)

        # logout forgets it: the next command needs a login again
        gone = await _mobius(home, "client", "logout", url)
        assert gone.returncode == 0 and f"logged out of {url}" in gone.stdout.decode()
        again = await _mobius(home, "client", "logout", url)
        assert again.returncode == 0 and "no login was kept" in again.stdout.decode()
        after = await _mobius(home, "client", "tools", "--url", url)
        assert after.returncode == 2 and "needs a login" in after.stderr.decode()



async def test_a_refresh_lost_to_another_process_keeps_its_token(
        provider_script: Path, tmp_path: Path) -> None:  # noqa: F811
    """Two processes share the store; both find the token expired. The second to
    refresh is refused (the first rotated the refresh token; here: it is revoked):
    it must take the first one's token from the store, not forget it."""
    from mobius_rpc.client.oauth import LoopbackRedirect, OAuth
    from mobius_rpc.credentials import open_token_store

    from .test_client_login import Clock, User, whoami

    store_url = f"sqlite:///{tmp_path}/shared.db"
    environ = {"MOBIUS_HOME": str(tmp_path / "home")}
    async with login_server(provider_script) as issuer, \
            protected_server(issuer) as (url, _recorder), \
            open_token_store(store_url, environ=environ) as shared:
        async with LoopbackRedirect(show=lambda _url: None, timeout=30) as redirect:
            clock = Clock()
            first = OAuth(authorize=User(redirect), redirect_uri=redirect.redirect_uri,
                          store=shared, clock=clock)
            await whoami(url, first)
        stale = await shared.get_tokens(url)
        assert stale is not None and stale.refresh_token
        clock.offset = 3600
        second = OAuth(store=shared, clock=clock)  # another process: no way to log in
        await whoami(url, second)  # refreshes, rotating the refresh token
        renewed = await shared.get_tokens(url)
        assert renewed is not None and renewed.access_token != stale.access_token
        # the provider would refuse the stale refresh token once rotated; make it so
        client = await shared.get_client(issuer)
        assert client is not None
        async with httpx.AsyncClient(timeout=10) as http:
            metadata = (await http.get(f"{issuer}/.well-known/openid-configuration")).json()
            revoked = await http.post(
                metadata["revocation_endpoint"],
                data={"token": stale.refresh_token, "token_type_hint": "refresh_token"},
                auth=(client.client_id, client.client_secret or ""))
            assert revoked.status_code == 200, revoked.text
        kept = await first.for_server(url)._refresh(stale)  # the loser of the race
        assert kept == renewed
        assert await shared.get_tokens(url) == renewed
