"""What the client remembers between requests: tokens per resource, clients per issuer.

Tokens are kept under the MCP server's canonical URL and carry the resource
indicator they were minted for and the issuer that minted them, so a token
is only ever offered back to the server it was obtained for, and a server
that moves to another authorization server gets a fresh login.  Client
registrations are kept per *issuer*: a client id one authorization server
handed out means nothing to another (and presenting it there would leak it).

:class:`TokenStore` is the interface; :class:`MemoryTokenStore` the default,
which forgets everything when the process ends.  A persistent store
implements the same four methods.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

__all__ = ("TokenSet", "ClientRegistration", "TokenStore", "MemoryTokenStore")


@dataclass(frozen=True)
class TokenSet:
    """An access token (and maybe a refresh token) for one resource from one issuer."""

    access_token: str
    token_type: str = "Bearer"
    #: wall-clock seconds (``time.time()``) after which the access token is stale
    expires_at: float | None = None
    refresh_token: str | None = None
    scope: str | None = None
    issuer: str = ""
    resource: str = ""

    def expired(self, now: float | None = None, *, leeway: float = 30.0) -> bool:
        if self.expires_at is None:
            return False
        return (time.time() if now is None else now) >= self.expires_at - leeway

    def __repr__(self) -> str:  # never print a token
        return (f"TokenSet(issuer={self.issuer!r}, resource={self.resource!r}, "
                f"scope={self.scope!r}, expires_at={self.expires_at!r}, "
                f"refresh={'yes' if self.refresh_token else 'no'})")

    def to_json(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "token_type": self.token_type,
                "expires_at": self.expires_at, "refresh_token": self.refresh_token,
                "scope": self.scope, "issuer": self.issuer, "resource": self.resource}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenSet:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class ClientRegistration:
    """Our identity at one authorization server (pre-registered, a metadata URL, or DCR)."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    #: ``client_secret_basic``, ``client_secret_post``, ``none`` or ``private_key_jwt``
    auth_method: str = "none"
    issuer: str = ""
    redirect_uris: tuple[str, ...] = ()

    def for_issuer(self, issuer: str) -> ClientRegistration:
        return replace(self, issuer=issuer)

    def to_json(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "client_secret": self.client_secret,
                "auth_method": self.auth_method, "issuer": self.issuer,
                "redirect_uris": list(self.redirect_uris)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClientRegistration:
        return cls(client_id=data["client_id"], client_secret=data.get("client_secret"),
                   auth_method=data.get("auth_method", "none"), issuer=data.get("issuer", ""),
                   redirect_uris=tuple(data.get("redirect_uris") or ()))


class TokenStore(Protocol):
    """Where tokens and registrations live; every method may do I/O."""

    async def get_tokens(self, server: str) -> TokenSet | None: ...

    async def set_tokens(self, server: str, tokens: TokenSet | None) -> None: ...

    async def get_client(self, issuer: str) -> ClientRegistration | None: ...

    async def set_client(self, issuer: str, client: ClientRegistration | None) -> None: ...


class MemoryTokenStore:
    """The default store: a dict, gone when the process ends."""

    def __init__(self) -> None:
        self._tokens: dict[str, TokenSet] = {}
        self._clients: dict[str, ClientRegistration] = {}

    async def get_tokens(self, server: str) -> TokenSet | None:
        return self._tokens.get(server)

    async def set_tokens(self, server: str, tokens: TokenSet | None) -> None:
        if tokens is None:
            self._tokens.pop(server, None)
        else:
            self._tokens[server] = tokens

    async def get_client(self, issuer: str) -> ClientRegistration | None:
        return self._clients.get(issuer)

    async def set_client(self, issuer: str, client: ClientRegistration | None) -> None:
        if client is None:
            self._clients.pop(issuer, None)
        else:
            self._clients[issuer] = client
