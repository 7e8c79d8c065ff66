"""Requests to the token endpoint: client authentication, grants, and the answer's checks.

One function posts a form to the token endpoint with the client's
authentication (RFC 6749 §2.3 ``client_secret_basic`` / ``_post``, ``none``
for a public client, RFC 7523 ``private_key_jwt``) and turns the answer into a
:class:`TokenSet` or an :class:`OAuthError` naming the server's error code.
PKCE (RFC 7636, S256 only) lives here too: the verifier never leaves this
process except in the token request.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

from .dpop import DPoPKey
from .errors import OAuthError
from .metadata import MAX_DOCUMENT_BYTES
from .store import ClientRegistration, TokenSet
from .urls import require_secure

__all__ = ("Pkce", "SigningKey", "token_request", "client_auth", "load_signing_key")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class Pkce:
    """A fresh PKCE verifier and its S256 challenge."""

    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)  # 64 characters, within 43..128
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


@dataclass(frozen=True)
class SigningKey:
    """A private key for ``private_key_jwt`` client authentication, and its algorithm."""

    key: RSAKey | ECKey | OKPKey
    algorithm: str


def load_signing_key(pem: str, algorithm: str | None = None) -> SigningKey:
    """A PEM (PKCS#8) private key; the algorithm defaults to the key type's usual one."""
    for kind, default in ((ECKey, "ES256"), (RSAKey, "RS256"), (OKPKey, "EdDSA")):
        try:
            key = kind.import_key(pem)
        except (JoseError, ValueError, TypeError):
            continue
        if not key.is_private:
            raise OAuthError("the client assertion key is not a private key", "bad-key")
        return SigningKey(key, algorithm or default)
    raise OAuthError("the client assertion key is not a PEM private key", "bad-key")


def client_auth(client: ClientRegistration, audience: str, key: SigningKey | None,
                ) -> tuple[dict[str, str], dict[str, str]]:
    """The form fields and headers that authenticate ``client`` at a token endpoint."""
    method = client.auth_method
    if method == "client_secret_basic" and client.client_secret is not None:
        pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret, safe='')}"
        return {}, {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    if method == "client_secret_post" and client.client_secret is not None:
        return {"client_id": client.client_id, "client_secret": client.client_secret}, {}
    if method == "private_key_jwt":
        if key is None:
            raise OAuthError("private_key_jwt needs a signing key", "bad-key")
        now = int(time.time())
        claims = {"iss": client.client_id, "sub": client.client_id, "aud": audience,
                  "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        assertion = jwt.encode({"alg": key.algorithm, "typ": "JWT"}, claims, key.key,
                               algorithms=[key.algorithm])
        return {"client_id": client.client_id, "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion}, {}
    return {"client_id": client.client_id}, {}


async def token_request(http: httpx.AsyncClient, endpoint: str, form: dict[str, str],
                        client: ClientRegistration, *, issuer: str, resource: str,
                        key: SigningKey | None = None,
                        clock: Callable[[], float] = time.time,
                        anonymous: bool = False, dpop: DPoPKey | None = None) -> TokenSet:
    """POST ``form`` (plus client authentication, unless ``anonymous``) to ``endpoint``;
    the tokens it grants."""
    require_secure(endpoint, "the token endpoint")
    fields, headers = ({}, {}) if anonymous else client_auth(client, issuer, key)
    for _attempt in (1, 2):  # a second time only with a DPoP nonce the server asked for
        sent = {"Accept": "application/json", **headers}
        if dpop is not None:
            sent["DPoP"] = dpop.proof("POST", endpoint)
        try:
            response = await http.post(endpoint, data={**form, **fields}, headers=sent)
        except httpx.HTTPError as exc:
            raise OAuthError(f"cannot reach the token endpoint {endpoint}: "
                             f"{type(exc).__name__}: {exc}", "token-endpoint") from exc
        if dpop is None or response.status_code != 400 \
                or b"use_dpop_nonce" not in response.content[:4096] \
                or not dpop.remember_nonce(endpoint, response.headers.get("dpop-nonce")):
            break
    if response.is_redirect:
        raise OAuthError(f"the token endpoint {endpoint} redirects; refusing", "redirect")
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise OAuthError(f"the token endpoint {endpoint} answered too much", "token-endpoint")
    try:
        answer: Any = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        answer = None
    if response.status_code != 200 or not isinstance(answer, dict):
        code = answer.get("error") if isinstance(answer, dict) else None
        detail = answer.get("error_description") if isinstance(answer, dict) else None
        raise OAuthError(f"the token endpoint {endpoint} refused the "
                         f"{form.get('grant_type')} grant: HTTP {response.status_code}"
                         + (f" {code}" if code else "") + (f" ({detail})" if detail else ""),
                         str(code or "token-endpoint"))
    if dpop is not None:
        dpop.remember_nonce(endpoint, response.headers.get("dpop-nonce"))
    return _token_set(answer, endpoint, issuer=issuer, resource=resource,
                      previous_refresh=form.get("refresh_token"), now=clock(),
                      dpop=dpop is not None)


def _token_set(answer: dict[str, Any], endpoint: str, *, issuer: str, resource: str,
               previous_refresh: str | None, now: float, dpop: bool) -> TokenSet:
    token = answer.get("access_token")
    kind = answer.get("token_type", "Bearer")
    if not isinstance(token, str) or not token:
        raise OAuthError(f"the token endpoint {endpoint} sent no access_token", "token-endpoint")
    allowed = ("bearer", "dpop") if dpop else ("bearer",)
    if not isinstance(kind, str) or kind.lower() not in allowed:
        raise OAuthError(f"the token endpoint {endpoint} sent a {kind!r} token; only "
                         f"{' and '.join(allowed)} tokens are used", "token-endpoint")
    lifetime = answer.get("expires_in")
    expires_at = now + float(lifetime) if isinstance(lifetime, int | float) \
        and not isinstance(lifetime, bool) and lifetime >= 0 else None
    refresh = answer.get("refresh_token")
    scope = answer.get("scope")
    return TokenSet(access_token=token, token_type="DPoP" if kind.lower() == "dpop" else "Bearer",
                    expires_at=expires_at,
                    refresh_token=refresh if isinstance(refresh, str) else previous_refresh,
                    scope=scope if isinstance(scope, str) else None, issuer=issuer,
                    resource=resource)
