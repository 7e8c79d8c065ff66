"""AuthenticatingApp on a real uvicorn in front of the real demo server: every route
and transport is closed without a credential, and opens with a good one."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from mobius_rpc.security.oauth import metadata_url
from mobius_rpc.security.principal import AuthMethod, Principal
from mobius_rpc.transports.http_client import HttpSseClientStream
from mobius_rpc.transports.websocket import WebSocketClientStream
from tests.conftest import client_on

from .conftest import TestKeys
from .env import HEADERS, INIT, Env, protected
from .kit import demo_app, jwks_of, mint, serve_bound, structured

pytestmark = pytest.mark.anyio


async def refusals_without_token(env: Env) -> dict[str, tuple[int, str, Any]]:
    """Status, WWW-Authenticate and body of an unauthenticated request on each route."""
    seen: dict[str, tuple[int, str, Any]] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(f"{env.base}/mcp", json=INIT, headers=HEADERS)
        seen["/mcp POST"] = (answer.status_code, answer.headers.get("www-authenticate", ""),
                             answer.json())
        answer = await http.get(f"{env.base}/mcp", headers={"accept": "text/event-stream"})
        seen["/mcp GET"] = (answer.status_code, answer.headers.get("www-authenticate", ""),
                            answer.json())
        answer = await http.get(f"{env.base}/sse", headers={"accept": "text/event-stream"})
        seen["/sse"] = (answer.status_code, answer.headers.get("www-authenticate", ""),
                        answer.json())
        answer = await http.post(f"{env.base}/messages?session_id=0123", json=INIT)
        seen["/messages"] = (answer.status_code, answer.headers.get("www-authenticate", ""),
                             answer.json())
        answer = await http.get(f"{env.base}/no-such-route")
        seen["unknown route"] = (answer.status_code,
                                 answer.headers.get("www-authenticate", ""), answer.json())
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"ws://{env.base[7:]}/ws", subprotocols=["mcp"]):  # type: ignore[list-item]
            pass
    response = refused.value.response
    seen["/ws"] = (response.status_code, response.headers.get("www-authenticate", ""),
                   response.body)
    return seen


async def test_no_token_is_401_with_the_challenge_on_every_route(keys: TestKeys) -> None:
    async with protected(jwks_of(keys.rsa1)) as env:
        seen = await refusals_without_token(env)
    expected = (f'Bearer resource_metadata="{metadata_url(env.resource)}", '
                f'scope="mcp:tools"')
    for route, (status, challenge, body) in seen.items():
        assert status == 401, route
        assert challenge == expected, route
        if route != "/ws":
            assert body["jsonrpc"] == "2.0" and body["id"] is None, route
            assert body["error"]["code"] == -32001, route
    assert b"authentication required" in seen["/ws"][2]


async def test_metadata_is_served_without_authentication(keys: TestKeys) -> None:
    async with protected(jwks_of(keys.rsa1)) as env, httpx.AsyncClient(timeout=10) as http:
        unauthenticated = await http.post(f"{env.base}/mcp", json=INIT, headers=HEADERS)
        challenge = unauthenticated.headers["www-authenticate"]
        advertised = challenge.split('resource_metadata="')[1].split('"')[0]
        path_form = await http.get(advertised)
        root_form = await http.get(f"{env.base}/.well-known/oauth-protected-resource")
        head = await http.head(advertised)
        post = await http.post(advertised)
    assert advertised == f"{env.base}/.well-known/oauth-protected-resource/mcp"
    for answer in (path_form, root_form):
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "*"
        assert answer.json() == {
            "resource": env.resource, "authorization_servers": [env.issuer],
            "bearer_methods_supported": ["header"],
            "scopes_supported": ["mcp:tools", "mcp:read", "mcp:admin"]}
    assert head.status_code == 200 and head.content == b""
    assert post.status_code == 405


async def test_a_valid_jwt_opens_every_transport(keys: TestKeys) -> None:
    async with protected(jwks_of(keys.rsa1, keys.ec1)) as env:
        token = mint(keys.ec1, env.claims())
        auth = {"Authorization": f"Bearer {token}"}
        echoed = await env.call_tool(token, "echo", {"text": "hello"})
        me = await env.call_tool(mint(keys.rsa1, env.claims()), "whoami", {})
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                sse = HttpSseClientStream(f"{env.base}/sse", tg, headers=auth)
                await sse.start()
                async with client_on(sse, tg, "2024-11-05") as client:
                    over_sse = await client.call_tool("whoami", {})
                ws = await WebSocketClientStream.connect(f"ws://{env.base[7:]}/ws",
                                                         additional_headers=auth)
                async with client_on(ws, tg, "2025-11-25") as client:
                    over_ws = await client.call_tool("whoami", {})
                tg.cancel_scope.cancel()
    assert echoed["content"][0]["text"] == "hello"
    expected = {"user": "ada", "organization": "acme", "scopes": ["mcp:read", "mcp:tools"],
                "method": "oauth", "credential": "token-1", "saw_authorization": False}
    for result in (me, over_sse, over_ws):
        assert structured(result) == expected


async def test_malformed_requests_are_400_and_other_schemes_401(keys: TestKeys) -> None:
    async with protected(jwks_of(keys.rsa1)) as env, httpx.AsyncClient(timeout=10) as http:
        token = mint(keys.rsa1, env.claims())
        in_query = await http.post(f"{env.base}/mcp?access_token={token}", json=INIT,
                                   headers=HEADERS)
        twice = await http.post(f"{env.base}/mcp", json=INIT, headers=httpx.Headers(
            [*HEADERS.items(), ("authorization", f"Bearer {token}"),
             ("authorization", f"Bearer {token}")]))
        basic = await env.post_initialize(None, authorization="Basic YWRhOnNlY3JldA==")
        empty = await env.post_initialize(None, authorization="Bearer")
        garbage = await env.post_initialize(None, authorization="Bearer a b\"c")
    assert in_query.status_code == 400 and 'error="invalid_request"' in \
        in_query.headers["www-authenticate"]
    assert twice.status_code == 400
    assert basic.status_code == 401 and "error=" not in basic.headers["www-authenticate"]
    assert empty.status_code == 400 and garbage.status_code == 400
    for answer in (in_query, twice):
        assert token not in answer.text


async def test_api_tokens_go_to_the_pluggable_verifier_and_are_never_logged(
        keys: TestKeys, caplog: pytest.LogCaptureFixture) -> None:
    good, revoked, broken = "mbx_good_7f3a9c", "mbx_revoked_51d2e0", "mbx_broken_c09b11"
    seen: list[str] = []

    async def verify(raw: str) -> Principal | None:
        seen.append(raw)
        if raw == broken:
            raise RuntimeError(f"database down while looking up {raw}")
        if raw == good:
            return Principal("grace", "acme", method=AuthMethod.API_TOKEN, credential="t1")
        return None

    caplog.set_level(logging.DEBUG, logger="mobius_rpc")
    async with protected(jwks_of(keys.rsa1), api_tokens=verify) as env:
        me = await env.call_tool(good, "whoami", {})
        refused = await env.post_initialize(revoked)
        unavailable = await env.post_initialize(broken)
    assert structured(me)["user"] == "grace"
    assert structured(me)["method"] == "api-token"
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert unavailable.status_code == 503 and unavailable.headers["retry-after"] == "30"
    assert {good, revoked, broken} <= set(seen)
    assert caplog.records, "refusals are logged"
    for token in (good, revoked, broken):
        assert token not in caplog.text
        assert token not in refused.text + unavailable.text


async def test_auth_off_lets_everything_through_as_the_local_principal(
        caplog: pytest.LogCaptureFixture) -> None:
    local = Principal("dev", "personal", method=AuthMethod.NONE)
    with caplog.at_level(logging.WARNING, logger="mobius_rpc.security"):
        async with serve_bound(lambda _: demo_app(auth=False, local_principal=local)) as (
                base, _), anyio.create_task_group() as tg:
            ws = await WebSocketClientStream.connect(f"ws://{base[7:]}/ws")
            async with client_on(ws, tg, "2025-11-25") as client:
                me = await client.call_tool("whoami", {})
            tg.cancel_scope.cancel()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "authentication is OFF" in warnings[0].getMessage()
    assert structured(me)["user"] == "dev"
    assert structured(me)["method"] == "none"


def test_authentication_on_without_a_verifier_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="no verifier"):
        demo_app()
