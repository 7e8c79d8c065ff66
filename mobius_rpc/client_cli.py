"""``mobius client ...``: look at and drive any MCP server from a terminal.

One server is named by ``--stdio "CMD ARGS"``, ``--url URL`` or ``--server
NAME --config FILE``; ``--config FILE`` alone addresses every server of the
file at once through a :class:`~mobius_rpc.client.ClientManager` (tool and
prompt names are then namespaced ``server__name``).  Output is a readable
table or text, or the raw JSON results with ``--json`` for scripts.  Exit
status: 0 on success, 1 when a tool reports ``isError``, 2 on a usage or
connection error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .client_login_cli import (
    add_login_parser,
    add_oauth_options,
    interactive_oauth,
    saved_oauth,
    saved_tokens,
)

if TYPE_CHECKING:  # imported when a command runs, not when ``mobius serve`` starts
    from .client import Client, ClientManager
    from .client.oauth import TokenStore

__all__ = ("add_client_parser",)

_COMMANDS = {
    "tools": "list the tools",
    "call": "call a tool: call NAME [key=value ...] or --args JSON",
    "resources": "list the resources and resource templates",
    "read": "read a resource: read URI",
    "prompts": "list the prompts",
    "get-prompt": "render a prompt: get-prompt NAME [key=value ...]",
}


def add_client_parser(sub: Any) -> None:
    client = sub.add_parser("client", help="talk to an MCP server (tools, call, read ...)")
    actions = client.add_subparsers(dest="action", required=True)
    for action, text in _COMMANDS.items():
        parser = actions.add_parser(action, help=text)
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--stdio", metavar="CMD", help="launch CMD and speak stdio to it")
        where.add_argument("--url", help="a remote server (http(s):// or ws(s)://)")
        where.add_argument("--config", metavar="FILE",
                           help="a host config file (mcpServers); with --server, one of them")
        parser.add_argument("--server", help="the server's name in --config")
        parser.add_argument("--transport", choices=("http", "sse", "ws"),
                            help="for --url: force a transport (default: from the URL)")
        parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                            help="an HTTP header for --url (repeatable)")
        parser.add_argument("--revision", help="pin a protocol revision (default: probe)")
        parser.add_argument("--timeout", type=float, default=60.0,
                            help="seconds to wait for each answer")
        parser.add_argument("--json", action="store_true", help="print raw JSON results")
        parser.add_argument("--oauth", action="store_true",
                            help="for --url: log in through the browser if the server asks")
        add_oauth_options(parser)
        if action in ("call", "get-prompt"):
            parser.add_argument("name")
            parser.add_argument("pairs", nargs="*", metavar="key=value",
                                help="arguments; values are parsed as JSON when they can be")
            parser.add_argument("--args", help="all arguments as one JSON object")
        if action == "read":
            parser.add_argument("uri")
        parser.set_defaults(func=run_client_command)
    add_login_parser(actions)


def run_client_command(args: argparse.Namespace) -> int:
    import anyio

    from .core.errors import McpError
    from .storage import StoreError

    try:
        return anyio.run(_run, args)
    except (McpError, StoreError, ValueError, KeyError, OSError) as exc:
        print(f"mobius client: {exc}", file=sys.stderr)
        return 2


def _arguments(args: argparse.Namespace, *, text_only: bool = False) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if getattr(args, "args", None):
        loaded = json.loads(args.args)
        if not isinstance(loaded, dict):
            raise ValueError("--args must be a JSON object")
        values.update(loaded)
    for pair in getattr(args, "pairs", None) or []:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {pair!r}")
        if text_only:
            values[key] = raw
            continue
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def _client(args: argparse.Namespace, redirect: Any = None,
            tokens: TokenStore | None = None) -> Client:
    from .client import Client, StdioTarget, load_server_config, target_from_url

    options: dict[str, Any] = {"revision": args.revision, "timeout": args.timeout}
    if args.stdio:
        return Client(StdioTarget.parse(args.stdio), **options)
    if args.url:
        headers = dict(h.split(":", 1) for h in args.header if ":" in h)
        headers = {k.strip(): v.strip() for k, v in headers.items()}
        oauth = interactive_oauth(args, redirect, tokens) if redirect is not None \
            else saved_oauth(args, tokens) if tokens is not None else None
        return Client(target_from_url(args.url, headers=headers, kind=args.transport,
                                      oauth=oauth), **options)
    targets = load_server_config(args.config)
    if args.server not in targets:
        raise KeyError(f"no server {args.server!r} in {args.config} "
                       f"(known: {', '.join(targets) or 'none'})")
    return Client(targets[args.server], label=args.server, **options)


async def _run(args: argparse.Namespace) -> int:
    from .client import ClientManager

    if args.config and not args.server:
        async with ClientManager.from_config(args.config, revision=args.revision,
                                             timeout=args.timeout) as manager:
            code = await _act(args, manager)
            for health in manager.health():
                if health.state == "disconnected":
                    print(f"warning: {health.name}: {health.last_error}", file=sys.stderr)
            return code
    if args.url and args.url.startswith(("http://", "https://")):
        # saved logins are used (and refreshed); --oauth may also make a new one
        async with saved_tokens(args, create=args.oauth) as tokens:
            if args.oauth:
                from .client.oauth import LoopbackRedirect

                async with LoopbackRedirect(port=args.redirect_port) as redirect, \
                        _client(args, redirect, tokens) as client:
                    return await _act(args, client)
            async with _client(args, None, tokens) as client:
                return await _act(args, client)
    async with _client(args) as client:
        return await _act(args, client)


async def _act(args: argparse.Namespace, peer: Client | ClientManager) -> int:
    from .client import Client

    action = args.action
    if action == "tools":
        tools = await peer.list_tools()
        _show(args, {"tools": tools}, lambda: _table(
            ["name", "arguments", "description"],
            [[t["name"], _signature(t.get("inputSchema")), _first_line(t.get("description"))]
             for t in tools]))
        return 0
    if action == "call":
        result = await peer.call_tool(args.name, _arguments(args))
        _show(args, result, lambda: _content(result))
        return 1 if result.get("isError") else 0
    if action == "resources":
        resources = await peer.list_resources()
        templates = await peer.list_resource_templates() if isinstance(peer, Client) else []
        _show(args, {"resources": resources, "resourceTemplates": templates}, lambda: _table(
            ["uri", "name", "mimeType"],
            [[r.get("uri", ""), r.get("name", ""), r.get("mimeType", "")] for r in resources]
            + [[t.get("uriTemplate", ""), t.get("name", ""), "(template)"] for t in templates]))
        return 0
    if action == "read":
        result = await peer.read_resource(args.uri)
        _show(args, result, lambda: "\n".join(
            c["text"] if "text" in c else f"[{c.get('mimeType', 'binary')}: "
            f"{len(c.get('blob', '')) * 3 // 4} bytes]" for c in result.get("contents", [])))
        return 0
    if action == "prompts":
        prompts = await peer.list_prompts()
        _show(args, {"prompts": prompts}, lambda: _table(
            ["name", "arguments", "description"],
            [[p["name"], " ".join(a["name"] + ("*" if a.get("required") else "")
                                  for a in p.get("arguments") or []),
              _first_line(p.get("description"))] for p in prompts]))
        return 0
    if action == "get-prompt":
        result = await peer.get_prompt(args.name, _arguments(args, text_only=True))
        _show(args, result, lambda: "\n".join(
            f"[{m.get('role')}] {_block(m.get('content') or {})}"
            for m in result.get("messages", [])))
        return 0
    raise ValueError(f"unknown action {action!r}")


def _show(args: argparse.Namespace, data: Any, render: Any) -> None:
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(render())


def _first_line(text: Any, width: int = 70) -> str:
    line = str(text or "").strip().splitlines()[0] if str(text or "").strip() else ""
    return line if len(line) <= width else line[:width - 1] + "…"


def _signature(schema: Any) -> str:
    if not isinstance(schema, dict):
        return ""
    required = set(schema.get("required") or [])
    return " ".join(name + ("*" if name in required else "")
                    for name in (schema.get("properties") or {}))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line([h.upper() for h in headers]), *(line(row) for row in rows)])


def _block(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind in ("image", "audio"):
        return f"[{kind} {block.get('mimeType', '')}, {len(block.get('data', '')) * 3 // 4} bytes]"
    if kind == "resource":
        inner = block.get("resource") or {}
        return inner.get("text") or f"[resource {inner.get('uri', '')}]"
    if kind == "resource_link":
        return f"[link {block.get('uri', '')}]"
    return json.dumps(block)


def _content(result: dict[str, Any]) -> str:
    parts = [_block(b) for b in result.get("content") or []]
    if "structuredContent" in result and not parts:
        parts.append(json.dumps(result["structuredContent"], indent=2))
    if result.get("isError"):
        parts.insert(0, "tool error:")
    return "\n".join(parts)
