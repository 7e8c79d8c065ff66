"""The verifier remembers accepted tokens briefly, and never past what a full check
would allow: not past ``exp``, not past ``cache_seconds``, not beyond its size."""

from __future__ import annotations

from typing import Any

import pytest

from mobius_rpc.security.jwks import StaticKeys, parse_key_set
from mobius_rpc.security.oauth import OAuthConfig, OAuthVerifier, ScopeError, TokenError

from .kit import Clock, claims_for, ec, jwks_of, mint

pytestmark = pytest.mark.anyio

ISSUER, RESOURCE = "https://issuer.example", "https://mcp.example/mcp"
KEY = ec("ec-1")


class CountingVerifier(OAuthVerifier):
    """The real verifier, counting its full checks (signature and claims)."""

    full_checks = 0

    async def _verify(self, token: str) -> Any:
        self.full_checks += 1
        return await super()._verify(token)


def verifier(clock: Clock, **options: Any) -> tuple[CountingVerifier, StaticKeys]:
    keys = StaticKeys(jwks_of(KEY))
    config = OAuthConfig(issuer=ISSUER, resource=RESOURCE,
                         required_scopes=frozenset({"mcp:tools"}), leeway=0)
    return CountingVerifier(config, keys, clock=clock, **options), keys


async def test_an_accepted_token_is_checked_once_until_it_expires() -> None:
    clock = Clock(1_900_000_000)
    check, _ = verifier(clock)
    token = mint(KEY, claims_for(ISSUER, RESOURCE, iat=clock.now, nbf=clock.now,
                                 exp=clock.now + 30))
    for _ in range(50):
        assert (await check.verify(token)).user == "ada"
    assert check.full_checks == 1
    clock.now += 31
    with pytest.raises(TokenError, match="expired"):
        await check.verify(token)


async def test_remembered_only_for_cache_seconds_and_within_its_size() -> None:
    clock = Clock(1_900_000_000)
    check, _ = verifier(clock, cache_seconds=10, cache_size=2)
    tokens = [mint(KEY, claims_for(ISSUER, RESOURCE, jti=f"t{n}", iat=clock.now,
                                   nbf=clock.now, exp=clock.now + 3600)) for n in range(3)]
    await check.verify(tokens[0])
    clock.now += 11
    await check.verify(tokens[0])
    assert check.full_checks == 2  # re-checked once cache_seconds had passed
    await check.verify(tokens[1])
    await check.verify(tokens[2])  # the oldest (tokens[0]) makes room
    await check.verify(tokens[1])
    await check.verify(tokens[0])
    assert check.full_checks == 5


async def test_refused_tokens_are_not_remembered() -> None:
    clock = Clock(1_900_000_000)
    check, _ = verifier(clock)
    token = mint(KEY, claims_for(ISSUER, RESOURCE, scope="mcp:read", iat=clock.now,
                                 nbf=clock.now, exp=clock.now + 30))
    for _ in range(3):
        with pytest.raises(ScopeError):
            await check.verify(token)
    assert check.full_checks == 3


async def test_a_remembered_token_ends_with_its_key() -> None:
    clock = Clock(1_900_000_000)
    check, keys = verifier(clock)
    token = mint(KEY, claims_for(ISSUER, RESOURCE, iat=clock.now, nbf=clock.now,
                                 exp=clock.now + 3600))
    await check.verify(token)
    await check.verify(token)
    assert check.full_checks == 1
    keys.keys = parse_key_set(jwks_of(ec("ec-2")))  # the issuer's key is gone
    with pytest.raises(TokenError, match="signing key is unknown"):
        await check.verify(token)
