"""Discovery: from a 401 to the authorization server's endpoints.

Two documents, each fetched with a size limit and a timeout and never
through a redirect (a metadata URL that answers 3xx is refused: following it
would let whoever controls the redirect choose our authorization server):

* the protected resource metadata of the MCP server (RFC 9728): from the
  challenge's ``resource_metadata``, else the path-inserted well-known URL,
  else the root one.  Its ``resource`` must stand for the server we talk to,
  or its tokens would be minted for someone else;
* the authorization server metadata (RFC 8414, or OpenID Connect discovery):
  ``/.well-known/oauth-authorization-server[/path]``, then
  ``/.well-known/openid-configuration[/path]``, then
  ``[/path]/.well-known/openid-configuration``.  Its ``issuer`` must be the
  exact string we built those URLs from (no normalisation: a trailing slash
  is a different issuer).

Servers of the 2025-03-26 revision publish no resource metadata: the MCP
server's origin is then the issuer, and when it has no metadata either the
endpoints default to ``/authorize``, ``/token`` and ``/register`` there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from .errors import OAuthError
from .urls import origin_of, require_secure, resource_allowed, root_of, well_known_urls

__all__ = ("ProtectedResource", "AuthServer", "fetch_document", "discover_resource",
           "discover_auth_server", "fallback_auth_server", "MAX_DOCUMENT_BYTES")

log = logging.getLogger("mobius_rpc.client.oauth")

MAX_DOCUMENT_BYTES = 256 * 1024


@dataclass(frozen=True)
class ProtectedResource:
    """What an MCP server says about itself (RFC 9728); ``url`` is where it came from."""

    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...] | None
    url: str | None
    #: the server takes DPoP-bound tokens (RFC 9449 §5.2 metadata)
    dpop: bool = False


@dataclass(frozen=True)
class AuthServer:
    """The endpoints and options of one authorization server."""

    issuer: str
    authorization_endpoint: str | None
    token_endpoint: str
    registration_endpoint: str | None = None
    revocation_endpoint: str | None = None
    scopes_supported: tuple[str, ...] | None = None
    token_auth_methods: tuple[str, ...] | None = None
    grant_types: tuple[str, ...] | None = None
    code_challenge_methods: tuple[str, ...] | None = None
    client_id_metadata_documents: bool = False
    iss_parameter_supported: bool = False
    #: DPoP proof algorithms it accepts (RFC 9449); None: no DPoP
    dpop_algs: tuple[str, ...] | None = None
    #: from metadata (False: the 2025-03-26 default endpoints, nothing advertised)
    discovered: bool = True


async def fetch_document(http: httpx.AsyncClient, url: str, what: str) -> dict[str, Any] | None:
    """The JSON object at ``url``; None on 4xx (not there); :class:`OAuthError` otherwise."""
    require_secure(url, f"the {what} URL")
    try:
        async with http.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.is_redirect:
                where = response.headers.get("location", "?")
                raise OAuthError(f"the {what} at {url} redirects to {where!r}; metadata is "
                                 f"never fetched through a redirect", "redirect")
            if 400 <= response.status_code < 500:
                return None
            if response.status_code != 200:
                raise OAuthError(f"the {what} at {url} answered HTTP {response.status_code}",
                                 "metadata-unavailable")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise OAuthError(f"the {what} at {url} is larger than "
                                     f"{MAX_DOCUMENT_BYTES} bytes", "malformed-metadata")
    except httpx.HTTPError as exc:
        raise OAuthError(f"cannot fetch the {what} at {url}: {type(exc).__name__}: {exc}",
                         "metadata-unavailable") from exc
    try:
        document = orjson.loads(bytes(body))
    except orjson.JSONDecodeError as exc:
        raise OAuthError(f"the {what} at {url} is not JSON", "malformed-metadata") from exc
    if not isinstance(document, dict):
        raise OAuthError(f"the {what} at {url} is not a JSON object", "malformed-metadata")
    return document


def _strings(document: dict[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise OAuthError(f"{key} in the {where} is not a list of strings", "malformed-metadata")
    return tuple(value)


async def discover_resource(http: httpx.AsyncClient, server_url: str,
                            metadata_url: str | None) -> ProtectedResource | None:
    """The server's protected resource metadata, or None when it publishes none."""
    candidates = [metadata_url] if metadata_url else []
    candidates += well_known_urls(server_url, "oauth-protected-resource")
    root = well_known_urls(root_of(server_url), "oauth-protected-resource")
    candidates += [url for url in root if url not in candidates]
    for url in candidates:
        document = await fetch_document(http, url, "protected resource metadata")
        if document is None:
            continue
        where = f"protected resource metadata at {url}"
        resource = document.get("resource")
        if resource is not None:
            require_secure(resource, f"the resource in the {where}")
            if not resource_allowed(server_url, resource):
                raise OAuthError(f"the {where} is for {resource!r}, not for {server_url}; "
                                 f"refusing to get a token for another resource",
                                 "resource-mismatch")
        servers = _strings(document, "authorization_servers", where)
        if not servers:
            raise OAuthError(f"the {where} lists no authorization_servers", "malformed-metadata")
        dpop = document.get("dpop_bound_access_tokens_required") is True \
            or bool(_strings(document, "dpop_signing_alg_values_supported", where))
        return ProtectedResource(resource or server_url, servers,
                                 _strings(document, "scopes_supported", where), url, dpop)
    return None


def _auth_server(document: dict[str, Any], issuer: str, url: str, legacy: bool) -> AuthServer:
    where = f"authorization server metadata at {url}"
    named = document.get("issuer")
    if legacy and isinstance(named, str) and named.startswith(("https://", "http://")) \
            and origin_of(require_secure(named, f"the issuer in the {where}")) \
            == origin_of(issuer):
        issuer = named  # 2025-03-26: the server's own origin, whatever path it names
    if named != issuer:
        raise OAuthError(f"the {where} names the issuer {document.get('issuer')!r}, not "
                         f"{issuer!r}; refusing metadata of a foreign issuer", "issuer-mismatch")
    token = require_secure(document.get("token_endpoint"), f"token_endpoint in the {where}")
    endpoints = {}
    for name in ("authorization_endpoint", "registration_endpoint", "revocation_endpoint"):
        if document.get(name) is not None:
            endpoints[name] = require_secure(document[name], f"{name} in the {where}")
    return AuthServer(
        issuer=issuer, token_endpoint=token,
        authorization_endpoint=endpoints.get("authorization_endpoint"),
        registration_endpoint=endpoints.get("registration_endpoint"),
        revocation_endpoint=endpoints.get("revocation_endpoint"),
        scopes_supported=_strings(document, "scopes_supported", where),
        token_auth_methods=_strings(document, "token_endpoint_auth_methods_supported", where),
        grant_types=_strings(document, "grant_types_supported", where),
        code_challenge_methods=_strings(document, "code_challenge_methods_supported", where),
        client_id_metadata_documents=document.get(
            "client_id_metadata_document_supported") is True,
        iss_parameter_supported=document.get(
            "authorization_response_iss_parameter_supported") is True,
        dpop_algs=_strings(document, "dpop_signing_alg_values_supported", where))


async def discover_auth_server(http: httpx.AsyncClient, issuer: str, *,
                               legacy: bool = False) -> AuthServer | None:
    """The metadata of ``issuer`` (RFC 8414, then OpenID Connect), or None if it has none.

    ``legacy``: ``issuer`` is a 2025-03-26 server's origin, where the server
    itself was the authorization server; its metadata may then name an issuer
    with a path, on that same origin and no other.
    """
    require_secure(issuer, "the authorization server")
    urls = well_known_urls(issuer, "oauth-authorization-server")
    urls += well_known_urls(issuer, "openid-configuration", path_after=True)
    for url in urls:
        document = await fetch_document(http, url, "authorization server metadata")
        if document is not None:
            return _auth_server(document, issuer, url, legacy)
    return None


def fallback_auth_server(origin: str) -> AuthServer:
    """The 2025-03-26 default endpoints at the MCP server's origin (no metadata at all)."""
    return AuthServer(issuer=origin, authorization_endpoint=f"{origin}/authorize",
                      token_endpoint=f"{origin}/token", registration_endpoint=f"{origin}/register",
                      discovered=False)
