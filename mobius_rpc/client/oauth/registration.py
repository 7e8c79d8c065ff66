"""Dynamic client registration (RFC 7591): becoming a client of an authorization server.

Used only when no client id is configured and the server takes no client ID
metadata document.  The request says what the client is: a native
application when its redirect URI is on loopback (RFC 8252), which grants it
uses (including ``refresh_token``, so that the server may issue refresh
tokens), and the token endpoint authentication it prefers among those the
server offers.  The answer is kept per issuer by the caller.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from .errors import OAuthError
from .metadata import MAX_DOCUMENT_BYTES, AuthServer
from .store import ClientRegistration
from .urls import is_loopback

__all__ = ("register",)

_METHOD_PREFERENCE = ("client_secret_basic", "client_secret_post", "none")


async def register(http: httpx.AsyncClient, auth_server: AuthServer, redirect_uri: str,
                   client_name: str) -> ClientRegistration:
    """Register at ``auth_server``'s registration endpoint; our new identity there."""
    endpoint = auth_server.registration_endpoint
    assert endpoint is not None
    offered = auth_server.token_auth_methods
    method = next((m for m in _METHOD_PREFERENCE if offered and m in offered), "none")
    native = is_loopback(urlsplit(redirect_uri).hostname or "")
    body = {"client_name": client_name, "application_type": "native" if native else "web",
            "redirect_uris": [redirect_uri], "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"], "token_endpoint_auth_method": method}
    try:
        response = await http.post(endpoint, json=body)
    except httpx.HTTPError as exc:
        raise OAuthError(f"cannot reach the registration endpoint {endpoint}: "
                         f"{type(exc).__name__}: {exc}", "registration") from exc
    answer = None
    if response.status_code in (200, 201) and len(response.content) <= MAX_DOCUMENT_BYTES:
        try:
            answer = response.json()
        except ValueError:
            answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("client_id"), str):
        raise OAuthError(f"dynamic registration at {endpoint} failed: HTTP "
                         f"{response.status_code}", "registration")
    secret = answer.get("client_secret")
    chosen = answer.get("token_endpoint_auth_method") or method
    if not isinstance(secret, str):
        secret, chosen = None, "none"
    return ClientRegistration(answer["client_id"], secret, str(chosen), auth_server.issuer,
                              (redirect_uri,))
