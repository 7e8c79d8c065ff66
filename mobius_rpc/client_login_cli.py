"""``mobius client login URL``: log in to a server that requires OAuth, from a terminal.

The command listens on a loopback port for the authorization response,
prints the authorization URL for the person to open (it opens nothing
itself), and once the browser comes back exchanges the code, connects, and
says who issued the token and for which scope.  ``--oauth`` on the other
``mobius client`` commands does the same login on the fly when a ``--url``
server asks for one.

Tokens are kept in the store (``--store URL``, else ``$MOBIUS_STORE``, else the
SQLite file in the data directory), sealed with a key kept outside the
database (see :mod:`mobius_rpc.credentials`), under the server's canonical
URL: a later ``mobius client ... --url URL`` uses (and refreshes) the token
saved for exactly that server, and ``mobius client logout URL`` forgets it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client.oauth import (
        ClientRegistration,
        LoopbackRedirect,
        OAuth,
        TokenSet,
        TokenStore,
    )

__all__ = ("add_login_parser", "add_oauth_options", "interactive_oauth", "saved_oauth",
           "saved_tokens")

_STORE_HELP = ("where logins are kept: memory:, sqlite:///PATH or postgresql://... "
               "(default: $MOBIUS_STORE, else the SQLite file in the data directory)")


def add_oauth_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client-id", help="a client pre-registered with the authorization "
                                            "server (default: register dynamically)")
    parser.add_argument("--client-secret-env", metavar="VAR",
                        help="the environment variable holding that client's secret")
    parser.add_argument("--scope", help="the scope to ask for (default: what the server asks)")
    parser.add_argument("--redirect-port", type=int, default=0, metavar="PORT",
                        help="the loopback port of the redirect URI (default: a free one; a "
                             "pre-registered client needs the one it was registered with)")
    parser.add_argument("--store", metavar="URL", help=_STORE_HELP)


def add_login_parser(actions: Any) -> None:
    parser = actions.add_parser("login", help="log in to a server that requires OAuth: login URL")
    parser.add_argument("url", help="the MCP server's URL")
    parser.add_argument("--transport", choices=("http", "sse"),
                        help="force a transport (default: Streamable HTTP, then HTTP+SSE)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for the browser to come back")
    add_oauth_options(parser)
    parser.set_defaults(func=run_login)
    logout = actions.add_parser("logout", help="forget the token kept for a server: logout URL")
    logout.add_argument("url", help="the MCP server's URL")
    logout.add_argument("--store", metavar="URL", help=_STORE_HELP)
    logout.set_defaults(func=run_logout)


@asynccontextmanager
async def saved_tokens(args: argparse.Namespace, *, create: bool) -> AsyncIterator[TokenStore]:
    """The token store of ``--store`` (migrated at open).  Without ``create``, an
    embedded default store that does not exist yet is not made just to find it empty."""
    from .client.oauth import MemoryTokenStore
    from .credentials import open_token_store
    from .storage import default_sqlite_path, store_url

    url = store_url(getattr(args, "store", None))
    if url is None and not create and not default_sqlite_path().exists():
        yield MemoryTokenStore()
        return
    async with open_token_store(url) as tokens:
        yield tokens


def _secret(args: argparse.Namespace) -> str | None:
    if not args.client_secret_env:
        return None
    secret = os.environ.get(args.client_secret_env)
    if not secret:
        raise ValueError(f"the environment variable {args.client_secret_env} is not set")
    return secret


def interactive_oauth(args: argparse.Namespace, redirect: LoopbackRedirect,
                      store: TokenStore | None = None) -> OAuth:
    """An :class:`OAuth` that logs in through ``redirect`` with the command's options."""
    from .client.oauth import MemoryTokenStore, OAuth

    return OAuth(authorize=redirect.authorize, redirect_uri=redirect.redirect_uri,
                 client_id=args.client_id, client_secret=_secret(args), scope=args.scope,
                 client_name="mobius client", store=store or MemoryTokenStore())


def saved_oauth(args: argparse.Namespace, store: TokenStore) -> OAuth:
    """An :class:`OAuth` that uses (and refreshes) saved tokens but cannot log in: a
    server that wants a new login gets a one-line error naming ``mobius client login``."""
    from .client.oauth import OAuth

    return OAuth(client_id=args.client_id, client_secret=_secret(args), scope=args.scope,
                 client_name="mobius client", store=store)


class _FreshLogin:
    """What ``login`` runs on: no token to start from (a login is asked for even when
    one is kept), the tokens it gets saved, registrations shared with the store."""

    def __init__(self, saved: TokenStore) -> None:
        from .client.oauth import MemoryTokenStore

        self.saved = saved
        self._fresh = MemoryTokenStore()

    async def get_tokens(self, server: str) -> TokenSet | None:
        return await self._fresh.get_tokens(server)

    async def set_tokens(self, server: str, tokens: TokenSet | None) -> None:
        await self._fresh.set_tokens(server, tokens)
        await self.saved.set_tokens(server, tokens)

    async def get_client(self, issuer: str) -> ClientRegistration | None:
        return await self.saved.get_client(issuer)

    async def set_client(self, issuer: str, client: ClientRegistration | None) -> None:
        await self.saved.set_client(issuer, client)


def run_login(args: argparse.Namespace) -> int:
    return _run_command("login", _login, args)


def run_logout(args: argparse.Namespace) -> int:
    return _run_command("logout", _logout, args)


def _run_command(name: str, run: Any, args: argparse.Namespace) -> int:
    import anyio

    from .core.errors import McpError
    from .storage import StoreError

    try:
        code: int = anyio.run(run, args)
        return code
    except (McpError, StoreError, ValueError, OSError) as exc:
        print(f"mobius client {name}: {exc}", file=sys.stderr)
        return 2


def _check_url(url: str, what: str) -> None:
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"{what} needs an http(s):// server URL")


async def _logout(args: argparse.Namespace) -> int:
    from .client.oauth.urls import canonical_resource

    _check_url(args.url, "logout")
    server = canonical_resource(args.url)
    async with saved_tokens(args, create=False) as store:
        kept = await store.get_tokens(server)
        await store.set_tokens(server, None)
    print(f"logged out of {args.url}" if kept is not None
          else f"no login was kept for {args.url}")
    return 0


async def _login(args: argparse.Namespace) -> int:
    from .client import Client, target_from_url
    from .client.oauth import LoopbackRedirect

    _check_url(args.url, "login")
    async with saved_tokens(args, create=True) as saved, \
            LoopbackRedirect(port=args.redirect_port, timeout=args.timeout) as redirect:
        oauth = interactive_oauth(args, redirect, _FreshLogin(saved))
        target = target_from_url(args.url, kind=args.transport, oauth=oauth)
        async with Client(target, connect_timeout=args.timeout + 30) as client:
            tools = await client.list_tools() if "tools" in client.server_capabilities else []
        tokens = await oauth.for_server(args.url).tokens()
    if tokens is None:
        print(f"{args.url} did not ask for a login; connected without one "
              f"({len(tools)} tools)")
        return 0
    print(f"logged in to {args.url}: token from {tokens.issuer}, scope "
          f"{tokens.scope or '(as granted)'}, refresh token: "
          f"{'yes' if tokens.refresh_token else 'no'}; {len(tools)} tools; saved for "
          f"later commands")
    return 0
