"""The client's :class:`~mobius_rpc.client.oauth.TokenStore` on SQLite and PostgreSQL.

Each operation is a program (a generator of ``(sql, params)`` statements, see
:mod:`mobius_rpc.storage.sql.program`) run on the store's ``db`` runner, so one
piece of logic serves both databases.  Secrets are sealed before they reach a
statement and opened after they leave one (:class:`~.sealing.Sealer`): the
database holds ciphertexts bound to their row, never a token in clear.  A
value that does not open (another key, or a row edited by hand) reads as
"nothing stored", which makes the client log in again rather than fail or
send something it cannot vouch for.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from ..client.oauth import ClientRegistration, TokenSet
from ..storage.sql.program import Program, Runner
from .sealing import Sealer, SealError

__all__ = ("SqlTokenStore",)

log = logging.getLogger("mobius_rpc.credentials")

_TOKEN = "issuer, resource, token_type, scope, expires_at, access_token, refresh_token"
_CLIENT = "client_id, client_secret, auth_method, redirect_uris"


def _get_tokens(server: str) -> Program[tuple[object, ...] | None]:
    result = yield f"SELECT {_TOKEN} FROM client_tokens WHERE server = ?", (server,)
    return result.rows[0] if result.rows else None


def _put_tokens(server: str, row: tuple[object, ...], now: float) -> Program[None]:
    yield ("INSERT INTO client_tokens (server, issuer, resource, token_type, scope, "
           "expires_at, access_token, refresh_token, updated_at) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (server) DO UPDATE SET issuer = excluded.issuer, "
           "resource = excluded.resource, token_type = excluded.token_type, "
           "scope = excluded.scope, expires_at = excluded.expires_at, "
           "access_token = excluded.access_token, refresh_token = excluded.refresh_token, "
           "updated_at = excluded.updated_at", (server, *row, now))


def _delete(table: str, column: str, key: str) -> Program[bool]:
    result = yield f"DELETE FROM {table} WHERE {column} = ?", (key,)
    return result.changed > 0


def _get_client(issuer: str) -> Program[tuple[object, ...] | None]:
    result = yield f"SELECT {_CLIENT} FROM client_registrations WHERE issuer = ?", (issuer,)
    return result.rows[0] if result.rows else None


def _put_client(issuer: str, row: tuple[object, ...], now: float) -> Program[None]:
    yield ("INSERT INTO client_registrations (issuer, client_id, client_secret, auth_method, "
           "redirect_uris, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (issuer) DO UPDATE SET client_id = excluded.client_id, "
           "client_secret = excluded.client_secret, auth_method = excluded.auth_method, "
           "redirect_uris = excluded.redirect_uris, updated_at = excluded.updated_at",
           (issuer, *row, now))


def _servers() -> Program[list[str]]:
    result = yield "SELECT server FROM client_tokens ORDER BY server", ()
    return [str(row[0]) for row in result.rows]


class SqlTokenStore:
    """Tokens per server and registrations per issuer, sealed, in the store's database."""

    def __init__(self, db: Runner, sealer: Sealer | Callable[[], Sealer],
                 clock: Callable[[], float]) -> None:
        """``sealer`` may be a function making one: the key is then loaded (or created)
        only when a secret is first sealed or opened, not for a store with nothing in it."""
        self._run = db
        self._make_sealer = sealer if callable(sealer) else (lambda: sealer)
        self._sealer_made: Sealer | None = None
        self._clock = clock

    @property
    def _sealer(self) -> Sealer:
        if self._sealer_made is None:
            self._sealer_made = self._make_sealer()
        return self._sealer_made

    async def get_tokens(self, server: str) -> TokenSet | None:
        row = await self._run.read(lambda: _get_tokens(server))
        if row is None:
            return None
        issuer, resource, token_type, scope, expires_at, access, refresh = row
        sealer = self._sealer  # a missing or unsafe key is an error, not "no token"
        try:
            access_token = sealer.open(server, "access_token", str(access))
            refresh_token = None if refresh is None else \
                sealer.open(server, "refresh_token", str(refresh))
        except SealError as exc:
            log.warning("ignoring the stored tokens of %s: %s", server, exc)
            return None
        return TokenSet(access_token=access_token, token_type=str(token_type),
                        expires_at=None if expires_at is None else float(str(expires_at)),
                        refresh_token=refresh_token,
                        scope=None if scope is None else str(scope),
                        issuer=str(issuer), resource=str(resource))

    async def set_tokens(self, server: str, tokens: TokenSet | None) -> None:
        if tokens is None:
            await self._run.write(lambda: _delete("client_tokens", "server", server))
            return
        seal = self._sealer.seal
        row = (tokens.issuer, tokens.resource, tokens.token_type, tokens.scope,
               tokens.expires_at, seal(server, "access_token", tokens.access_token),
               None if tokens.refresh_token is None
               else seal(server, "refresh_token", tokens.refresh_token))
        now = self._clock()
        await self._run.write(lambda: _put_tokens(server, row, now))

    async def get_client(self, issuer: str) -> ClientRegistration | None:
        row = await self._run.read(lambda: _get_client(issuer))
        if row is None:
            return None
        client_id, secret, method, uris = row
        sealer = self._sealer
        try:
            client_secret = None if secret is None else \
                sealer.open(issuer, "client_secret", str(secret))
            redirect_uris = tuple(str(uri) for uri in json.loads(str(uris)))
        except (SealError, ValueError, TypeError) as exc:
            log.warning("ignoring the stored registration at %s: %s", issuer, exc)
            return None
        return ClientRegistration(client_id=str(client_id), client_secret=client_secret,
                                  auth_method=str(method), issuer=issuer,
                                  redirect_uris=redirect_uris)

    async def set_client(self, issuer: str, client: ClientRegistration | None) -> None:
        if client is None:
            await self._run.write(lambda: _delete("client_registrations", "issuer", issuer))
            return
        row = (client.client_id,
               None if client.client_secret is None
               else self._sealer.seal(issuer, "client_secret", client.client_secret),
               client.auth_method, json.dumps(list(client.redirect_uris)))
        now = self._clock()
        await self._run.write(lambda: _put_client(issuer, row, now))

    async def servers(self) -> list[str]:
        """The servers tokens are kept for (what ``mobius client logout`` may remove)."""
        return await self._run.read(_servers)
