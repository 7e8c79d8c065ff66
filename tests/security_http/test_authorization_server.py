"""Against a real authorization server: oidc-provider (a certified OpenID provider,
pinned in ``node/package.json``) issues JWT access tokens by the client_credentials
grant with a resource indicator, and the protected demo server accepts exactly
the ones issued for it.

The client side follows the discovery a real MCP client does: the 401's
``resource_metadata`` leads to the metadata document, that to the
authorization server, its metadata to the token endpoint.  The server side
finds the issuer's keys by discovery too (no JWKS URL configured).

npm installs the provider on first use; without node or npm the tests skip,
except in CI, where they must run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import anyio
import httpx
import pytest

from mobius_rpc.security.http_auth import AuthenticatingApp
from mobius_rpc.security.oauth import OAuthConfig, OAuthVerifier

from .env import HEADERS, INIT, Env
from .kit import demo_app, serve_bound, structured

NODE_DIR = Path(__file__).resolve().parent / "node"
CLIENT_ID, CLIENT_SECRET = "mobius-test-client", "a-client-secret-for-tests-only-0123456789"
SCOPES = ["mcp:tools", "mcp:read"]

pytestmark = [pytest.mark.anyio, pytest.mark.peers]


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def provider_script() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        unavailable("node and npm are needed for the oidc-provider authorization server")
    if not (NODE_DIR / "node_modules" / "oidc-provider").is_dir():
        try:
            done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                                  cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            unavailable("npm ci for oidc-provider took more than 300 s")
        if done.returncode != 0:
            unavailable(f"npm ci for oidc-provider failed: {done.stderr[-800:]}")
    return NODE_DIR / "authorization_server.mjs"


@asynccontextmanager
async def authorization_server(script: Path) -> AsyncIterator[dict[str, str]]:
    """oidc-provider on a free loopback port; yields the line it prints (issuer, ...)."""
    config = {"resourcePattern": r"^http://127\.0\.0\.1:\d+/(mcp|other)$",
              "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "scopes": SCOPES,
              "organization": "acme"}
    process = await anyio.open_process(["node", str(script), json.dumps(config)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        with anyio.fail_after(30):
            line = b""
            async for chunk in process.stdout:
                line += chunk
                if b"\n" in line:
                    break
        if not line:
            assert process.stderr is not None
            raise RuntimeError(f"oidc-provider did not start: {await process.stderr.receive()!r}")
        yield json.loads(line)
    finally:
        if process.stdin is not None:
            await process.stdin.aclose()  # the script exits when its stdin closes
        with anyio.move_on_after(5):
            await process.wait()
        if process.returncode is None:
            process.kill()
        await process.aclose()


async def discover_and_get_token(base: str, *, resource: str | None = None,
                                 scope: str | None = None) -> str:
    """What an MCP client does with a 401: metadata, authorization server, token."""
    async with httpx.AsyncClient(timeout=10) as http:
        refused = await http.post(f"{base}/mcp", json=INIT, headers=HEADERS)
        assert refused.status_code == 401
        challenge = refused.headers["www-authenticate"]
        metadata = (await http.get(challenge.split('resource_metadata="')[1].split('"')[0]))
        document = metadata.json()
        issuer = document["authorization_servers"][0]
        as_metadata = (await http.get(f"{issuer}/.well-known/openid-configuration")).json()
        assert as_metadata["issuer"] == issuer
        answer = await http.post(as_metadata["token_endpoint"], auth=(CLIENT_ID, CLIENT_SECRET),
                                 data={"grant_type": "client_credentials",
                                       "scope": scope or challenge.split('scope="')[1]
                                       .split('"')[0],
                                       "resource": resource or document["resource"]})
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token


@asynccontextmanager
async def protected_by(issuer: str) -> AsyncIterator[Env]:
    def build(base: str) -> AuthenticatingApp:
        config = OAuthConfig(issuer=issuer, resource=f"{base}/mcp",
                             required_scopes=frozenset({"mcp:tools"}),
                             scopes_supported=tuple(SCOPES))
        return demo_app(oauth=OAuthVerifier(config))  # keys found by discovery

    async with serve_bound(build) as (base, _), httpx.AsyncClient(timeout=10) as http:
        yield Env(base, issuer, f"{base}/mcp", http)


async def test_a_token_from_the_authorization_server_calls_a_tool(provider_script: Path) -> None:
    async with authorization_server(provider_script) as provider, \
            protected_by(provider["issuer"]) as env:
        token = await discover_and_get_token(env.base)
        echoed = await env.call_tool(token, "echo", {"text": "from a real AS"})
        me = await env.call_tool(token, "whoami", {})
    assert echoed["content"][0]["text"] == "from a real AS"
    identity = structured(me)
    assert identity["user"] == CLIENT_ID  # RFC 9068: sub of a client_credentials token
    assert identity["organization"] == "acme"
    assert identity["scopes"] == ["mcp:tools"]
    assert identity["method"] == "oauth" and identity["credential"]
    assert identity["saw_authorization"] is False


async def test_its_tokens_for_another_resource_or_scope_are_refused(
        provider_script: Path) -> None:
    async with authorization_server(provider_script) as provider, \
            protected_by(provider["issuer"]) as env:
        elsewhere = await discover_and_get_token(env.base, resource=f"{env.base}/other")
        read_only = await discover_and_get_token(env.base, scope="mcp:read")
        good = await discover_and_get_token(env.base)
        async with httpx.AsyncClient(timeout=10) as http:
            # without a resource indicator the provider issues an opaque token
            opaque = (await http.post(f"{env.issuer}/token", auth=(CLIENT_ID, CLIENT_SECRET),
                                      data={"grant_type": "client_credentials",
                                            "scope": "mcp:tools"})).json()["access_token"]
        tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
        answers: dict[str, Any] = {
            "another resource": await env.post_initialize(elsewhere),
            "read scope only": await env.post_initialize(read_only),
            "tampered signature": await env.post_initialize(tampered),
            "opaque, for no resource": await env.post_initialize(opaque),
            "good": await env.post_initialize(good),
        }
    assert {name: answer.status_code for name, answer in answers.items()} == {
        "another resource": 401, "read scope only": 403, "tampered signature": 401,
        "opaque, for no resource": 401, "good": 200}
    assert 'error_description="the token was issued for another resource"' in \
        answers["another resource"].headers["www-authenticate"]
    assert 'error="insufficient_scope"' in answers["read scope only"].headers["www-authenticate"]
