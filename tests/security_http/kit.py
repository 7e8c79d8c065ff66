"""Test kit for the HTTP authentication tests: keys, token minting, a JWKS server.

Everything here is real: keys are generated per run, tokens are signed with
them (or, for the attacks, assembled by hand so that no library stands
between the attack and the server), and the key set is served over HTTP by
a uvicorn the test runs, whose answers the test can change (rotation,
outage).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from mobius_rpc.demo import build_demo_server
from mobius_rpc.security.http_auth import AuthenticatingApp
from mobius_rpc.server.context import Context

from ..conftest import serve_asgi

Key = RSAKey | ECKey | OKPKey
ALGORITHM = {"RSA": "RS256", "EC": "ES256", "OKP": "Ed25519"}


def rsa(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid})


def ec(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid})


def jwks_of(*keys: Key) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) | {"use": "sig"} for key in keys]}


def b64(data: bytes | dict[str, Any]) -> str:
    raw = orjson.dumps(data) if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims_for(issuer: str, resource: str, **overrides: Any) -> dict[str, Any]:
    """Claims of a token that should be accepted, changed by ``overrides`` (None drops one)."""
    now = int(time.time())
    claims: dict[str, Any] = {"iss": issuer, "aud": resource, "sub": "ada", "org": "acme",
                              "scope": "mcp:tools mcp:read", "iat": now, "nbf": now - 5,
                              "exp": now + 300, "jti": "token-1"}
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def mint(key: Key, claims: dict[str, Any], **header: Any) -> str:
    """A JWT signed by ``key`` with the algorithm of its type."""
    alg = header.pop("alg", ALGORITHM[key.key_type])
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "at+jwt", **header}, claims, key,
                      algorithms=[alg])


def rs256_signed(key: RSAKey, claims: dict[str, Any], **header: Any) -> str:
    """RS256 signed by hand (for headers a JOSE library refuses to produce)."""
    signing_input = f"{b64({'alg': 'RS256', 'kid': key.kid, **header})}.{b64(claims)}"
    assert key.private_key is not None
    signature = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(),
                                     hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


def unsigned(claims: dict[str, Any], **header: Any) -> str:
    """``alg: none``: a token with no signature at all."""
    return f"{b64({'alg': 'none', 'typ': 'JWT', **header})}.{b64(claims)}."


def hmac_signed(secret: bytes, claims: dict[str, Any], **header: Any) -> str:
    """HS256 with ``secret``: the key-confusion attack uses the issuer's public key."""
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', **header})}.{b64(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@dataclass
class Clock:
    """A clock the test moves by hand (monotonic seconds for the key cache)."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class KeyServer:
    """An ASGI app serving a JWKS (``/jwks``) and issuer metadata the test controls."""

    document: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    status: int = 200
    fetches: int = 0
    issuer: str = ""
    metadata_issuer: str | None = None
    metadata_jwks_uri: str | None = None
    #: set by the test to let a held ``/slow`` request finish
    release: anyio.Event = field(default_factory=anyio.Event)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
        if path == "/jwks":
            self.fetches += 1
            status, body = self.status, orjson.dumps(self.document)
        elif path == "/big":
            status, body = 200, b'{"keys": [' + b'{"kty": "oct", "k": "AAAA"},' * 50_000 + b"{}]}"
        elif path == "/chunked-big":
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for _ in range(100):
                await send({"type": "http.response.body", "body": b" " * 10_000,
                            "more_body": True})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        elif path == "/redirect":
            status, body = 302, b""
            headers.append((b"location", b"/jwks"))
        elif path == "/slow":
            await self.release.wait()
            status, body = 200, b"{}"
        elif path == "/not-json":
            status, body = 200, b"<html>"
        elif path in ("/.well-known/openid-configuration",
                      "/.well-known/oauth-authorization-server"):
            status, body = 200, orjson.dumps({
                "issuer": self.metadata_issuer or self.issuer,
                "jwks_uri": self.metadata_jwks_uri or f"{self.issuer}/jwks"})
        else:
            status, body = 404, b"{}"
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def serve_bound(build: Callable[[str], Any]) -> AsyncIterator[tuple[str, Any]]:
    """Serve ``build(base_url)`` on a real uvicorn; yields ``(base_url, app)``.

    The port is bound first so that the app can know its own canonical URL
    (an OAuth resource server must: it is the audience of its tokens).
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = build(base)
    try:
        async with serve_asgi(app, sock=sock):
            yield base, app
    finally:
        sock.close()


def structured(result: dict[str, Any]) -> Any:
    """A tool's JSON result (``whoami`` declares no output schema: it comes as text)."""
    if "structuredContent" in result:
        return result["structuredContent"]
    return orjson.loads(result["content"][0]["text"])


def demo_app(**auth: Any) -> AuthenticatingApp:
    """The real demo server's transports behind authentication, plus a ``whoami`` tool
    that reports what a handler learns about its caller."""
    server = build_demo_server()

    @server.tool()
    def whoami(ctx: Context) -> dict[str, Any]:
        """Who the transport says is calling, and whether the token reached the handler."""
        principal = ctx.transport.principal
        return {"user": principal.user, "organization": principal.organization,
                "scopes": sorted(principal.scopes), "method": str(principal.method),
                "credential": principal.credential,
                "saw_authorization": ctx.transport.header("authorization") is not None}

    return AuthenticatingApp(server.asgi_app().app, **auth)
