"""The ``mobius`` command.

``mobius serve --stdio`` runs the demo server on stdin/stdout, the way MCP
hosts launch servers; ``mobius serve --print-config HOST`` prints the snippet
to paste into that host's configuration.  Logs always go to stderr: stdout
belongs to the protocol.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence

__all__ = ("main",)

_HOSTS = ("claude", "vscode", "cursor")


def _launch_command() -> tuple[str, list[str]]:
    """How a host should start us: the installed script if on PATH, else this Python."""
    script = shutil.which("mobius")
    if script:
        return script, ["serve", "--stdio"]
    return sys.executable, ["-m", "mobius_rpc", "serve", "--stdio"]


def host_config(host: str) -> dict[str, object]:
    """A ready-to-paste configuration for ``host`` that launches the stdio server."""
    command, args = _launch_command()
    entry: dict[str, object] = {"command": command, "args": args}
    if host == "vscode":
        # VS Code's .vscode/mcp.json: top-level "servers", each with a "type".
        return {"servers": {"mobius-demo": {"type": "stdio", **entry}}}
    if host in ("claude", "cursor"):
        # claude_desktop_config.json and ~/.cursor/mcp.json share the mcpServers shape.
        return {"mcpServers": {"mobius-demo": entry}}
    raise ValueError(f"unknown host {host!r}; choose one of {', '.join(_HOSTS)}")


def _serve(args: argparse.Namespace) -> int:
    if args.print_config:
        print(json.dumps(host_config(args.print_config), indent=2))
        return 0
    if not args.stdio:
        print("mobius serve: choose a transport (--stdio) or --print-config HOST",
              file=sys.stderr)
        return 2
    import anyio

    from .demo import build_demo_server

    server = build_demo_server(legacy=args.era in ("both", "legacy"),
                               modern=args.era in ("both", "modern"))
    try:
        anyio.run(server.run_stdio)
    except KeyboardInterrupt:
        pass
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobius", description="Mobius RPC: an MCP engine.")
    parser.add_argument("--log-level", default="WARNING",
                        help="stderr log level (DEBUG, INFO, WARNING, ERROR)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the demo MCP server")
    serve.add_argument("--stdio", action="store_true", help="serve on stdin/stdout")
    serve.add_argument("--era", choices=("both", "legacy", "modern"), default="both",
                       help="protocol eras to serve: legacy (2024-11-05 .. 2025-11-25), "
                            "modern (2026-07-28) or both, chosen per connection (default)")
    serve.add_argument("--print-config", choices=_HOSTS, metavar="HOST",
                       help=f"print a host configuration ({', '.join(_HOSTS)}) and exit")
    serve.set_defaults(func=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
