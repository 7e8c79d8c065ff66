"""Bearer JWTs on a real uvicorn: the good ones open /mcp, every known attack is a 401
(or a 403 for a token without the required scope), and nothing echoes the token."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from mobius_rpc.security.oauth import metadata_url

from .conftest import TestKeys
from .env import Env, protected
from .kit import b64, hmac_signed, jwks_of, mint, rs256_signed, structured, unsigned

pytestmark = pytest.mark.anyio


def attacks(env: Env, keys: TestKeys) -> dict[str, str]:
    """Tokens that must be refused, by what is wrong with them."""
    now = int(time.time())
    good = mint(keys.rsa1, env.claims())
    header, payload, signature = good.split(".")
    public_pem = keys.rsa1.as_pem(private=False)
    public_jwk = b64(keys.rsa1.as_dict(private=False)).encode()
    forger_jwk = keys.forger.as_dict(private=False)
    cases: dict[str, Callable[[], str]] = {
        "expired": lambda: mint(keys.rsa1, env.claims(exp=now - 120)),
        "not yet valid": lambda: mint(keys.rsa1, env.claims(nbf=now + 120)),
        "issued in the future": lambda: mint(keys.rsa1, env.claims(iat=now + 120)),
        "no exp": lambda: mint(keys.rsa1, env.claims(exp=None)),
        "exp not a number": lambda: mint(keys.rsa1, env.claims(exp="tomorrow")),
        "forged signature": lambda: mint(keys.forger, env.claims()),
        "tampered claims": lambda: ".".join(
            (header, b64(env.claims(sub="root", scope="mcp:tools mcp:admin")), signature)),
        "signature of another token": lambda: ".".join(
            (header, payload, mint(keys.rsa1, env.claims(jti="x")).split(".")[2])),
        "wrong audience": lambda: mint(keys.rsa1, env.claims(aud="http://127.0.0.1:1/mcp")),
        "audience list without us": lambda: mint(
            keys.rsa1, env.claims(aud=["http://other.example/mcp", env.base])),
        "no audience": lambda: mint(keys.rsa1, env.claims(aud=None)),
        "wrong issuer": lambda: mint(keys.rsa1, env.claims(iss="http://evil.example")),
        "issuer with a trailing slash": lambda: mint(keys.rsa1,
                                                     env.claims(iss=env.issuer + "/")),
        "alg none": lambda: unsigned(env.claims(), kid="rsa-1"),
        "alg none, no kid": lambda: unsigned(env.claims()),
        "alg None spelled otherwise": lambda: unsigned(env.claims(), alg="None"),
        "HS256 with the public key as PEM": lambda: hmac_signed(public_pem, env.claims(),
                                                                kid="rsa-1"),
        "HS256 with the public JWK": lambda: hmac_signed(public_jwk, env.claims(),
                                                         kid="rsa-1"),
        "RS256 claimed for an EC key": lambda: mint(keys.rsa1, env.claims(), kid="ec-1"),
        "unknown kid": lambda: mint(keys.rsa2, env.claims()),
        "jku pointing elsewhere": lambda: mint(
            keys.forger, env.claims(), kid="evil", jku="http://127.0.0.1:1/evil.json"),
        "jku on a genuine signature": lambda: mint(keys.rsa1, env.claims(),
                                                   jku=f"{env.issuer}/jwks"),
        "x5u pointing elsewhere": lambda: mint(keys.forger, env.claims(),
                                               x5u="http://127.0.0.1:1/cert.pem"),
        "embedded jwk": lambda: mint(keys.forger, env.claims(), jwk=forger_jwk),
        "unknown critical extension": lambda: rs256_signed(keys.rsa1, env.claims(),
                                                           crit=["exp-ext"], **{"exp-ext": 1}),
        "an ID token, not an access token": lambda: mint(keys.rsa1, env.claims(),
                                                         typ="id+jwt"),
        "no subject": lambda: mint(keys.rsa1, env.claims(sub=None)),
        "malformed scope": lambda: mint(keys.rsa1, env.claims(scope={"mcp:tools": 1})),
        "JWE-shaped": lambda: "a.b.c.d.e",
        "not base64": lambda: "e.f.g",
        "header not JSON": lambda: f"{b64(b'not json')}.{payload}.{signature}",
        "too large": lambda: mint(keys.rsa1, env.claims(pad="x" * 9000)),
    }
    return {name: build() for name, build in cases.items()}


async def test_good_tokens_open_mcp_for_a_real_tools_call(keys: TestKeys) -> None:
    async with protected(jwks_of(keys.rsa1, keys.ec1)) as env:
        now = int(time.time())
        rs = await env.call_tool(mint(keys.rsa1, env.claims()), "add", {"a": 2, "b": 40})
        es = await env.call_tool(mint(keys.ec1, env.claims(scope=None,
                                                           scp=["mcp:tools"])), "whoami", {})
        # clocks drift: a few seconds past exp is inside the leeway
        late = await env.post_initialize(mint(keys.rsa1, env.claims(exp=now - 10)))
        audience_list = await env.post_initialize(mint(
            keys.rsa1, env.claims(aud=["http://other.example/mcp", env.resource])))
        default_org = await env.call_tool(mint(keys.rsa1, env.claims(org=None)), "whoami", {})
    assert structured(rs) == {"result": 42}
    assert structured(es)["scopes"] == ["mcp:tools"]
    assert late.status_code == 200 and audience_list.status_code == 200
    assert structured(default_org)["organization"] == ""


async def test_every_attack_is_refused_with_invalid_token(keys: TestKeys) -> None:
    async with protected(jwks_of(keys.rsa1, keys.ec1)) as env:
        tokens = attacks(env, keys)
        answers = {name: await env.post_initialize(token) for name, token in tokens.items()}
        fetches = env.key_server.fetches
    outcome = {name: (answer.status_code, 'error="invalid_token"' in
                      answer.headers.get("www-authenticate", ""))
               for name, answer in answers.items()}
    assert outcome == dict.fromkeys(tokens, (401, True))
    for name, answer in answers.items():
        assert tokens[name] not in answer.text, name
        assert tokens[name] not in answer.headers["www-authenticate"], name
        assert answer.json()["error"]["code"] == -32001
    # "unknown kid" may refetch the key set, but only once in the refetch interval
    assert fetches <= 2


async def test_the_refusal_says_why_in_fixed_words(keys: TestKeys) -> None:
    async with protected(jwks_of(keys.rsa1, keys.ec1)) as env:
        tokens = attacks(env, keys)
        reasons: dict[str, Any] = {}
        for name in ("expired", "wrong audience", "wrong issuer", "alg none",
                     "HS256 with the public key as PEM", "unknown kid", "jku pointing elsewhere",
                     "forged signature", "not yet valid"):
            answer = await env.post_initialize(tokens[name])
            reasons[name] = answer.headers["www-authenticate"].split(
                'error_description="')[1].rstrip('"')
    assert reasons == {
        "expired": "the token has expired",
        "wrong audience": "the token was issued for another resource",
        "wrong issuer": "the token was issued by another authorization server",
        "alg none": "the token's signing algorithm is not accepted",
        "HS256 with the public key as PEM": "the token's signing algorithm is not accepted",
        "unknown kid": "the token's signing key is unknown",
        "jku pointing elsewhere": "the token names its own key; keys come only from the issuer",
        "forged signature": "the token's signature is invalid",
        "not yet valid": "the token is not valid yet",
    }


async def test_insufficient_scope_is_403_with_the_scope_to_ask_for(keys: TestKeys) -> None:
    async with protected(jwks_of(keys.rsa1),
                         required_scopes=frozenset({"mcp:tools", "mcp:read"})) as env:
        token = mint(keys.rsa1, env.claims(scope="mcp:read"))
        answer = await env.post_initialize(token)
        no_scope = await env.post_initialize(mint(keys.rsa1, env.claims(scope=None)))
    assert answer.status_code == 403 and no_scope.status_code == 403
    assert answer.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{metadata_url(env.resource)}", '
        'scope="mcp:read mcp:tools", error="insufficient_scope", '
        'error_description="the token lacks required scopes"')
    assert answer.json()["error"]["code"] == -32003
    assert token not in answer.text
