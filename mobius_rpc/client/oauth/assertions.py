"""Grants by assertion (RFC 7523 JWT bearer): workload identity and enterprise logins.

Some clients hold no secret and show no login page: a workload presents a
token its platform issued (workload identity federation), or an enterprise
user's identity provider vouches for them with an identity assertion
authorization grant (an "ID-JAG", obtained by token exchange, RFC 8693, from
the user's ID token).  Either way the authorization server receives
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` with the
assertion, plus the resource and scope.  :class:`~.flow.OAuth` takes the
assertion from a callback, so where it comes from stays the caller's
business; :func:`static_assertion` and :func:`id_jag_exchange` are the two
usual sources.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson

from .errors import OAuthError
from .metadata import MAX_DOCUMENT_BYTES
from .urls import require_secure

__all__ = ("Assertion", "static_assertion", "id_jag_exchange", "JWT_BEARER")

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
_ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"

#: (authorization server issuer, resource, scope) -> the assertion to present
Assertion = Callable[[str, str, str | None], Awaitable[str]]


def static_assertion(token: str) -> Assertion:
    """An assertion that is always ``token`` (a workload's platform-issued JWT)."""
    async def assertion(_issuer: str, _resource: str, _scope: str | None) -> str:
        return token

    return assertion


def id_jag_exchange(token_endpoint: str, id_token: str, *, client_id: str | None = None,
                    client_secret: str | None = None, timeout: float = 30.0) -> Assertion:
    """An assertion obtained from the identity provider at ``token_endpoint`` by
    exchanging the user's ``id_token`` for an ID-JAG addressed to the authorization
    server and the resource being asked for."""
    require_secure(token_endpoint, "the identity provider's token endpoint")

    async def assertion(issuer: str, resource: str, scope: str | None) -> str:
        form = {"grant_type": _TOKEN_EXCHANGE, "subject_token": id_token,
                "subject_token_type": _ID_TOKEN, "requested_token_type": _ID_JAG,
                "audience": issuer, "resource": resource}
        if scope:
            form["scope"] = scope
        auth: httpx.Auth | None = httpx.BasicAuth(client_id, client_secret) \
            if client_id and client_secret else None
        if client_id and not client_secret:
            form["client_id"] = client_id
        try:
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
                response = await http.post(token_endpoint, data=form,
                                           auth=auth or httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            raise OAuthError(f"cannot reach the identity provider at {token_endpoint}: "
                             f"{type(exc).__name__}: {exc}", "token-exchange") from exc
        answer: Any = None
        if len(response.content) <= MAX_DOCUMENT_BYTES:
            try:
                answer = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                answer = None
        if response.status_code != 200 or not isinstance(answer, dict) \
                or not isinstance(answer.get("access_token"), str):
            code = answer.get("error") if isinstance(answer, dict) else None
            raise OAuthError(f"the identity provider at {token_endpoint} refused the token "
                             f"exchange: HTTP {response.status_code}"
                             + (f" {code}" if code else ""), str(code or "token-exchange"))
        if answer.get("issued_token_type", _ID_JAG) != _ID_JAG:
            raise OAuthError(f"the identity provider issued a {answer['issued_token_type']!r}, "
                             f"not an ID-JAG", "token-exchange")
        return str(answer["access_token"])

    return assertion
