"""``mobius client login URL``: log in to a server that requires OAuth, from a terminal.

The command listens on a loopback port for the authorization response,
prints the authorization URL for the person to open (it opens nothing
itself), and once the browser comes back exchanges the code, connects, and
says who issued the token and for which scope.  ``--oauth`` on the other
``mobius client`` commands does the same login on the fly when a ``--url``
server asks for one.  Tokens live in memory for the life of the command.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client.oauth import LoopbackRedirect, OAuth

__all__ = ("add_login_parser", "add_oauth_options", "interactive_oauth")


def add_oauth_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client-id", help="a client pre-registered with the authorization "
                                            "server (default: register dynamically)")
    parser.add_argument("--client-secret-env", metavar="VAR",
                        help="the environment variable holding that client's secret")
    parser.add_argument("--scope", help="the scope to ask for (default: what the server asks)")
    parser.add_argument("--redirect-port", type=int, default=0, metavar="PORT",
                        help="the loopback port of the redirect URI (default: a free one; a "
                             "pre-registered client needs the one it was registered with)")


def add_login_parser(actions: Any) -> None:
    parser = actions.add_parser("login", help="log in to a server that requires OAuth: login URL")
    parser.add_argument("url", help="the MCP server's URL")
    parser.add_argument("--transport", choices=("http", "sse"),
                        help="force a transport (default: Streamable HTTP, then HTTP+SSE)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for the browser to come back")
    add_oauth_options(parser)
    parser.set_defaults(func=run_login)


def interactive_oauth(args: argparse.Namespace, redirect: LoopbackRedirect) -> OAuth:
    """An :class:`OAuth` that logs in through ``redirect`` with the command's options."""
    from .client.oauth import OAuth

    secret = None
    if args.client_secret_env:
        secret = os.environ.get(args.client_secret_env)
        if not secret:
            raise ValueError(f"the environment variable {args.client_secret_env} is not set")
    return OAuth(authorize=redirect.authorize, redirect_uri=redirect.redirect_uri,
                 client_id=args.client_id, client_secret=secret, scope=args.scope,
                 client_name="mobius client")


def run_login(args: argparse.Namespace) -> int:
    import anyio

    from .core.errors import McpError

    try:
        return anyio.run(_login, args)
    except (McpError, ValueError, OSError) as exc:
        print(f"mobius client login: {exc}", file=sys.stderr)
        return 2


async def _login(args: argparse.Namespace) -> int:
    from .client import Client, target_from_url
    from .client.oauth import LoopbackRedirect

    if not args.url.startswith(("https://", "http://")):
        raise ValueError("login needs an http(s):// server URL")
    async with LoopbackRedirect(port=args.redirect_port, timeout=args.timeout) as redirect:
        oauth = interactive_oauth(args, redirect)
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
          f"{'yes' if tokens.refresh_token else 'no'}; {len(tools)} tools")
    return 0
