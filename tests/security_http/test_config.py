"""What can be configured and what the server tells clients: the algorithm allow-list
(no HMAC, no ``none``, ever), the metadata URL of a resource, the challenge syntax."""

from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey

from mobius_rpc.security.jwks import StaticKeys
from mobius_rpc.security.oauth import (
    OAuthConfig,
    OAuthVerifier,
    TokenError,
    bearer_challenge,
    metadata_url,
)

from .kit import claims_for, jwks_of

pytestmark = pytest.mark.anyio

ISSUER, RESOURCE = "https://issuer.example", "https://mcp.example/mcp"


@pytest.mark.parametrize("algorithms", [("HS256",), ("RS256", "none"), ()])
def test_symmetric_or_no_algorithms_cannot_be_configured(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        OAuthConfig(issuer=ISSUER, resource=RESOURCE, algorithms=algorithms)


@pytest.mark.parametrize("resource", ["mcp.example/mcp", "ftp://mcp.example/mcp",
                                      "https://mcp.example/mcp#top", "https:///mcp"])
def test_the_resource_must_be_an_absolute_http_url(resource: str) -> None:
    with pytest.raises(ValueError, match="absolute"):
        OAuthConfig(issuer=ISSUER, resource=resource)


async def test_ed25519_by_default_and_the_eddsa_alias_only_when_chosen() -> None:
    key = OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"})
    claims = claims_for(ISSUER, RESOURCE)
    tokens = {"Ed25519": jwt.encode({"alg": "Ed25519", "kid": "ed-1"}, claims, key,
                                    algorithms=["Ed25519"])}
    with pytest.warns(SecurityWarning):  # minting with the alias warns too
        tokens["EdDSA"] = jwt.encode({"alg": "EdDSA", "kid": "ed-1"}, claims, key,
                                     algorithms=["EdDSA"])
    default = OAuthVerifier(OAuthConfig(issuer=ISSUER, resource=RESOURCE),
                            StaticKeys(jwks_of(key)))
    chosen = OAuthVerifier(OAuthConfig(issuer=ISSUER, resource=RESOURCE,
                                       algorithms=("Ed25519", "EdDSA")),
                           StaticKeys(jwks_of(key)))
    assert (await default.verify(tokens["Ed25519"])).user == "ada"
    with pytest.raises(TokenError, match="algorithm is not accepted"):
        await default.verify(tokens["EdDSA"])
    # no SecurityWarning escapes (the suite turns warnings into errors)
    assert (await chosen.verify(tokens["EdDSA"])).user == "ada"


def test_metadata_url_inserts_the_well_known_path_before_the_resource_path() -> None:
    assert metadata_url("https://mcp.example/mcp") == \
        "https://mcp.example/.well-known/oauth-protected-resource/mcp"
    assert metadata_url("https://mcp.example:8443/tenant/a/mcp/") == \
        "https://mcp.example:8443/.well-known/oauth-protected-resource/tenant/a/mcp"
    assert metadata_url("https://mcp.example") == \
        "https://mcp.example/.well-known/oauth-protected-resource"


def test_challenge_values_are_quoted_strings() -> None:
    assert bearer_challenge() == 'Bearer realm="mcp"'
    assert bearer_challenge(scopes=["b", "a"], error="invalid_token",
                            description='say "hi"\\\r\n') == (
        'Bearer scope="a b", error="invalid_token", error_description="say \\"hi\\"\\\\"')
