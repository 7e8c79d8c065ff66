"""Getting a token for one MCP server: discovery, registration, the grant, refresh.

:class:`ServerAuthorization` is the state machine behind the bearer token of
one server URL.  The HTTP layer (:mod:`.auth`) asks it for the current token
before a request and tells it about a 401 or a 403 ``insufficient_scope``;
everything else happens here:

* **discovery** (:mod:`.metadata`), redone on each challenge so that a server
  that moved to another authorization server is followed (and its old
  client registration is not presented to the new one: registrations are
  kept per issuer);
* **registration**: pre-registered credentials, a client ID metadata document
  URL where the authorization server accepts those, else dynamic
  registration (RFC 7591);
* **the grant**: authorization code with PKCE S256 through the caller's
  ``authorize`` callback (open this URL, give back where it redirected), or
  client credentials (secret or ``private_key_jwt``); ``resource`` (RFC 8707)
  on every authorization and token request;
* **the authorization response**: our redirect URI, our ``state``, and the
  RFC 9207 ``iss`` compared with the issuer as an exact string (required when
  the server advertises it);
* **refresh** before expiry, and again on a 401; a refused refresh token is
  dropped and a new authorization starts.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import httpx

from .assertions import JWT_BEARER, Assertion
from .dpop import DPoPKey
from .errors import OAuthError
from .grants import Pkce, SigningKey, token_request
from .metadata import (
    MAX_DOCUMENT_BYTES,
    AuthServer,
    ProtectedResource,
    discover_auth_server,
    discover_resource,
    fallback_auth_server,
)
from .registration import register
from .store import ClientRegistration, MemoryTokenStore, TokenSet, TokenStore
from .urls import canonical_resource, require_secure, root_of

__all__ = ("OAuth", "ServerAuthorization", "Authorize")

log = logging.getLogger("mobius_rpc.client.oauth")

#: shows the user a URL and returns the URL the authorization server redirected to
Authorize = Callable[[str], Awaitable[str]]



@dataclass
class OAuth:
    """How the client authorizes itself; one value may serve many servers.

    ``grant`` is ``authorization_code`` (a user logs in through ``authorize``),
    ``client_credentials`` (a service: ``client_id`` with ``client_secret``
    or ``signing_key``) or ``jwt_bearer`` (an ``assertion`` from a workload's
    platform or an enterprise identity provider).  Without ``client_id`` the
    client registers itself: with ``client_metadata_url`` where the
    authorization server accepts client ID metadata documents, else by
    dynamic registration.
    """

    authorize: Authorize | None = None
    redirect_uri: str = "http://127.0.0.1:33418/callback"
    grant: Literal["authorization_code", "client_credentials", "jwt_bearer"] = \
        "authorization_code"
    #: for ``jwt_bearer``: where the assertion comes from (see :mod:`.assertions`)
    assertion: Assertion | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    #: forces a token endpoint authentication method (else chosen from the metadata)
    auth_method: str | None = None
    signing_key: SigningKey | None = field(default=None, repr=False)
    client_metadata_url: str | None = None
    client_name: str = "Mobius RPC client"
    #: overrides the scope the server asks for
    scope: str | None = None
    store: TokenStore = field(default_factory=MemoryTokenStore)
    #: DPoP-bound tokens where the server and its authorization server take them
    dpop: bool = True
    #: step-up re-authorizations one request may trigger after a 403 insufficient_scope
    max_step_ups: int = 1
    timeout: float = 30.0
    clock: Callable[[], float] = time.time
    _servers: dict[str, ServerAuthorization] = field(default_factory=dict, init=False,
                                                     repr=False, compare=False)

    def for_server(self, server_url: str) -> ServerAuthorization:
        """The token state of ``server_url`` (one per URL, kept across reconnections)."""
        if server_url not in self._servers:
            self._servers[server_url] = ServerAuthorization(self, server_url)
        return self._servers[server_url]


class ServerAuthorization:
    """The token state of one MCP server URL (see the module docstring)."""

    def __init__(self, settings: OAuth, server_url: str) -> None:
        self.settings = settings
        self.server = canonical_resource(server_url)
        self.server_url = server_url
        self.resource: ProtectedResource | None = None
        self.auth_server: AuthServer | None = None
        self._lock = anyio.Lock()
        self._requested_scope: str | None = None
        #: the proof-of-possession key, when the authorization server does DPoP
        self.dpop: DPoPKey | None = None
        self._server_dpop = False
        #: how many authorization requests were made (tests and the retry limit read it)
        self.authorizations = 0

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.settings.timeout, follow_redirects=False,
                                 limits=httpx.Limits(max_connections=4))

    # ------------------------------------------------------------ the token

    async def current(self) -> TokenSet | None:
        """The token to send now, refreshed first when it is about to expire (None: no
        token yet, or the refresh was refused)."""
        tokens = await self.settings.store.get_tokens(self.server)
        if tokens is None or not tokens.expired(self.settings.clock()):
            return tokens
        async with self._lock:
            latest = await self.settings.store.get_tokens(self.server)
            # compared by value: a persistent store returns a new object on every read
            if latest != tokens:
                return latest
            if tokens.refresh_token:
                return await self._refresh(tokens)
            return tokens  # expired, no refresh token: the server's 401 starts a login

    async def unauthorized(self, sent: TokenSet | None, challenge: dict[str, str]) -> TokenSet:
        """A 401 came back for a request that carried ``sent``: a token that should work."""
        async with self._lock:
            latest = await self.settings.store.get_tokens(self.server)
            if latest is not None and latest != sent:
                return latest  # another request renewed it meanwhile
            await self._discover(challenge)
            assert self.auth_server is not None
            if sent is not None and sent.refresh_token \
                    and sent.issuer == self.auth_server.issuer:
                fresh = await self._refresh(sent)
                if fresh is not None:
                    return fresh
            scope = self._choose_scope(challenge.get("scope"))
            return await self._obtain(scope)

    async def insufficient_scope(self, sent: TokenSet | None,
                                 challenge: dict[str, str]) -> TokenSet:
        """A 403 ``insufficient_scope``: authorize again with the union of the scopes."""
        async with self._lock:
            latest = await self.settings.store.get_tokens(self.server)
            if latest is not None and latest != sent:
                return latest
            await self._discover(challenge)
            words = (self._requested_scope or (sent.scope if sent else None) or "").split()
            for word in (challenge.get("scope") or "").split():
                if word not in words:
                    words.append(word)
            return await self._obtain(" ".join(words) or None)

    async def tokens(self) -> TokenSet | None:
        """The tokens kept for this server, as they are (no refresh)."""
        return await self.settings.store.get_tokens(self.server)

    async def logout(self) -> None:
        await self.settings.store.set_tokens(self.server, None)

    # ------------------------------------------------------------ discovery

    async def _discover(self, challenge: dict[str, str]) -> None:
        metadata_url = challenge.get("resource_metadata")
        async with self._http() as http:
            resource = await discover_resource(http, self.server_url, metadata_url)
            if resource is None:  # a 2025-03-26 server: OAuth at its own origin
                origin = root_of(self.server_url)
                auth_server = await discover_auth_server(http, origin, legacy=True) \
                    or fallback_auth_server(origin)
            else:
                issuer = resource.authorization_servers[0]
                found = await discover_auth_server(http, issuer)
                if found is None:
                    raise OAuthError(f"the authorization server {issuer} publishes no "
                                     f"metadata", "metadata-unavailable")
                auth_server = found
        if self.auth_server is not None and self.auth_server.issuer != auth_server.issuer:
            log.info("%s: the authorization server changed from %s to %s", self.server,
                     self.auth_server.issuer, auth_server.issuer)
            self._requested_scope = None
        self.resource, self.auth_server = resource, auth_server
        # DPoP where both sides take it: the authorization server lists ES256, and the
        # server challenges with the DPoP scheme or says so in its metadata
        self._server_dpop = self._server_dpop or challenge.get("scheme") == "dpop" \
            or (resource is not None and resource.dpop)
        if self.settings.dpop and self._server_dpop \
                and "ES256" in (auth_server.dpop_algs or ()):
            self.dpop = self.dpop or DPoPKey()
        else:
            self.dpop = None

    @property
    def resource_indicator(self) -> str:
        return self.resource.resource if self.resource else self.server

    def _choose_scope(self, challenged: str | None) -> str | None:
        if self.settings.scope is not None:
            scope: str | None = self.settings.scope
        elif challenged:
            scope = challenged
        elif self.resource is not None and self.resource.scopes_supported:
            scope = " ".join(self.resource.scopes_supported)
        else:
            scope = None
        return scope

    # ------------------------------------------------------------ grants

    async def _obtain(self, scope: str | None) -> TokenSet:
        assert self.auth_server is not None
        if self.settings.grant == "client_credentials":
            tokens = await self._client_credentials(scope)
        elif self.settings.grant == "jwt_bearer":
            tokens = await self._jwt_bearer(scope)
        else:
            tokens = await self._authorization_code(scope)
        self._requested_scope = scope
        await self.settings.store.set_tokens(self.server, tokens)
        return tokens

    async def _client_credentials(self, scope: str | None) -> TokenSet:
        assert self.auth_server is not None
        settings = self.settings
        if not settings.client_id:
            raise OAuthError("the client_credentials grant needs a client_id", "no-client")
        if settings.signing_key is not None:
            method = "private_key_jwt"
        else:
            method = self._secret_method()
        client = ClientRegistration(settings.client_id, settings.client_secret, method,
                                    self.auth_server.issuer)
        form = {"grant_type": "client_credentials", "resource": self.resource_indicator}
        if scope:
            form["scope"] = scope
        async with self._http() as http:
            return await token_request(http, self.auth_server.token_endpoint, form, client,
                                       issuer=self.auth_server.issuer,
                                       resource=self.resource_indicator,
                                       key=settings.signing_key, clock=settings.clock,
                                       dpop=self.dpop)

    async def _jwt_bearer(self, scope: str | None) -> TokenSet:
        assert self.auth_server is not None
        settings, issuer = self.settings, self.auth_server.issuer
        if settings.assertion is None:
            raise OAuthError("the jwt_bearer grant needs an assertion source", "no-assertion")
        assertion = await settings.assertion(issuer, self.resource_indicator, scope)
        client = ClientRegistration(settings.client_id or "", settings.client_secret,
                                    self._secret_method(), issuer)
        form = {"grant_type": JWT_BEARER, "assertion": assertion,
                "resource": self.resource_indicator}
        if scope:
            form["scope"] = scope
        async with self._http() as http:
            return await token_request(http, self.auth_server.token_endpoint, form, client,
                                       issuer=issuer, resource=self.resource_indicator,
                                       key=settings.signing_key, clock=settings.clock,
                                       anonymous=not settings.client_id, dpop=self.dpop)

    def _secret_method(self) -> str:
        assert self.auth_server is not None
        if self.settings.auth_method:
            return self.settings.auth_method
        if self.settings.client_secret is None:
            return "none"
        offered = self.auth_server.token_auth_methods
        if offered is None or "client_secret_basic" in offered:
            return "client_secret_basic"
        return "client_secret_post" if "client_secret_post" in offered \
            else "client_secret_basic"

    async def _authorization_code(self, scope: str | None) -> TokenSet:
        auth_server = self.auth_server
        assert auth_server is not None
        settings = self.settings
        if settings.authorize is None:
            raise OAuthError(f"{self.server_url} needs a login, and this client has no way "
                             f"to ask for one (give OAuth an authorize callback; from a "
                             f"terminal: mobius client login {self.server_url}, or --oauth)",
                             "login-required")
        if auth_server.authorization_endpoint is None:
            raise OAuthError(f"the authorization server {auth_server.issuer} has no "
                             f"authorization_endpoint", "malformed-metadata")
        if auth_server.discovered and "S256" not in (auth_server.code_challenge_methods or ()):
            raise OAuthError(f"the authorization server {auth_server.issuer} does not "
                             f"advertise PKCE S256 (code_challenge_methods_supported); "
                             f"refusing to authorize without it", "no-pkce")
        if scope and auth_server.scopes_supported \
                and "offline_access" in auth_server.scopes_supported \
                and "offline_access" not in scope.split():
            scope = f"{scope} offline_access"  # ask for a refresh token where one is offered
        client = await self._client()
        pkce, state = Pkce.new(), secrets.token_urlsafe(32)
        params = {"response_type": "code", "client_id": client.client_id,
                  "redirect_uri": settings.redirect_uri, "state": state,
                  "code_challenge": pkce.challenge, "code_challenge_method": "S256",
                  "resource": self.resource_indicator}
        if scope:
            params["scope"] = scope
        endpoint = auth_server.authorization_endpoint
        url = endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)
        self.authorizations += 1
        redirected = await settings.authorize(url)
        code = self._check_response(redirected, state)
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": settings.redirect_uri, "code_verifier": pkce.verifier,
                "resource": self.resource_indicator}
        async with self._http() as http:
            return await token_request(http, auth_server.token_endpoint, form, client,
                                       issuer=auth_server.issuer,
                                       resource=self.resource_indicator,
                                       key=settings.signing_key, clock=settings.clock,
                                       dpop=self.dpop)

    def _check_response(self, redirected: str, state: str) -> str:
        """The code of the authorization response, after every check it must pass."""
        assert self.auth_server is not None
        if len(redirected) > MAX_DOCUMENT_BYTES:
            raise OAuthError("the authorization response is too long", "bad-response")
        got, want = urlsplit(redirected), urlsplit(self.settings.redirect_uri)
        if (got.scheme, got.netloc, got.path) != (want.scheme, want.netloc, want.path):
            raise OAuthError(f"the authorization server sent the browser to "
                             f"{got.scheme}://{got.netloc}{got.path}, not to our redirect URI "
                             f"{self.settings.redirect_uri}; refusing", "unexpected-redirect")
        query = {key: values[0] for key, values in parse_qs(got.query).items()}
        if query.get("state") != state:
            raise OAuthError("the authorization response's state does not match the request "
                             "(a forged or replayed response)", "bad-state")
        issuer = self.auth_server.issuer
        if "iss" in query and query["iss"] != issuer:
            raise OAuthError(f"the authorization response comes from the issuer "
                             f"{query['iss']!r}, not {issuer!r} (RFC 9207); refusing",
                             "issuer-mismatch")
        if "iss" not in query and self.auth_server.iss_parameter_supported:
            raise OAuthError(f"the authorization server {issuer} promises an iss parameter "
                             f"(RFC 9207) but its response has none; refusing",
                             "issuer-missing")
        if "error" in query:
            detail = query.get("error_description")
            raise OAuthError(f"the authorization server refused: {query['error']}"
                             + (f" ({detail})" if detail else ""), query["error"])
        code = query.get("code")
        if not code:
            raise OAuthError("the authorization response has no code", "bad-response")
        return code

    async def _refresh(self, tokens: TokenSet) -> TokenSet | None:
        """New tokens from the refresh token; None (and the tokens forgotten) when the
        authorization server refuses it, so that the next 401 starts a new login."""
        assert tokens.refresh_token is not None
        if self.auth_server is None or self.auth_server.issuer != tokens.issuer:
            async with self._http() as http:
                self.auth_server = await discover_auth_server(http, tokens.issuer) \
                    or fallback_auth_server(tokens.issuer)
        client = await self._client(refreshing=True) \
            if self.settings.grant == "authorization_code" \
            else ClientRegistration(self.settings.client_id or "", self.settings.client_secret,
                                    self._secret_method(), tokens.issuer)
        form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token,
                "resource": tokens.resource or self.resource_indicator}
        try:
            async with self._http() as http:
                fresh = await token_request(http, self.auth_server.token_endpoint, form, client,
                                            issuer=tokens.issuer,
                                            resource=tokens.resource or self.resource_indicator,
                                            key=self.settings.signing_key,
                                            clock=self.settings.clock, dpop=self.dpop)
        except OAuthError as exc:
            latest = await self.settings.store.get_tokens(self.server)
            if latest is not None and latest != tokens:
                # another process sharing the store refreshed first (its refresh rotated
                # ours away): keep what it saved rather than forgetting everyone's tokens
                return latest
            await self.settings.store.set_tokens(self.server, None)
            log.info("%s: the refresh token was refused (%s); a new login is needed",
                     self.server, exc)
            return None
        if fresh.scope is None and tokens.scope is not None:
            fresh = TokenSet(fresh.access_token, fresh.token_type, fresh.expires_at,
                             fresh.refresh_token, tokens.scope, fresh.issuer, fresh.resource)
        await self.settings.store.set_tokens(self.server, fresh)
        return fresh

    # ------------------------------------------------------------ registration

    async def _client(self, *, refreshing: bool = False) -> ClientRegistration:
        """Our registration at the current authorization server, registering if need be.

        A refresh takes the stored registration whatever its redirect URIs: the
        refresh token belongs to that client, and a later process (a loopback port
        of its own, or none) could not use it otherwise."""
        auth_server = self.auth_server
        assert auth_server is not None
        settings, issuer = self.settings, auth_server.issuer
        if settings.client_id:
            method = "private_key_jwt" if settings.signing_key else self._secret_method()
            return ClientRegistration(settings.client_id, settings.client_secret, method, issuer)
        stored = await settings.store.get_client(issuer)
        if stored is not None and (refreshing or settings.redirect_uri in stored.redirect_uris):
            return stored
        if auth_server.client_id_metadata_documents and settings.client_metadata_url:
            require_secure(settings.client_metadata_url, "the client metadata document URL")
            return ClientRegistration(settings.client_metadata_url, None, "none", issuer,
                                      (settings.redirect_uri,))
        if auth_server.registration_endpoint is None:
            raise OAuthError(f"the authorization server {issuer} offers no dynamic "
                             f"registration; configure a client_id for it", "no-client")
        async with self._http() as http:
            registration = await register(http, auth_server, settings.redirect_uri,
                                          settings.client_name)
        await settings.store.set_client(issuer, registration)
        return registration
