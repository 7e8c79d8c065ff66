"""JwksCache against a real HTTP key server: limits on what it fetches, which keys it
keeps, discovery from the issuer's metadata, one fetch for many waiting requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from mobius_rpc.security.jwks import (
    JwksCache,
    JwksUnavailable,
    StaticKeys,
    discover_jwks_uri,
    fetch_json,
)

from .conftest import TestKeys
from .kit import KeyServer, jwks_of, serve_bound

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def key_server(document: dict[str, Any] | None = None) -> AsyncIterator[KeyServer]:
    server = KeyServer(document or {"keys": []})
    async with serve_bound(lambda _base: server) as (base, _):
        server.issuer = base
        yield server


async def test_fetches_are_bounded_in_size_and_time_and_never_redirected() -> None:
    async with key_server() as server:
        base = server.issuer
        with pytest.raises(JwksUnavailable, match="limit 100000"):
            await fetch_json(f"{base}/big", max_bytes=100_000)  # declared too large
        with pytest.raises(JwksUnavailable, match="more than 100000 bytes"):
            await fetch_json(f"{base}/chunked-big", max_bytes=100_000)  # streamed too large
        with pytest.raises(JwksUnavailable, match="HTTP 302"):
            await fetch_json(f"{base}/redirect")
        with pytest.raises(JwksUnavailable, match="malformed JSON"):
            await fetch_json(f"{base}/not-json")
        with pytest.raises(JwksUnavailable, match="ReadTimeout"):
            await fetch_json(f"{base}/slow", timeout=0.2)
        server.release.set()
        assert await fetch_json(f"{base}/chunked-big", max_bytes=2_000_000) == {}
    with pytest.raises(JwksUnavailable, match="unreachable"):
        await fetch_json(f"{base}/jwks")  # the server is gone


async def test_only_asymmetric_signing_keys_are_kept(keys: TestKeys) -> None:
    rsa_key = jwks_of(keys.rsa1)["keys"][0]
    document = {"keys": [
        {"kty": "oct", "kid": "shared", "k": "c2VjcmV0"},
        rsa_key | {"kid": "enc", "use": "enc"},
        {"kty": "PQC", "kid": "future"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        "not a key",
        rsa_key,
        jwks_of(keys.ec1)["keys"][0],
    ]}
    async with key_server(document) as server:
        cache = JwksCache(url=f"{server.issuer}/jwks")
        found = {kid: len(await cache.keys_for(kid))
                 for kid in ("shared", "enc", "future", "broken", "rsa-1", "ec-1")}
        # a token without kid names no key when the set has several
        anonymous = await cache.keys_for(None)
    assert found == {"shared": 0, "enc": 0, "future": 0, "broken": 0, "rsa-1": 1, "ec-1": 1}
    assert anonymous == []
    single = StaticKeys(jwks_of(keys.rsa1))
    assert len(await single.keys_for(None)) == 1
    with pytest.raises(JwksUnavailable, match="no 'keys' list"):
        StaticKeys({"kty": "RSA"})


async def test_the_key_set_is_discovered_from_the_issuer_metadata(keys: TestKeys) -> None:
    async with key_server(jwks_of(keys.rsa1)) as server:
        cache = JwksCache(issuer=server.issuer)
        assert len(await cache.keys_for("rsa-1")) == 1
        assert cache.url == f"{server.issuer}/jwks"

        server.metadata_issuer = "http://evil.example"  # mix-up: metadata of another issuer
        with pytest.raises(JwksUnavailable, match="describes another issuer"):
            await JwksCache(issuer=server.issuer).keys_for("rsa-1")
    with pytest.raises(ValueError, match="url or the issuer"):
        JwksCache()


async def test_an_https_issuer_cannot_send_us_to_plain_http_for_its_keys(
        keys: TestKeys) -> None:
    # in process (httpx's ASGI transport), as no TLS server runs here
    server = KeyServer(jwks_of(keys.rsa1), issuer="https://issuer.test")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server)) as client:
        assert await discover_jwks_uri(server.issuer, client=client) == \
            "https://issuer.test/jwks"
        server.metadata_jwks_uri = "http://issuer.test/jwks"
        with pytest.raises(JwksUnavailable, match="names no jwks_uri"):
            await discover_jwks_uri(server.issuer, client=client)


async def test_concurrent_requests_on_a_cold_cache_share_one_fetch(keys: TestKeys) -> None:
    async with key_server(jwks_of(keys.rsa1)) as server:
        cache = JwksCache(url=f"{server.issuer}/jwks")
        counts: list[int] = []

        async def look() -> None:
            counts.append(len(await cache.keys_for("rsa-1")))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(look)
        assert counts == [1] * 20
        assert server.fetches == 1
