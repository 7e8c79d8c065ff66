"""Property: for any mix of claims, the verifier accepts a signed token exactly when an
independent reference evaluation of the rules does, and refuses it the same way
(401 for a bad token, 403 only for a good token lacking a required scope)."""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from mobius_rpc.security.jwks import StaticKeys
from mobius_rpc.security.oauth import OAuthConfig, OAuthVerifier, ScopeError, TokenError

from .kit import ec, jwks_of, mint

NOW = 1_900_000_000
ISSUER = "https://issuer.example"
RESOURCE = "http://127.0.0.1:8000/mcp"
#: spellings of our resource that name it (scheme and host are case-insensitive,
#: a trailing slash is not significant); anything else names another resource
SAME_RESOURCE = {RESOURCE, RESOURCE + "/", "HTTP://127.0.0.1:8000/mcp"}
KEY = ec("ec-1")
VERIFIER = OAuthVerifier(
    OAuthConfig(issuer=ISSUER, resource=RESOURCE, required_scopes=frozenset({"mcp:tools"}),
                leeway=30),
    StaticKeys(jwks_of(KEY)), clock=lambda: NOW)
ABSENT = object()

audiences = st.sampled_from(sorted(SAME_RESOURCE) + [
    "http://127.0.0.1:8000/mcp2", "http://127.0.0.1:8000", "http://127.0.0.1:8001/mcp",
    "https://127.0.0.1:8000/mcp", ""])
times = st.one_of(st.just(ABSENT), st.integers(-120, 120).map(lambda d: NOW + d),
                  st.sampled_from(["soon", None, True, 1.5e9]))
scope_words = st.lists(st.sampled_from(["mcp:tools", "mcp:read", "mcp:toolsx", "MCP:TOOLS"]),
                       max_size=3)


def mostly(good: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` five times in six, else a draw from ``other``: most tokens then get
    past most checks, so every rule decides some of the examples."""
    return st.tuples(st.integers(0, 5), other).map(lambda pick: good if pick[0] else pick[1])


claim_sets = st.fixed_dictionaries({
    "iss": mostly(ISSUER, st.sampled_from([ISSUER + "/", "https://evil.example", ABSENT, 7])),
    "aud": mostly(RESOURCE, st.one_of(audiences, st.lists(audiences, max_size=3),
                                      st.just(ABSENT), st.just(42))),
    "exp": mostly(NOW + 300, times), "nbf": mostly(NOW - 5, times), "iat": mostly(NOW, times),
    "sub": mostly("ada", st.sampled_from(["", ABSENT, 7])),
    "org": mostly("acme", st.sampled_from(["", ABSENT, ["acme"]])),
    "scope": mostly("mcp:tools mcp:read",
                    st.one_of(scope_words.map(" ".join), st.just(ABSENT), st.just(3))),
    "scp": mostly(ABSENT, scope_words),
})


def reference(claims: dict[str, Any]) -> str:
    """The rules, written out once more without the verifier's code: "ok", "401", "403"."""
    def time_ok(name: str, check: Any, required: bool = False) -> bool:
        value = claims.get(name, ABSENT)
        if value is ABSENT:
            return not required
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return bool(check(value))

    aud = claims.get("aud", ABSENT)
    named = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    raw_scope = claims.get("scope", claims.get("scp", ABSENT))
    if raw_scope is ABSENT:
        scopes: set[str] | None = set()
    elif isinstance(raw_scope, str):
        scopes = set(raw_scope.split())
    elif isinstance(raw_scope, list):
        scopes = set(raw_scope)
    else:
        scopes = None
    valid = (claims.get("iss") == ISSUER
             and any(item in SAME_RESOURCE for item in named)
             and time_ok("exp", lambda exp: NOW <= exp + 30, required=True)
             and time_ok("nbf", lambda nbf: nbf <= NOW + 30)
             and time_ok("iat", lambda iat: iat <= NOW + 30)
             and isinstance(claims.get("sub"), str) and claims["sub"] != ""
             and isinstance(claims.get("org", ""), str)
             and scopes is not None)
    if not valid:
        return "401"
    return "ok" if scopes is not None and "mcp:tools" in scopes else "403"


def outcome(token: str) -> str:
    try:
        principal = anyio.run(VERIFIER.verify, token)
    except TokenError:
        return "401"
    except ScopeError:
        return "403"
    assert principal.user == "ada"
    return "ok"


@settings(max_examples=300, deadline=None)
@given(claim_sets)
def test_the_verifier_agrees_with_the_reference(drawn: dict[str, Any]) -> None:
    claims = {name: value for name, value in drawn.items() if value is not ABSENT}
    assert outcome(mint(KEY, claims)) == reference(claims)
