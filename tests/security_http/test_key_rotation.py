"""The issuer's keys change and its JWKS endpoint fails, while the protected server runs
on a real uvicorn: rotation is picked up, refetches are rate-limited, an outage
is ridden out on cached keys, and only when nothing usable is left does the
server answer 503 (not 401: the client's token may be perfectly good)."""

from __future__ import annotations

import pytest

from .conftest import TestKeys
from .env import protected
from .kit import Clock, jwks_of, mint, rsa

pytestmark = pytest.mark.anyio


async def test_a_new_kid_is_picked_up_at_most_once_per_refetch_interval(
        keys: TestKeys) -> None:
    clock = Clock()
    async with protected(jwks_of(keys.rsa1), clock=clock, ttl=300, refetch_interval=30) as env:
        old, new = mint(keys.rsa1, env.claims()), mint(keys.rsa2, env.claims())
        before = (await env.post_initialize(old)).status_code, \
            (await env.post_initialize(new)).status_code
        assert env.key_server.fetches == 1  # the unknown kid came in the same second

        env.key_server.document = jwks_of(keys.rsa1, keys.rsa2)  # the issuer rotates
        clock.now += 10
        too_soon = (await env.post_initialize(new)).status_code
        assert env.key_server.fetches == 1  # rate-limited: no refetch inside 30 s
        clock.now += 25
        rotated = (await env.post_initialize(new)).status_code
        assert env.key_server.fetches == 2

        # a flood of made-up kids costs the issuer nothing more
        flood = {(await env.post_initialize(mint(rsa(f"made-up-{n}"), env.claims())))
                 .status_code for n in range(5)}
        assert env.key_server.fetches == 2

        env.key_server.document = jwks_of(keys.rsa2)  # the old key is retired
        clock.now += 301
        retired = (await env.post_initialize(old)).status_code
        current = (await env.post_initialize(new)).status_code
    assert before == (200, 401)
    assert too_soon == 401 and rotated == 200 and flood == {401}
    assert retired == 401 and current == 200


async def test_cached_keys_carry_an_outage_then_the_answer_is_503(keys: TestKeys) -> None:
    clock = Clock()
    async with protected(jwks_of(keys.rsa1), clock=clock, ttl=300, refetch_interval=30,
                         max_stale=600) as env:
        token = mint(keys.rsa1, env.claims())
        assert (await env.post_initialize(token)).status_code == 200
        env.key_server.status = 503  # the issuer goes down
        clock.now += 301
        during = (await env.post_initialize(token)).status_code
        tried = env.key_server.fetches
        clock.now += 5
        still = (await env.post_initialize(token)).status_code
        assert env.key_server.fetches == tried  # no retry before the refetch interval
        clock.now += 600
        gone = await env.post_initialize(token)
        env.key_server.status = 200  # back again
        clock.now += 31
        recovered = (await env.post_initialize(token)).status_code
    assert during == 200 and still == 200 and tried == 2
    assert gone.status_code == 503 and gone.headers["retry-after"] == "30"
    assert "www-authenticate" not in gone.headers
    assert gone.json()["error"]["code"] == -32603
    assert recovered == 200


async def test_no_keys_ever_fetched_is_503(keys: TestKeys) -> None:
    async with protected(jwks_of(keys.rsa1)) as env:
        env.key_server.status = 500
        answer = await env.post_initialize(mint(keys.rsa1, env.claims()))
    assert answer.status_code == 503
