"""Authentication in front of every HTTP and WebSocket route.

:class:`AuthenticatingApp` wraps the whole ASGI application of the transports
(``McpTransports.app``), not a route of it: the ``/mcp`` fast path, HTTP+SSE's
``/sse`` and ``/messages``, ``/ws`` and any 404 all pass through it, so no
route, method or transport can be reached without a credential.  It

* serves the protected resource metadata (RFC 9728) at the root and the
  path-suffixed well-known URLs without authentication (a client needs it
  to learn where to get a token);
* reads ``Authorization: Bearer …``: a token with the API-token prefix goes to
  the pluggable API-token verifier, anything else to the OAuth verifier;
* refuses with 400/401/403/503, a ``WWW-Authenticate`` challenge and a
  JSON-RPC-shaped body, or a WebSocket handshake refused the same way;
* otherwise leaves the :class:`Principal` in ``scope[PRINCIPAL_KEY]`` (where
  every transport's ``TransportContext`` picks it up) and removes the
  ``Authorization`` header, so that no handler, and nothing a handler calls
  upstream, ever sees the caller's token (token passthrough is forbidden).

Tokens are never logged and never part of an error.  ``auth=False`` turns all
this off for local development: every request acts as one local principal.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.errors import INTERNAL_ERROR, INVALID_REQUEST, McpError
from ..core.jsonrpc import error_response
from ..transports.asgi_context import PRINCIPAL_KEY
from .jwks import JwksUnavailable
from .oauth import (
    METADATA_PATH,
    OAuthVerifier,
    ScopeError,
    TokenError,
    bearer_challenge,
    metadata_url,
    protected_resource_metadata,
)
from .principal import ANONYMOUS, AuthMethod, Principal

__all__ = ("AuthenticatingApp", "ApiTokenVerifier", "CachedTokens", "AuthFailure", "FailureHook",
           "AUTHENTICATION_REQUIRED", "FORBIDDEN", "API_TOKEN_PREFIX")

log = logging.getLogger("mobius_rpc.security")

#: a pluggable verifier of Mobius API tokens: the principal, or None for an unknown token
ApiTokenVerifier = Callable[[str], Awaitable[Principal | None]]
#: its answer without awaiting, for a token it verified before and that still holds
#: (the token's bytes); None: not known so (the verifier is asked)
CachedTokens = Callable[[bytes], Principal | None]
#: what a JWT's principal is in this deployment (its user and roles from the
#: store's membership); None: the user may not act (disabled)
OAuthMembers = Callable[[Principal], Awaitable[Principal | None]]
#: JSON-RPC codes of the refusal bodies (implementation-defined range, -32000..-32019)
AUTHENTICATION_REQUIRED = -32001
FORBIDDEN = -32003
API_TOKEN_PREFIX = "mbx_"
_AUTHORIZATION = b"authorization"
_BEARER = b"Bearer "
_NAME = itemgetter(0)
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_CODES = {400: INVALID_REQUEST, 401: AUTHENTICATION_REQUIRED, 403: FORBIDDEN, 503: INTERNAL_ERROR}


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """One refused request, as the audit log records it (never the token)."""

    status: int
    #: the RFC 6750 error code, or None when no credentials were sent
    error: str | None
    reason: str
    #: which kind of credential was tried, if any
    method: AuthMethod | None
    path: str
    transport: str
    client: tuple[str, int] | None


FailureHook = Callable[[AuthFailure], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Refusal:
    status: int
    error: str | None
    reason: str
    method: AuthMethod | None = None


class AuthenticatingApp:
    """The ASGI app ``app`` behind authentication (see the module docstring).

    ``on_failure`` is awaited before each refusal is sent (the audit log's
    hook: a refusal is on record before the client learns of it).
    ``api_tokens_cached`` answers for the API tokens ``api_tokens`` verified before
    without a coroutine (the common request: ``Bearer`` and a token known to hold).
    ``oauth_members`` turns an accepted JWT's principal into this deployment's
    (the store-backed :class:`~.serving.Authenticator` gives the user and roles of
    the matching membership); without it the JWT's claims are all there is.
    """

    def __init__(self, app: ASGIApp, *, oauth: OAuthVerifier | None = None,
                 api_tokens: ApiTokenVerifier | None = None, auth: bool = True,
                 local_principal: Principal = ANONYMOUS,
                 on_failure: FailureHook | None = None,
                 api_token_prefix: str = API_TOKEN_PREFIX,
                 api_tokens_cached: CachedTokens | None = None,
                 oauth_members: OAuthMembers | None = None) -> None:
        if auth and oauth is None and api_tokens is None:
            raise ValueError("authentication is on but no verifier is configured "
                             "(pass oauth= and/or api_tokens=, or auth=False)")
        self.app = app
        self.oauth = oauth
        self.oauth_members = oauth_members
        self.api_tokens = api_tokens
        self.auth = auth
        self.local_principal = local_principal
        self.on_failure = on_failure
        self.api_token_prefix = api_token_prefix
        self.api_tokens_cached = api_tokens_cached if api_tokens is not None else None
        self._metadata_paths: frozenset[str] = frozenset()
        self._metadata: bytes = b""
        self._resource_metadata: str | None = None
        if oauth is not None:
            url = metadata_url(oauth.config.resource)
            self._resource_metadata = url
            self._metadata_paths = frozenset({METADATA_PATH, urlsplit(url).path})
            self._metadata = orjson.dumps(protected_resource_metadata(oauth.config))
        if not auth:
            log.warning("authentication is OFF: every HTTP and WebSocket request acts as %r "
                        "(for local development only)", local_principal.user)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)  # lifespan
            return
        if self._metadata_paths and kind == "http" and self._is_metadata(scope):
            await self._serve_metadata(scope, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        # where the Authorization headers are, found by C loops (map, count, index:
        # half the time of one comprehension): what is checked, and what goes
        names = list(map(_NAME, headers))
        count = names.count(_AUTHORIZATION)
        at = names.index(_AUTHORIZATION) if count else -1
        if self.auth:
            known = self.api_tokens_cached
            outcome: Principal | _Refusal | None = None
            if known is not None and count == 1 and not scope.get("query_string"):
                # a token the verifier knows is one that passed every check below
                # (scheme, shape, prefix), and only its exact bytes hash to its key:
                # whatever else the header holds goes the whole way
                value: bytes = headers[at][1]
                if value.startswith(_BEARER):
                    outcome = known(value[7:])
            if outcome is None:
                outcome = await self._authenticate(scope, headers, count, at)
            if not isinstance(outcome, Principal):
                await self._refuse(outcome, scope, receive, send)
                return
        else:
            outcome = self.local_principal
        await self.app(_with_principal(scope, outcome, headers, count, at), receive, send)

    # ---------------------------------------------------------------- authentication

    async def _authenticate(self, scope: Scope, headers: list[tuple[bytes, bytes]],
                            count: int, at: int) -> Principal | _Refusal:
        """``count`` Authorization headers in ``headers``, the first at ``at``."""
        query = scope.get("query_string", b"")
        if query and any(name == "access_token" for name, _ in
                         parse_qsl(query.decode("latin-1"), keep_blank_values=True)):
            return _Refusal(400, "invalid_request",
                            "tokens are accepted only in the Authorization header")
        if count != 1:
            if not count:
                return _Refusal(401, None, "authentication required")
            return _Refusal(400, "invalid_request", "more than one Authorization header")
        scheme, _, credentials = headers[at][1].decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer":
            return _Refusal(401, None, "authentication required: use a Bearer token")
        token = credentials.strip()
        if not _TOKEN68.fullmatch(token):
            return _Refusal(400, "invalid_request", "the bearer token is malformed")
        if not token.startswith(self.api_token_prefix):
            return await self._oauth_token(token)
        # an API token (checked here, not in a coroutine of its own: once a request)
        method = AuthMethod.API_TOKEN
        if self.api_tokens is None:
            return _Refusal(401, "invalid_token", "API tokens are not accepted here", method)
        try:
            principal = await self.api_tokens(token)
        except Exception as error:  # a store outage must not become a crash or a pass
            log.error("the API token verifier failed: %s", type(error).__name__)
            return _Refusal(503, None, "authentication is unavailable, try again later", method)
        if principal is None:
            return _Refusal(401, "invalid_token", "the token is unknown, expired or revoked",
                            method)
        return principal

    async def _oauth_token(self, token: str) -> Principal | _Refusal:
        method = AuthMethod.OAUTH
        if self.oauth is None:
            return _Refusal(401, "invalid_token", "only Mobius API tokens are accepted here",
                            method)
        try:
            principal = await self.oauth.verify(token)
            if self.oauth_members is None:
                return principal
            member = await self.oauth_members(principal)
            if member is None:
                return _Refusal(401, "invalid_token", "the token's user is disabled", method)
            return member
        except TokenError as error:
            return _Refusal(401, "invalid_token", str(error), method)
        except ScopeError:
            return _Refusal(403, "insufficient_scope", "the token lacks required scopes", method)
        except JwksUnavailable as error:
            log.error("cannot check OAuth tokens: %s", error)
            return _Refusal(503, None, "authentication is unavailable, try again later", method)
        except Exception as error:
            log.error("the OAuth verifier failed: %s", type(error).__name__)
            return _Refusal(503, None, "authentication is unavailable, try again later", method)

    # ---------------------------------------------------------------- answers

    def _challenge(self, refusal: _Refusal) -> str:
        scopes = self.oauth.config.required_scopes if self.oauth is not None else frozenset()
        return bearer_challenge(resource_metadata=self._resource_metadata, scopes=scopes,
                                error=refusal.error,
                                description=refusal.reason if refusal.error else None)

    async def _refuse(self, refusal: _Refusal, scope: Scope, receive: Receive,
                      send: Send) -> None:
        client = scope.get("client")
        failure = AuthFailure(refusal.status, refusal.error, refusal.reason, refusal.method,
                              scope.get("path", ""), scope["type"],
                              (str(client[0]), int(client[1])) if client else None)
        log.info("refused %s %s (%d): %s", scope["type"], failure.path, refusal.status,
                 refusal.reason)
        if self.on_failure is not None:
            try:
                await self.on_failure(failure)
            except Exception as error:
                log.error("the authentication failure hook failed: %s", type(error).__name__)
        body = orjson.dumps(error_response(None, McpError(
            _CODES.get(refusal.status, INVALID_REQUEST), _message(refusal))))
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
        if refusal.status == 503:
            headers.append((b"retry-after", b"30"))
        else:
            headers.append((b"www-authenticate", self._challenge(refusal).encode("latin-1")))
        if scope["type"] == "http":
            await _respond(send, refusal.status, headers, body)
            return
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": refusal.status,
                        "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:  # closing before accepting refuses the handshake with 403
            await send({"type": "websocket.close", "code": 1008})

    def _is_metadata(self, scope: Scope) -> bool:
        if not self._metadata_paths:
            return False
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        return path in self._metadata_paths or (
            bool(root) and path.startswith(root) and path[len(root):] in self._metadata_paths)

    async def _serve_metadata(self, scope: Scope, send: Send) -> None:
        """The metadata document: public, cacheable, readable from any origin."""
        cors = [(b"access-control-allow-origin", b"*")]
        method = scope["method"]
        if method == "OPTIONS":
            await _respond(send, 204, cors + [(b"access-control-allow-methods", b"GET, HEAD"),
                                              (b"access-control-allow-headers", b"*")], b"")
        elif method in ("GET", "HEAD"):
            await _respond(send, 200, cors + [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self._metadata)).encode()),
                (b"cache-control", b"public, max-age=3600")],
                b"" if method == "HEAD" else self._metadata)
        else:
            await _respond(send, 405, [(b"allow", b"GET, HEAD, OPTIONS")], b"")


def _with_principal(scope: Scope, principal: Principal, headers: list[tuple[bytes, bytes]],
                    count: int, at: int) -> dict[str, Any]:
    """The request's scope as the transports see it: the principal in, the token out.

    ``headers`` (the scope's list, never changed: the server may hold it) has
    ``count`` Authorization headers, the first at ``at``: one is cut out with
    slices, in C, instead of testing every header again in Python."""
    inner = dict(scope)
    if count == 1:
        inner["headers"] = headers[:at] + headers[at + 1:]
    elif count:  # several (only with authentication off: refused otherwise)
        inner["headers"] = [h for h in headers if h[0] != b"authorization"]
    inner[PRINCIPAL_KEY] = principal
    return inner


def _message(refusal: _Refusal) -> str:
    titles = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden",
              503: "Service unavailable"}
    return f"{titles.get(refusal.status, 'Refused')}: {refusal.reason}"


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]],
                   body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
