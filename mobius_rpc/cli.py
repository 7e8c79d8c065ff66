"""The ``mobius`` command.

``mobius serve [DIR ...]`` runs the context engine (code search, symbols,
analysis; :mod:`mobius_rpc.context`) for the given project directories
(default: the current one) on stdin/stdout, the way MCP hosts launch servers;
``--fixture demo`` serves the protocol demo instead.  ``mobius serve
--print-config HOST`` prints the snippet to paste into that host's
configuration.  Logs always go to stderr: stdout
belongs to the protocol.  ``mobius client ...`` talks to any MCP server
(see :mod:`mobius_rpc.client_cli`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .client_cli import add_client_parser
from .conformance.cli import add_conformance_parser
from .db_cli import add_db_parser
from .gateway_cli import add_gateway_parser
from .market_cli import add_market_parser
from .security_cli import add_security_parsers
from .serve_oauth_cli import add_oauth_arguments, oauth_verifier_of
from .shared_cli import add_store_arguments, shared_sessions, store_url_of
from .transports.event_store import MemoryEventStore, Retention

__all__ = ("main",)

_HOSTS = ("claude", "vscode", "cursor")


def _launch_command() -> tuple[str, list[str]]:
    """How a host should start us: the installed script if on PATH, else this Python."""
    script = shutil.which("mobius")
    if script:
        return script, ["serve", "--stdio"]
    return sys.executable, ["-m", "mobius_rpc", "serve", "--stdio"]


def host_config(host: str, roots: Sequence[str] | None = None) -> dict[str, object]:
    """A ready-to-paste configuration for ``host`` that launches the stdio server:
    the context engine for ``roots`` (absolute paths) when given, else the demo."""
    command, args = _launch_command()
    name = "mobius-context" if roots is not None else "mobius-demo"
    entry: dict[str, object] = {"command": command, "args": [*args, *(roots or ())]}
    if host == "vscode":
        # VS Code's .vscode/mcp.json: top-level "servers", each with a "type".
        return {"servers": {name: {"type": "stdio", **entry}}}
    if host in ("claude", "cursor"):
        # claude_desktop_config.json and ~/.cursor/mcp.json share the mcpServers shape.
        return {"mcpServers": {name: entry}}
    raise ValueError(f"unknown host {host!r}; choose one of {', '.join(_HOSTS)}")


def http_host_config(host: str, url: str, *, name: str = "mobius-demo",
                     bearer: bool = False) -> dict[str, object]:
    """A configuration for ``host`` that reaches a running HTTP server at ``url``; with
    ``bearer`` (authentication on) it carries the header the printed token goes in."""
    headers = {"Authorization": "Bearer <token>"} if bearer else {}
    extra: dict[str, object] = {"headers": headers} if headers else {}
    if host == "vscode":
        return {"servers": {name: {"type": "http", "url": url, **extra}}}
    if host == "cursor":
        return {"mcpServers": {name: {"url": url, **extra}}}
    # Claude Desktop launches stdio servers; a bridge command reaches HTTP ones.
    bridge = ["-y", "mcp-remote", url]
    if bearer:
        bridge += ["--header", "Authorization: Bearer <token>"]
    return {"mcpServers": {name: {"command": "npx", "args": bridge}}}


def _serve(args: argparse.Namespace) -> int:
    context = args.fixture == "context"
    if args.print_config:
        roots = [str(Path(r).resolve()) for r in args.roots or ["."]] if context else None
        print(json.dumps(host_config(args.print_config, roots), indent=2))
        return 0
    if (args.roots or args.org or args.projects) and not context:
        print("mobius serve: project directories go with the context engine, not --fixture",
              file=sys.stderr)
        return 2
    import anyio

    if args.user is not None and not args.user.strip():
        print("mobius serve: --user needs a name", file=sys.stderr)
        return 2
    try:
        oauth = oauth_verifier_of(args)
    except ValueError as error:
        print(f"mobius serve: {error}", file=sys.stderr)
        return 2
    # stdio runs as the local identity: the OS user (--user NAME), whose DIRs belong to
    # their personal organization unless --org names another
    stdio_user = (args.user or "").strip() or None
    if context:
        from .context.serve import context_server
        from .security.local import personal_org_id
        from .security.serving import os_user
        org = args.org
        if org is None and not args.http and stdio_user is not None:
            org = personal_org_id(stdio_user)
        server: Any = context_server(args.roots, args.store, args.era, args.watch,
                                     org=org, projects=args.projects,
                                     guarded=args.http and not args.no_auth)
        if server is None:
            return 2
    elif args.fixture == "conformance":
        from .fixtures import build_conformance_server
        server = build_conformance_server()
    else:
        from .demo import build_demo_server
        server = build_demo_server(legacy=args.era in ("both", "legacy"),
                                   modern=args.era in ("both", "modern"))
    if args.end_of_input_grace is not None:
        if args.end_of_input_grace < 0:
            print("mobius serve: --end-of-input-grace must be 0 or more seconds", file=sys.stderr)
            return 2
        from dataclasses import replace
        server.limits = replace(server.limits, end_of_input_grace=args.end_of_input_grace)
    if args.gateway or args.extensions:
        from .gateway_cli import attach_gateway
        failed = attach_gateway(server, args.gateway, args.gateway_pins, args.store,
                                args.extensions, lane=args.gateway_lane == "on")
        if failed:
            return failed
    if args.http:
        return _serve_http(server, args.host, args.port, _retention(args), auth=_auth_of(args),
                           store=store_url_of(args), session_ttl=args.session_ttl,
                           audit_writer=args.audit_writer, oauth=oauth)
    if context:
        return _serve_stdio_secured(server, args, stdio_user or os_user())
    from .security.serving import local_principal
    try:
        anyio.run(lambda: server.run_stdio(principal=local_principal(stdio_user)))
    except KeyboardInterrupt:
        pass
    return 0


def _serve_stdio_secured(server: Any, args: argparse.Namespace, user: str) -> int:
    """The context engine on stdio: the organization's policy and the audit log on the
    store, as over HTTP, acting as the local identity (see mobius_rpc.security.local)."""
    import anyio

    from .security.local import serve_stdio_security
    from .storage import StoreError

    async def run() -> None:
        async with serve_stdio_security(server, store_url=args.store, user_name=user,
                                        org=args.org, audit=not args.no_audit) as principal:
            await server.run_stdio(principal=principal)

    try:
        anyio.run(run)
    except KeyboardInterrupt:
        pass
    except (StoreError, ValueError) as error:
        print(f"mobius serve: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


def _retention(args: argparse.Namespace) -> Retention:
    return Retention(args.retain_events, args.retain_bytes, args.retain_seconds)


def _auth_of(args: argparse.Namespace) -> tuple[bool, str | None, str]:
    """(authentication on?, the store URL, why it is off): ``--no-auth``, or the
    conformance fixture (the official suite connects without credentials)."""
    if args.fixture == "conformance":
        return False, args.store, "--fixture conformance"
    return not args.no_auth, args.store, "--no-auth"


def _serve_http(server: object, host: str, port: int, retention: Retention, *,
                auth: tuple[bool, str | None, str] = (False, None, "--no-auth"),
                store: str | None = None, session_ttl: float = 1800.0,
                audit_writer: str = "process", oauth: Any = None) -> int:
    """Serve every HTTP transport; ``store`` (a store named by --store or
    $MOBIUS_STORE) also shares legacy sessions with the replicas on it."""
    import uvicorn

    from .security.serving import print_notes, serve_http_security
    from .storage import StoreError

    async def run() -> None:
        async with serve_http_security(server, auth=auth[0], store_url=auth[1],
                                       reason_off=auth[2], audit_writer=audit_writer,
                                       oauth=oauth) as security, \
                shared_sessions(store, retention, session_ttl) as shared:
            transports = server.asgi_app(  # type: ignore[attr-defined]
                event_store=MemoryEventStore(retention), shared=shared)
            config = uvicorn.Config(transports.app, host=host, port=port, log_level="warning",
                                    timeout_graceful_shutdown=5)
            label = server.info.get("name") or "mobius"  # type: ignore[attr-defined]
            await _run_uvicorn(_Uvicorn(config), host, lambda: print_notes(security.notes),
                               name=str(label), bearer=auth[0])

    class _Uvicorn(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            """SIGINT/SIGTERM shut the server down gracefully and then *return* (uvicorn
            would raise the signal again at once, killing the process before the
            audit log's background writer has written what it holds)."""
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    try:
        asyncio.run(run())
    except (StoreError, ValueError) as error:
        print(f"mobius serve: {error}", file=sys.stderr)
        return 2
    return 0


async def _run_uvicorn(runner: Any, host: str, after: Callable[[], None], *,
                       name: str = "mobius-demo", bearer: bool = False) -> None:
    async def announce() -> None:
        while not runner.started:
            await asyncio.sleep(0.05)
        bound = runner.servers[0].sockets[0].getsockname()
        base = f"http://{host}:{bound[1]}"
        url = f"{base}/mcp"
        print(f"Streamable HTTP (2025-03-26 .. 2026-07-28): {url}", file=sys.stderr)
        print(f"HTTP+SSE (2024-11-05): {base}/sse", file=sys.stderr)
        print(f"WebSocket (subprotocol mcp): ws://{host}:{bound[1]}/ws", file=sys.stderr)
        for client in _HOSTS:
            snippet = http_host_config(client, url, name=name, bearer=bearer)
            print(f"{client}: {json.dumps(snippet)}", file=sys.stderr)
        after()

    task = asyncio.ensure_future(announce())
    await runner.serve()
    task.cancel()


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse type: a number of ``kind`` above zero (else a one-line usage error)."""
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a finite number above 0: {text!r}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobius", description="Mobius RPC: an MCP engine.")
    parser.add_argument("--log-level", default="WARNING",
                        help="stderr log level (DEBUG, INFO, WARNING, ERROR)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the context engine for project directories "
                                         "(or --fixture demo/conformance)")
    serve.add_argument("roots", nargs="*", metavar="DIR",
                       help="project directories for the context engine (default: .)")
    serve.add_argument("--store", metavar="URL",
                       help="the store (memory:, sqlite:///PATH, postgresql://...; default: "
                            "$MOBIUS_STORE, else the embedded SQLite store under MOBIUS_HOME): "
                            "the context index, users, tokens, rules and the audit log live "
                            "there, and with --http a store named here or by $MOBIUS_STORE "
                            "also holds the legacy sessions and SSE events every replica on "
                            "it shares")
    serve.add_argument("--org", metavar="ORG",
                       help="the organization (id or name) owning the DIRs (default: the "
                            "serving identity's; see docs/context.md)")
    serve.add_argument("--project", dest="projects", action="append", default=[],
                       metavar="DIR=ORG", help="also serve DIR as a project of ORG "
                                               "(repeatable: several organizations' projects)")
    serve.add_argument("--watch", type=_positive(float), metavar="SECONDS",
                       help="keep the context index current, checking every SECONDS, and "
                            "notify subscribers of changed files")
    serve.add_argument("--stdio", action="store_true",
                       help="serve on stdin/stdout (the default without --http)")
    serve.add_argument("--http", action="store_true",
                       help="serve Streamable HTTP at http://HOST:PORT/mcp")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind with --http (default: loopback only)")
    serve.add_argument("--port", type=int, default=8765, help="port for --http (0: any)")
    serve.add_argument("--fixture", choices=("context", "demo", "conformance"),
                       default="context",
                       help="what to serve: the context engine (default), the protocol demo, "
                            "or the surface the official conformance suite calls")
    serve.add_argument("--era", choices=("both", "legacy", "modern"), default="both",
                       help="protocol eras to serve: legacy (2024-11-05 .. 2025-11-25), "
                            "modern (2026-07-28) or both, chosen per connection (default)")
    serve.add_argument("--end-of-input-grace", type=float, metavar="SECONDS",
                       help="with --stdio: how long requests received before stdin ends get "
                            "to finish and be answered before they are cancelled "
                            "(default: 10)")
    # How much of each legacy session's SSE history is kept for Last-Event-ID resumption.
    kept = Retention()
    serve.add_argument("--retain-events", type=_positive(int), default=kept.max_events,
                       metavar="N", help="--http: SSE events kept per legacy session for "
                                         f"Last-Event-ID resumption ({kept.max_events})")
    serve.add_argument("--retain-bytes", type=_positive(int), default=kept.max_bytes,
                       metavar="N", help="--http: bytes of SSE events kept per session "
                                         f"({kept.max_bytes})")
    serve.add_argument("--retain-seconds", type=_positive(float), default=kept.max_age,
                       metavar="S", help="--http: seconds SSE events are kept "
                                         f"({kept.max_age:g})")
    add_store_arguments(serve)
    add_oauth_arguments(serve)
    serve.add_argument("--no-auth", action="store_true",
                       help="--http: turn authentication off (local development only; "
                            "every request may do everything)")
    serve.add_argument("--user", metavar="NAME",
                       help="--stdio: the user the session runs as (default: the OS user; "
                            "made in the store, with a personal organization, on first start)")
    serve.add_argument("--no-audit", action="store_true",
                       help="--stdio: keep no audit records of this session (the policy "
                            "still applies)")
    serve.add_argument("--print-config", choices=_HOSTS, metavar="HOST",
                       help=f"print a host configuration ({', '.join(_HOSTS)}) and exit")
    serve.add_argument("--gateway", metavar="FILE",
                       help="also serve the upstream MCP servers of a host config (mcp.json)")
    serve.add_argument("--extensions", metavar="ORG",
                       help="also serve organization ORG's enabled marketplace installations "
                            "(sandboxed, through the gateway, pinned like --gateway)")
    serve.add_argument("--gateway-pins", choices=("tofu", "strict", "off"), default="tofu",
                       help="--gateway: serve only approved tool definitions (tofu: approve "
                            "an upstream's first tool set automatically; default)")
    serve.add_argument("--audit-writer", choices=("process", "thread"), default="process",
                       help="--http: write the audit records of allowed uses from a child "
                            "process (default; on SQLite and PostgreSQL) or from a thread of "
                            "the server")
    serve.add_argument("--gateway-lane", choices=("on", "off"), default="on",
                       help="--gateway: relay plain calls without a task each (on, default) "
                            "or serve every call on the general path (off)")
    serve.set_defaults(func=_serve)
    add_client_parser(sub)
    add_conformance_parser(sub)
    add_db_parser(sub)
    add_gateway_parser(sub)
    add_security_parsers(sub)
    add_market_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
