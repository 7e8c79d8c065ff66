"""What the client's OAuth refuses, and how it says so.

A scripted server (real uvicorn on 127.0.0.1) plays an MCP server that
answers 401 and serves whatever metadata a test gives it; the client must
stop with a one-line reason naming the bad URL or field, and never send the
user to, or take a code from, somewhere it should not.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, MutableMapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobius_rpc.client import Client, ConnectError, HttpTarget
from mobius_rpc.client.oauth import LoopbackRedirect, OAuth, OAuthError
from mobius_rpc.client.oauth.urls import parse_challenge, require_secure, resource_allowed

from ..conftest import serve_asgi

pytestmark = pytest.mark.anyio

Route = tuple[int, dict[str, str], bytes]


class Scripted:
    """An MCP server that always wants a token, plus documents at paths a test sets."""

    def __init__(self) -> None:
        self.base = ""
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []

    def json(self, path: str, document: Any, status: int = 200) -> None:
        self.routes[path] = (status, {"content-type": "application/json"},
                             orjson.dumps(document))

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        self.hits.append(path)
        if path == "/mcp":
            status, headers, body = 401, {
                "www-authenticate": f'Bearer resource_metadata="{self.base}/prm"'}, b""
        else:
            status, headers, body = self.routes.get(path, (404, {}, b""))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in headers.items()]
                    + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def good_metadata(self, **as_overrides: Any) -> None:
        self.json("/prm", {"resource": f"{self.base}/mcp", "authorization_servers": [self.base]})
        self.json("/.well-known/oauth-authorization-server", {
            "issuer": self.base, "authorization_endpoint": f"{self.base}/authorize",
            "token_endpoint": f"{self.base}/token", "registration_endpoint": f"{self.base}/reg",
            "code_challenge_methods_supported": ["S256"], **as_overrides})
        self.json("/reg", {"client_id": "c1"}, status=201)


@pytest.fixture
async def server() -> AsyncIterator[Scripted]:
    app = Scripted()
    async with serve_asgi(app) as address:
        app.base = f"http://{address}"
        yield app


class Browser:
    """An authorize callback that answers with a URL the test chooses."""

    def __init__(self, answer: str | None = None) -> None:
        self.answer = answer
        self.urls: list[str] = []

    async def __call__(self, url: str) -> str:
        self.urls.append(url)
        state = parse_qs(urlsplit(url).query)["state"][0]
        return (self.answer or "http://127.0.0.1:9/callback?code=abc&state={state}").format(
            state=state)


async def refusal(server: Scripted, browser: Browser | None = None) -> str:
    oauth = OAuth(authorize=browser or Browser(), redirect_uri="http://127.0.0.1:9/callback")
    with anyio.fail_after(30), pytest.raises(ConnectError) as caught:
        async with Client(HttpTarget(f"{server.base}/mcp", oauth=oauth), revision="2025-11-25",
                          connect_timeout=20):
            pass
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


async def test_a_plain_http_issuer_off_loopback_is_refused(server: Scripted) -> None:
    server.json("/prm", {"resource": f"{server.base}/mcp",
                         "authorization_servers": ["http://auth.example.com"]})
    assert "does not use https" in await refusal(server)


async def test_metadata_of_a_foreign_issuer_is_refused(server: Scripted) -> None:
    server.good_metadata(issuer="https://attacker.example.com")
    browser = Browser()
    assert "refusing metadata of a foreign issuer" in await refusal(server, browser)
    assert browser.urls == []  # never sent the user to the poisoned endpoints
    assert "/reg" not in server.hits


@pytest.mark.parametrize("document, expected", [
    (b"<html>", "is not JSON"),
    (b"[1, 2]", "is not a JSON object"),
    (b'{"resource": "RESOURCE"}', "lists no authorization_servers"),
    (b'{"resource": "RESOURCE", "authorization_servers": "x"}', "is not a list of strings"),
    (b'{"resource": "RESOURCE", "authorization_servers": ["ftp://x"]}',
     "is not an absolute http(s) URL"),
    (b'{"resource": "RESOURCE", "authorization_servers": ["https://u:p@x.example"]}',
     "carries credentials"),
    (b'{"resource": "' + b"x" * 300_000 + b'"}', "larger than"),
])
async def test_malformed_resource_metadata_is_refused(server: Scripted, document: bytes,
                                                      expected: str) -> None:
    body = document.replace(b"RESOURCE", f"{server.base}/mcp".encode())
    server.routes["/prm"] = (200, {"content-type": "application/json"}, body)
    assert expected in await refusal(server)


async def test_authorization_server_metadata_without_a_token_endpoint(server: Scripted) -> None:
    server.good_metadata(token_endpoint=None)
    assert "token_endpoint in the authorization server metadata" in await refusal(server)


async def test_metadata_behind_a_redirect_is_not_followed(server: Scripted) -> None:
    server.routes["/prm"] = (302, {"location": "https://elsewhere.example/prm"}, b"")
    message = await refusal(server)
    assert "redirects to 'https://elsewhere.example/prm'" in message


async def test_a_resource_that_is_not_this_server_is_refused(server: Scripted) -> None:
    server.good_metadata()
    server.json("/prm", {"resource": "https://evil.example.com/mcp",
                         "authorization_servers": [server.base]})
    browser = Browser()
    assert "refusing to get a token for another resource" in await refusal(server, browser)
    assert browser.urls == []


async def test_a_redirect_to_an_unexpected_host_is_refused(server: Scripted) -> None:
    server.good_metadata()
    browser = Browser("https://evil.example.com/callback?code=abc&state={state}")
    message = await refusal(server, browser)
    assert "not to our redirect URI" in message and "evil.example.com" in message
    assert "/token" not in server.hits  # the code was never redeemed


async def test_a_forged_state_is_refused(server: Scripted) -> None:
    server.good_metadata()
    browser = Browser("http://127.0.0.1:9/callback?code=abc&state=forged")
    assert "state does not match" in await refusal(server, browser)
    assert "/token" not in server.hits


async def test_an_authorization_server_without_pkce_s256_is_refused(server: Scripted) -> None:
    server.good_metadata(code_challenge_methods_supported=["plain"])
    browser = Browser()
    assert "PKCE S256" in await refusal(server, browser)
    assert browser.urls == []


async def test_the_authorization_url_carries_pkce_state_and_resource(server: Scripted) -> None:
    server.good_metadata()
    browser = Browser("http://127.0.0.1:9/callback?error=access_denied&state={state}")
    assert "refused: access_denied" in await refusal(server, browser)
    query = {k: v[0] for k, v in parse_qs(urlsplit(browser.urls[0]).query).items()}
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["resource"] == f"{server.base}/mcp" and query["client_id"] == "c1"
    assert query["redirect_uri"] == "http://127.0.0.1:9/callback" and query["state"]


async def test_the_loopback_redirect_opens_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's login shows the URL and waits: no browser, no shell, no subprocess."""
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a process was started")

    monkeypatch.setattr(subprocess, "Popen", forbidden)
    shown: list[str] = []
    async with LoopbackRedirect(show=shown.append, timeout=10) as redirect:
        async with anyio.create_task_group() as tg:
            async def browser() -> None:
                async with httpx.AsyncClient() as http:
                    assert (await http.get(redirect.redirect_uri.replace(
                        "/callback", "/favicon.ico"))).status_code == 404
                    page = await http.get(f"{redirect.redirect_uri}?code=c&state=s")
                    assert page.status_code == 200

            tg.start_soon(browser)
            got = await redirect.authorize("https://as.example/authorize?x=1")
    assert shown == ["https://as.example/authorize?x=1"]
    assert got == f"{redirect.redirect_uri}?code=c&state=s"


@given(st.text(max_size=200))
def test_challenge_parsing_never_raises(header: str) -> None:
    params = parse_challenge(header)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())
    assert parse_challenge("Bearer " + header) is not None


@given(st.text(max_size=100))
def test_url_checks_raise_only_their_own_error(text: str) -> None:
    for candidate in (text, f"https://{text}", f"http://127.0.0.1/{text}"):
        try:
            require_secure(candidate, "a URL")
        except OAuthError:
            pass


def test_resources_match_by_origin_and_path_prefix() -> None:
    assert resource_allowed("https://a.example/mcp", "https://a.example/mcp")
    assert resource_allowed("https://a.example/mcp", "https://a.example")
    assert resource_allowed("https://A.example:443/mcp/x", "https://a.example/mcp")
    assert not resource_allowed("https://a.example/mcpx", "https://a.example/mcp")
    assert not resource_allowed("https://a.example/mcp", "https://b.example/mcp")
    assert not resource_allowed("https://a.example/mcp", "http://a.example/mcp")
    assert not resource_allowed("https://a.example/other", "https://a.example/mcp")


@pytest.mark.parametrize("entry, expected", [
    ({"oauth": "yes"}, "'oauth' must be true or an object"),
    ({"oauth": {"client_secrt": "x"}}, "unknown fields: client_secrt"),
    ({"oauth": {"grant": "password"}}, "'oauth.grant' must be one of"),
    ({"oauth": {"grant": "client_credentials"}}, "needs 'client_id'"),
    ({"oauth": {"client_id": 7}}, "'oauth.client_id' must be a string"),
    ({"oauth": {"client_id": "a", "client_secret_env": "MOBIUS_UNSET_VARIABLE"}},
     "MOBIUS_UNSET_VARIABLE"),
    ({"oauth": {"client_id": "a", "private_key_file": "/nonexistent/key.pem"}},
     "cannot read oauth.private_key_file"),
])
def test_bad_oauth_config_entries_name_their_fault(entry: dict[str, Any], expected: str) -> None:
    from mobius_rpc.client import target_from_config

    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        target_from_config({"url": "https://mcp.example.com/mcp", **entry})


def test_config_entries_that_ask_for_oauth() -> None:
    from mobius_rpc.client import target_from_config

    plain = target_from_config({"url": "https://mcp.example.com/mcp"})
    assert isinstance(plain, HttpTarget) and plain.oauth is None
    for entry in ({"oauth": True}, {"auth": "oauth"}):
        target = target_from_config({"url": "https://mcp.example.com/mcp", **entry})
        assert isinstance(target, HttpTarget) and target.oauth is not None
        assert target.oauth.grant == "authorization_code" and target.oauth.authorize is None


async def test_a_login_without_a_way_to_ask_says_how(server: Scripted) -> None:
    server.good_metadata()
    oauth = OAuth(redirect_uri="http://127.0.0.1:9/callback")  # no authorize callback
    with anyio.fail_after(30), pytest.raises(ConnectError, match="--oauth"):
        async with Client(HttpTarget(f"{server.base}/mcp", oauth=oauth), revision="2025-11-25"):
            pass


def test_dpop_proofs_are_fresh_signed_and_bound_to_the_request() -> None:
    import base64
    import hashlib

    from joserfc import jws
    from joserfc.jwk import ECKey

    from mobius_rpc.client.oauth.dpop import DPoPKey

    key = DPoPKey()
    first = key.proof("post", "https://rs.example/mcp?x=1#f", access_token="tok")
    second = key.proof("POST", "https://rs.example/mcp")
    header = orjson.loads(base64.urlsafe_b64decode(first.split(".")[0] + "=="))
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256" and "d" not in header["jwk"]
    claims = orjson.loads(jws.deserialize_compact(
        first, ECKey.import_key(header["jwk"])).payload)
    assert claims["htm"] == "POST" and claims["htu"] == "https://rs.example/mcp"
    digest = base64.urlsafe_b64encode(hashlib.sha256(b"tok").digest()).rstrip(b"=").decode()
    assert claims["ath"] == digest and "nonce" not in claims
    assert orjson.loads(base64.urlsafe_b64decode(second.split(".")[1] + "=="))["jti"] \
        != claims["jti"]
    assert key.remember_nonce("https://rs.example/other", "n-1")
    assert not key.remember_nonce("https://rs.example/mcp", "n-1")  # same origin, same nonce
    third = key.proof("GET", "https://rs.example/mcp")
    assert orjson.loads(base64.urlsafe_b64decode(third.split(".")[1] + "=="))["nonce"] == "n-1"
    assert "nonce" not in orjson.loads(base64.urlsafe_b64decode(
        key.proof("GET", "https://as.example/token").split(".")[1] + "=="))
