"""The bearer token on the wire: an ``httpx.Auth`` for the HTTP transports' clients.

The Streamable HTTP and HTTP+SSE streams send every request through one
``httpx.AsyncClient``; giving that client a :class:`BearerAuth` is all the
transports need.  For each request it

* attaches ``Authorization: Bearer`` **only** when the request goes to the
  origin (scheme, host, port) of the server the token was obtained for: an
  HTTP+SSE ``endpoint`` event, or anything else, that points elsewhere gets
  no token;
* on a 401, asks :class:`~.flow.ServerAuthorization` for a token (refresh,
  or discovery and a new authorization) and sends the request once more;
* on a 403 with ``error="insufficient_scope"``, re-authorizes with the wider
  scope, at most ``max_step_ups`` times per request, then lets the 403 through;
* for a DPoP-bound token, sends ``Authorization: DPoP`` with a fresh proof,
  and once more with the server's nonce when it answers ``use_dpop_nonce``.

An ``Authorization`` header the caller set explicitly is left alone.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from .flow import OAuth, ServerAuthorization
from .store import TokenSet
from .urls import origin_of, parse_challenge

__all__ = ("BearerAuth",)


class BearerAuth(httpx.Auth):
    """OAuth bearer tokens for the requests to one MCP server."""

    def __init__(self, settings: OAuth, server_url: str) -> None:
        self.authorization: ServerAuthorization = settings.for_server(server_url)
        self.origin = origin_of(server_url)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request,
                                                                  httpx.Response, None]:
        raise RuntimeError("the MCP client's OAuth is asynchronous only")
        yield request  # pragma: no cover

    def _ours(self, request: httpx.Request) -> bool:
        return origin_of(str(request.url)) == self.origin \
            and "authorization" not in request.headers

    def _attach(self, request: httpx.Request, tokens: TokenSet | None) -> None:
        request.headers.pop("DPoP", None)
        dpop = self.authorization.dpop
        if tokens is None or not tokens.access_token:
            request.headers.pop("Authorization", None)
        elif tokens.token_type == "DPoP" and dpop is not None:
            request.headers["Authorization"] = f"DPoP {tokens.access_token}"
            request.headers["DPoP"] = dpop.proof(request.method, str(request.url),
                                                 access_token=tokens.access_token)
        else:
            request.headers["Authorization"] = f"Bearer {tokens.access_token}"

    def _new_nonce(self, request: httpx.Request, response: httpx.Response,
                   challenge: dict[str, str]) -> bool:
        """Whether the server refused only for want of a (new) DPoP nonce, now kept."""
        dpop = self.authorization.dpop
        nonce = response.headers.get("dpop-nonce")
        if dpop is None or nonce is None:
            return False
        fresh = dpop.remember_nonce(str(request.url), nonce)
        return fresh and response.status_code == 401 \
            and challenge.get("error") == "use_dpop_nonce"

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request,
                                                                               httpx.Response]:
        if not self._ours(request):
            yield request  # another origin: never our token, never our login
            return
        tokens = await self.authorization.current()
        self._attach(request, tokens)
        response = yield request
        authorized_once = False
        step_ups = nonces = 0
        while True:
            challenge = parse_challenge(response.headers.get("www-authenticate"))
            if self._new_nonce(request, response, challenge) and nonces < 2:
                nonces += 1  # the same token again, with the server's nonce in the proof
            elif response.status_code == 401 and not authorized_once:
                authorized_once = True
                tokens = await self.authorization.unauthorized(tokens, challenge)
            elif response.status_code == 403 and challenge.get("error") == "insufficient_scope" \
                    and step_ups < self.authorization.settings.max_step_ups:
                step_ups += 1
                tokens = await self.authorization.insufficient_scope(tokens, challenge)
            else:
                return
            self._attach(request, tokens)
            response = yield request
