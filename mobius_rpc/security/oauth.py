"""An OAuth 2.1 resource server: bearer JWTs from an external authorization server.

An HTTP MCP server accepts access tokens its authorization server issued
*for it*: :class:`OAuthVerifier` checks a token's signature against the
issuer's published keys (:class:`~.jwks.JwksCache`), that the issuer is the
configured one, that the audience names this server's canonical resource URL
(RFC 8707: a token minted for another service is worthless here, which is
what stops token replay across services), the validity window, and the
scopes this server requires; then maps the claims to a :class:`Principal`.

The signature check is deliberately narrow, because that is where JWT
libraries have been attacked:

* only asymmetric algorithms on an allow-list; ``none`` and the HMAC family
  can never be configured, so a token "signed" with the issuer's *public*
  key as an HMAC secret (key confusion) has no algorithm to be checked with;
* the key comes only from the configured key set: a header that carries its
  own key (``jwk``, ``x5c``) or points at one (``jku``, ``x5u``) is refused;
* the algorithm must fit the key's type (the JOSE library checks this too).

This module also builds what the server tells clients: the protected
resource metadata document (RFC 9728) and the ``WWW-Authenticate``
challenges of 401 and 403 answers (RFC 6750 §3).  Error descriptions are
fixed texts: nothing from the token is echoed back or logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError, SecurityWarning
from joserfc.jws import JWSRegistry

from .jwks import JwksCache, KeySource, PublicKey
from .principal import AuthMethod, Principal

__all__ = ("OAuthConfig", "OAuthVerifier", "TokenError", "ScopeError",
           "ASYMMETRIC_ALGORITHMS", "DEFAULT_ALGORITHMS", "METADATA_PATH",
           "protected_resource_metadata", "metadata_url", "bearer_challenge")

#: every signing algorithm this server can be configured to accept
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                   "ES256", "ES384", "ES512", "ES256K",
                                   "Ed25519", "Ed448", "EdDSA"})
#: the default allow-list (``EdDSA`` is deprecated by RFC 9864 in favour of ``Ed25519``)
DEFAULT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                      "ES256", "ES384", "ES512", "Ed25519")
#: RFC 9728 well-known path (the resource's own path is appended for path-bearing resources)
METADATA_PATH = "/.well-known/oauth-protected-resource"
#: access-token types a JWT may declare (RFC 9068 ``at+jwt``, or plain ``JWT``)
_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
#: header parameters that bring their own key, which would let a token vouch for itself
_KEY_HEADERS = ("jku", "x5u", "jwk", "x5c")


class TokenError(Exception):
    """The token is not acceptable here (401, ``invalid_token``); the message is safe to show."""


class ScopeError(Exception):
    """The token is valid but lacks scopes this server requires (403, ``insufficient_scope``)."""

    def __init__(self, missing: frozenset[str]) -> None:
        super().__init__("the token lacks required scopes")
        self.missing = missing


@dataclass(frozen=True)
class OAuthConfig:
    """How this server trusts its authorization server.

    ``resource`` is this server's canonical URL (the MCP endpoint as clients
    reach it, e.g. ``https://mcp.example.com/mcp``): tokens must name it in
    ``aud``.  ``jwks_url`` defaults to the issuer's metadata ``jwks_uri``.
    """

    issuer: str
    resource: str
    jwks_url: str | None = None
    #: listed in the metadata document; defaults to the issuer alone
    authorization_servers: tuple[str, ...] = ()
    #: every token must carry all of these
    required_scopes: frozenset[str] = frozenset()
    #: advertised in the metadata document; defaults to the required scopes
    scopes_supported: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    #: the claim naming the organization the caller acts in
    organization_claim: str = "org"
    #: the organization of tokens without that claim ("" = none: the policy denies)
    default_organization: str = ""
    #: clock skew tolerated on ``exp``, ``nbf`` and ``iat``, in seconds
    leeway: float = 30.0
    max_token_bytes: int = 8192
    resource_name: str | None = None

    def __post_init__(self) -> None:
        if not self.issuer:
            raise ValueError("the issuer must be named")
        refused = set(self.algorithms) - ASYMMETRIC_ALGORITHMS
        if refused or not self.algorithms:
            raise ValueError(f"only asymmetric signing algorithms can be accepted, not {refused}")
        parts = urlsplit(self.resource)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment:
            raise ValueError("the resource must be an absolute http(s) URL without a fragment")


@dataclass(frozen=True, slots=True)
class _Verdict:
    """An accepted token: who it is, until when to believe it, the key that checked it."""

    principal: Principal
    until: float
    kid: str | None
    key: PublicKey


class OAuthVerifier:
    """Checks bearer JWTs for one resource server; ``verify`` returns the caller."""

    def __init__(self, config: OAuthConfig, keys: KeySource | None = None, *,
                 clock: Callable[[], float] = time.time, cache_size: int = 4096,
                 cache_seconds: float = 60.0) -> None:
        self.config = config
        self.keys: KeySource = keys or JwksCache(url=config.jwks_url, issuer=config.issuer)
        self.clock = clock
        # A client sends the same token on every request: checking its signature
        # once (~0.1-0.3 ms) and remembering the verdict for a short while keeps
        # that off every call.  A remembered verdict holds only while the key that
        # checked the signature is still in the key source's answer (so rotation,
        # refresh and an outage past max_stale end it as they would a full check),
        # never past the token's exp, and at most cache_seconds.  Keyed by a
        # digest: the cache holds no token.  Only accepted tokens are remembered.
        self.cache_size = cache_size
        self.cache_seconds = cache_seconds
        self._verified: OrderedDict[bytes, _Verdict] = OrderedDict()
        self._resource = _canonical(config.resource)
        # lenient about unregistered header names (issuers add their own), strict
        # about ``crit``; one registry per algorithm, so each decode allows exactly one
        self._registries = {alg: JWSRegistry(algorithms=[alg], strict_check_header=False)
                            for alg in config.algorithms}

    async def verify(self, token: str) -> Principal:
        """The principal ``token`` authenticates; :class:`TokenError` or :class:`ScopeError`.

        A :class:`~.jwks.JwksUnavailable` from the key cache propagates: the
        token may well be good, and the caller should answer 503, not 401.
        """
        if len(token) > self.config.max_token_bytes:
            raise TokenError("the token is too large")
        digest = hashlib.sha256(token.encode()).digest()
        verdict = self._verified.pop(digest, None)
        if verdict is None or self.clock() >= verdict.until or not any(
                key is verdict.key for key in await self.keys.keys_for(verdict.kid)):
            verdict = await self._verify(token)
        self._verified[digest] = verdict
        if len(self._verified) > self.cache_size:
            self._verified.popitem(last=False)
        return verdict.principal

    async def _verify(self, token: str) -> _Verdict:
        header = _header_of(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._registries:
            raise TokenError("the token's signing algorithm is not accepted")
        if any(name in header for name in _KEY_HEADERS):
            raise TokenError("the token names its own key; keys come only from the issuer")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _TYPES):
            raise TokenError("the token is not an access token")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenError("the token's key id is malformed")
        candidates = await self.keys.keys_for(kid)
        if not candidates:
            raise TokenError("the token's signing key is unknown")
        claims, key = self._decode(token, alg, candidates)
        expires = self._check_claims(claims)
        # a 403 is for a token that is good in every other respect
        principal = self._principal(claims, scopes_of(claims), expires + self.config.leeway)
        missing = self.config.required_scopes - principal.scopes
        if missing:
            raise ScopeError(frozenset(missing))
        until = min(expires, self.clock() + self.cache_seconds)
        return _Verdict(principal, until, kid, key)

    def _decode(self, token: str, alg: str,
                candidates: Iterable[PublicKey]) -> tuple[Mapping[str, Any], PublicKey]:
        registry = self._registries[alg]
        for key in candidates:
            try:
                if alg == "EdDSA":
                    with warnings.catch_warnings():
                        # the deprecated alias warns on every use; configuring it was the warning
                        warnings.simplefilter("ignore", SecurityWarning)
                        decoded = jwt.decode(token, key, algorithms=[alg], registry=registry)
                else:
                    decoded = jwt.decode(token, key, algorithms=[alg], registry=registry)
                return decoded.claims, key
            except BadSignatureError:
                continue
            except (JoseError, ValueError, TypeError) as error:
                raise TokenError("the token is malformed") from error
        raise TokenError("the token's signature is invalid")

    def _check_claims(self, claims: Mapping[str, Any]) -> float:
        """Checks issuer, audience and validity window; returns the token's ``exp``."""
        if claims.get("iss") != self.config.issuer:
            raise TokenError("the token was issued by another authorization server")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or not any(
                isinstance(item, str) and _canonical(item) == self._resource for item in audiences):
            raise TokenError("the token was issued for another resource")
        now, leeway = self.clock(), self.config.leeway
        exp = _number(claims, "exp", required=True)
        if exp is not None and now > exp + leeway:
            raise TokenError("the token has expired")
        nbf = _number(claims, "nbf")
        if nbf is not None and now + leeway < nbf:
            raise TokenError("the token is not valid yet")
        iat = _number(claims, "iat")
        if iat is not None and now + leeway < iat:
            raise TokenError("the token was issued in the future")
        assert exp is not None
        return exp

    def _principal(self, claims: Mapping[str, Any], scopes: frozenset[str],
                   expires_at: float) -> Principal:
        subject = claims.get("sub", claims.get("client_id"))
        if not isinstance(subject, str) or not subject:
            raise TokenError("the token names no subject")
        organization = claims.get(self.config.organization_claim,
                                  self.config.default_organization)
        if not isinstance(organization, str):
            raise TokenError("the token's organization claim is malformed")
        jti = claims.get("jti")
        return Principal(subject, organization, scopes=scopes, method=AuthMethod.OAUTH,
                         credential=jti if isinstance(jti, str) else None,
                         expires_at=expires_at)


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """The scopes a token grants: ``scope`` (space-separated, RFC 9068) or ``scp`` (a list)."""
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return frozenset(raw)
    raise TokenError("the token's scope claim is malformed")


def _header_of(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, read before any key is chosen."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("the token is not a signed JWT")
    try:
        header = orjson.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (binascii.Error, ValueError) as error:
        raise TokenError("the token is malformed") from error
    if not isinstance(header, dict):
        raise TokenError("the token is malformed")
    return header


def _number(claims: Mapping[str, Any], name: str, *, required: bool = False) -> float | None:
    if name not in claims and not required:
        return None
    value = claims.get(name)  # present but null is as malformed as a string
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"the token's {name} claim is missing or malformed")
    return float(value)


def _canonical(url: str) -> str:
    """A resource URL for comparison: scheme and host are case-insensitive, one trailing
    slash is not significant."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}" + (
        f"?{parts.query}" if parts.query else "")


def metadata_url(resource: str) -> str:
    """Where the metadata of ``resource`` lives (RFC 9728 §3.1: the well-known path is
    inserted between the host and the resource's path)."""
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}{METADATA_PATH}{parts.path.rstrip('/')}"


def protected_resource_metadata(config: OAuthConfig) -> dict[str, Any]:
    """The RFC 9728 document: which authorization servers issue tokens for this resource."""
    document: dict[str, Any] = {
        "resource": config.resource,
        "authorization_servers": list(config.authorization_servers or (config.issuer,)),
        "bearer_methods_supported": ["header"],
    }
    scopes = config.scopes_supported or tuple(sorted(config.required_scopes))
    if scopes:
        document["scopes_supported"] = list(scopes)
    if config.resource_name:
        document["resource_name"] = config.resource_name
    return document


def bearer_challenge(*, resource_metadata: str | None = None, scopes: Iterable[str] = (),
                     error: str | None = None, description: str | None = None) -> str:
    """A ``WWW-Authenticate: Bearer …`` value (RFC 6750 §3, RFC 9728 §5.1).

    Without ``error`` it is the plain "authenticate" challenge for a request
    that carried no credentials (RFC 6750 §3.1: no error code then).
    """
    params: list[tuple[str, str]] = []
    if resource_metadata:
        params.append(("resource_metadata", resource_metadata))
    scope = " ".join(sorted(scopes))
    if scope:
        params.append(("scope", scope))
    if error:
        params.append(("error", error))
    if description:
        params.append(("error_description", description))
    if not params:
        return 'Bearer realm="mcp"'
    return "Bearer " + ", ".join(f'{name}="{_quoted(value)}"' for name, value in params)


def _quoted(value: str) -> str:
    """The content of an HTTP quoted-string: printable ASCII, quotes and backslashes escaped."""
    printable = "".join(ch for ch in value if " " <= ch <= "~")
    return printable.replace("\\", "\\\\").replace('"', '\\"')
