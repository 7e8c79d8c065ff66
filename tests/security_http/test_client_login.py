"""Our Client logs in to a real authorization server: oidc-provider (pinned in
``node/package.json``, script ``node/login_server.mjs``) in front of the protected
demo server.

The whole path is real: the demo server's 401 leads the client through
discovery and dynamic registration to an authorization URL; a user agent
(httpx with cookies, standing in for the browser) follows the provider's
redirects to the client's loopback redirect listener; the code is exchanged
with PKCE and a resource indicator; the token calls a tool.  Expiry is the
client's clock moved forward (no sleeping); revocation uses the provider's
revocation endpoint.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import httpx
import pytest

from mobius_rpc.client import Client, ConnectError, HttpTarget
from mobius_rpc.client.oauth import BearerAuth, LoopbackRedirect, MemoryTokenStore, OAuth
from mobius_rpc.security.oauth import OAuthConfig, OAuthVerifier

from .kit import demo_app, serve_bound, structured
from .test_authorization_server import provider_script  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.anyio, pytest.mark.peers]

SCOPES = ["mcp:tools", "mcp:read"]


@asynccontextmanager
async def login_server(script: Path) -> AsyncIterator[str]:
    """oidc-provider with logins (``login_server.mjs``); yields its issuer."""
    config = {"resourcePattern": r"^http://127\.0\.0\.1:\d+(/mcp)?$", "scopes": SCOPES}
    process = await anyio.open_process(
        ["node", str(script.parent / "login_server.mjs"), json.dumps(config)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = b""
        with anyio.fail_after(30):
            async for chunk in process.stdout:
                line += chunk
                if b"\n" in line:
                    break
        assert line, "oidc-provider did not start"
        yield str(json.loads(line)["issuer"])
    finally:
        if process.stdin is not None:
            await process.stdin.aclose()
        with anyio.move_on_after(5):
            await process.wait()
        if process.returncode is None:
            process.kill()
        await process.aclose()


class Recorder:
    """An ASGI wrapper that notes the Authorization header of every HTTP request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[str | None] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            value = dict(scope["headers"]).get(b"authorization")
            self.seen.append(value.decode() if value else None)
        await self.app(scope, receive, send)


@asynccontextmanager
async def protected_server(issuer: str, *, whole_origin: bool = False
                           ) -> AsyncIterator[tuple[str, Recorder]]:
    """The demo server behind OAuth trusting ``issuer``; yields (MCP URL, recorder).
    ``whole_origin``: the protected resource is the origin (so that its HTTP+SSE
    endpoint at ``/sse`` is covered too), not just ``/mcp``."""
    def build(base: str) -> Recorder:
        config = OAuthConfig(issuer=issuer, resource=base if whole_origin else f"{base}/mcp",
                             required_scopes=frozenset({"mcp:tools"}),
                             scopes_supported=tuple(SCOPES))
        return Recorder(demo_app(oauth=OAuthVerifier(config)))

    async with serve_bound(build) as (base, recorder):
        yield f"{base}/mcp", recorder


class User:
    """The person at the browser: follows the provider's redirects (with cookies) until
    the loopback redirect listener; ``tamper`` may change that last URL (an attacker)."""

    def __init__(self, redirect: LoopbackRedirect,
                 tamper: Callable[[str], str] | None = None) -> None:
        self.redirect = redirect
        self.tamper = tamper
        self.logins = 0

    async def browse(self, url: str) -> None:
        async with httpx.AsyncClient(timeout=10, follow_redirects=False) as agent:
            for _ in range(20):
                if url.startswith(self.redirect.redirect_uri) and self.tamper:
                    url = self.tamper(url)
                response = await agent.get(url)
                if not response.is_redirect:
                    assert response.status_code == 200, response.text[:500]
                    return
                url = str(response.url.join(response.headers["location"]))
        raise AssertionError("too many redirects")

    async def __call__(self, url: str) -> str:
        self.logins += 1
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.browse, url)
            return await self.redirect.authorize(url)


class Clock:
    def __init__(self) -> None:
        import time
        self.offset = 0.0
        self._time = time.time

    def __call__(self) -> float:
        return self._time() + self.offset


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@asynccontextmanager
async def logged_in_setup(script: Path, tamper: Callable[[str], str] | None = None
                          ) -> AsyncIterator[tuple[str, str, Recorder, User, OAuth, Clock]]:
    async with login_server(script) as issuer, protected_server(issuer) as (url, recorder), \
            LoopbackRedirect(show=lambda _url: None, timeout=30) as redirect:
        user, clock = User(redirect, tamper), Clock()
        oauth = OAuth(authorize=user, redirect_uri=redirect.redirect_uri,
                      store=MemoryTokenStore(), clock=clock)
        yield issuer, url, recorder, user, oauth, clock


async def whoami(url: str, oauth: OAuth) -> dict[str, Any]:
    with anyio.fail_after(60):
        async with Client(HttpTarget(url, oauth=oauth), revision="2025-11-25") as client:
            return dict(structured(await client.call_tool("whoami", {})))


async def test_login_then_a_tool_call(provider_script: Path) -> None:  # noqa: F811
    async with logged_in_setup(provider_script) as (issuer, url, recorder, user, oauth, _):
        me = await whoami(url, oauth)
        tokens = await oauth.store.get_tokens(url)
        registration = await oauth.store.get_client(issuer)
    assert me["user"] == "ada" and me["method"] == "oauth"
    assert "mcp:tools" in me["scopes"]
    assert user.logins == 1
    assert tokens is not None and tokens.issuer == issuer and tokens.resource == url
    assert tokens.refresh_token  # offline_access was asked for: the provider lists it
    assert claims_of(tokens.access_token)["aud"] == url
    assert registration is not None and registration.issuer == issuer  # registered by DCR
    assert recorder.seen[0] is None and f"Bearer {tokens.access_token}" in recorder.seen


async def test_an_expired_token_is_refreshed_without_a_new_login(
        provider_script: Path) -> None:  # noqa: F811
    async with logged_in_setup(provider_script) as (_, url, _rec, user, oauth, clock):
        await whoami(url, oauth)
        first = await oauth.store.get_tokens(url)
        clock.offset = 3600  # the client believes the access token expired
        me = await whoami(url, oauth)
        second = await oauth.store.get_tokens(url)
    assert me["user"] == "ada"
    assert user.logins == 1
    assert first is not None and second is not None
    assert second.access_token != first.access_token
    assert second.refresh_token


async def test_a_revoked_refresh_token_leads_to_a_new_login(
        provider_script: Path) -> None:  # noqa: F811
    async with logged_in_setup(provider_script) as (issuer, url, _rec, user, oauth, clock):
        await whoami(url, oauth)
        tokens = await oauth.store.get_tokens(url)
        client = await oauth.store.get_client(issuer)
        assert tokens is not None and tokens.refresh_token and client is not None
        async with httpx.AsyncClient(timeout=10) as http:
            metadata = (await http.get(f"{issuer}/.well-known/openid-configuration")).json()
            revoked = await http.post(
                metadata["revocation_endpoint"],
                data={"token": tokens.refresh_token, "token_type_hint": "refresh_token"},
                auth=(client.client_id, client.client_secret or ""))
            assert revoked.status_code == 200, revoked.text
        clock.offset = 3600
        me = await whoami(url, oauth)
        after = await oauth.store.get_tokens(url)
    assert me["user"] == "ada"
    assert user.logins == 2  # the refresh was refused, so the user logged in again
    assert after is not None and after.refresh_token != tokens.refresh_token


def wrong_iss(url: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    assert "iss" in query  # oidc-provider sends RFC 9207 iss
    query["iss"] = "http://127.0.0.1:1/"
    return urlunsplit(parts._replace(query=urlencode(query)))


async def test_an_authorization_response_from_another_issuer_is_refused(
        provider_script: Path) -> None:  # noqa: F811
    async with logged_in_setup(provider_script, tamper=wrong_iss) as (
            _, url, recorder, user, oauth, _clock):
        with pytest.raises(ConnectError, match="RFC 9207"):
            await whoami(url, oauth)
        tokens = await oauth.store.get_tokens(url)
    assert user.logins == 1
    assert tokens is None
    assert all(seen is None for seen in recorder.seen)  # no token ever reached the server


async def test_a_token_is_never_sent_to_a_second_server(
        provider_script: Path) -> None:  # noqa: F811
    async with logged_in_setup(provider_script) as (issuer, url_a, recorder_a, user, oauth, _), \
            protected_server(issuer) as (url_b, recorder_b):
        await whoami(url_a, oauth)
        token_a = await oauth.store.get_tokens(url_a)
        assert token_a is not None
        # the transport's own HTTP client, asked to reach another origin, adds no token
        async with httpx.AsyncClient(auth=BearerAuth(oauth, url_a), timeout=10) as http:
            stray = await http.post(url_b, json={})
        assert stray.status_code == 401
        assert recorder_b.seen == [None]
        # the same OAuth serving server B gets B its own token, for B's resource
        me = await whoami(url_b, oauth)
        token_b = await oauth.store.get_tokens(url_b)
    assert me["user"] == "ada"
    assert token_b is not None and token_b.access_token != token_a.access_token
    assert claims_of(token_b.access_token)["aud"] == url_b
    assert f"Bearer {token_a.access_token}" not in recorder_b.seen
    assert f"Bearer {token_b.access_token}" not in recorder_a.seen
    assert user.logins == 2


async def test_login_over_http_sse(provider_script: Path) -> None:  # noqa: F811
    """The legacy HTTP+SSE transport gets the same login: the GET stream's 401 starts it,
    and the POSTs to the ``endpoint`` the server names carry the token."""
    async with login_server(provider_script) as issuer, \
            protected_server(issuer, whole_origin=True) as (url, recorder), \
            LoopbackRedirect(show=lambda _url: None, timeout=30) as redirect:
        user = User(redirect)
        oauth = OAuth(authorize=user, redirect_uri=redirect.redirect_uri)
        sse_url = url.removesuffix("/mcp") + "/sse"
        with anyio.fail_after(60):
            async with Client(HttpTarget(sse_url, "sse", oauth=oauth),
                              revision="2025-03-26") as client:
                assert client.protocol_version == "2025-03-26"
                me = structured(await client.call_tool("whoami", {}))
        tokens = await oauth.for_server(sse_url).tokens()
    assert me["user"] == "ada" and user.logins == 1
    assert tokens is not None and tokens.resource == url.removesuffix("/mcp")
    assert sum(1 for seen in recorder.seen if seen == f"Bearer {tokens.access_token}") >= 2


async def test_mobius_client_login_through_the_printed_url(
        provider_script: Path) -> None:  # noqa: F811
    """The CLI as a person uses it: it prints a URL, the browser follows it, the
    command reports the login (a real subprocess; nothing is opened for us)."""
    import sys

    async with login_server(provider_script) as issuer, \
            protected_server(issuer) as (url, _recorder):
        process = await anyio.open_process(
            [sys.executable, "-m", "mobius_rpc", "client", "login", url, "--timeout", "30"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert process.stderr is not None and process.stdout is not None
            text = b""
            with anyio.fail_after(30):
                async for chunk in process.stderr:
                    text += chunk
                    if b"\n  http" in text and text.endswith(b"\n"):
                        break
            login_url = text.decode().split("\n  ", 1)[1].strip()
            assert login_url.startswith(f"{issuer}/auth?")
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
    assert f"logged in to {url}: token from {issuer}" in out.decode()
    assert "refresh token: yes" in out.decode()


async def test_a_config_entry_with_client_credentials(provider_script: Path,  # noqa: F811
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``mobius client --config``'s shape: a server entry carrying client credentials
    (the secret named by an environment variable) gets its own token, no person involved."""
    from mobius_rpc.client import ClientManager

    from .test_authorization_server import CLIENT_ID, CLIENT_SECRET, authorization_server

    monkeypatch.setenv("MOBIUS_TEST_SECRET", CLIENT_SECRET)
    async with authorization_server(provider_script) as provider, \
            protected_server(provider["issuer"]) as (url, recorder):
        config = {"mcpServers": {"svc": {
            "url": url, "oauth": {"grant": "client_credentials", "client_id": CLIENT_ID,
                                  "client_secret_env": "MOBIUS_TEST_SECRET",
                                  "scope": "mcp:tools"}}}}
        with anyio.fail_after(60):
            async with ClientManager.from_config(config, revision="2025-11-25") as manager:
                me = structured(await manager.call_tool("svc__whoami", {}))
    assert me["user"] == CLIENT_ID and me["scopes"] == ["mcp:tools"]
    assert recorder.seen[0] is None and any(seen for seen in recorder.seen)
