"""``mobius market ...``: browse the catalog and manage an organization's extensions.

``search`` and ``show`` read the bundled catalog plus what was imported into the
store; ``import`` takes a server.json file or a registry URL; ``install``,
``configure``, ``enable``, ``disable``, ``upgrade``, ``uninstall``, ``list`` and
``health`` act for one organization as the trusted local operator; ``rate``
records a user's rating; ``sandbox`` says what this machine enforces.  The
store is ``--store URL`` (else ``$MOBIUS_STORE``, else the SQLite file in the
data directory), installations live under the data directory.  Exit status:
0, 1 when a check fails (health), 2 with a one-line error (never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ("add_market_parser",)


def _pairs(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set wants KEY=VALUE, not {item!r}")
        out[key] = value
    return out


def add_market_parser(sub: Any) -> None:
    market = sub.add_parser("market", help="the extension marketplace")
    actions = market.add_subparsers(dest="action", required=True)

    def add(name: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=text)
        parser.add_argument("--store", metavar="URL", help="the store (default: $MOBIUS_STORE, "
                            "else the SQLite file in the data directory)")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(func=run_market_command)
        return parser

    search = add("search", "search the catalog")
    search.add_argument("text", nargs="?", default=None)
    search.add_argument("--category")
    search.add_argument("--registry", choices=["npm", "pypi", "nuget", "cargo", "oci", "mcpb"])
    search.add_argument("--transport", choices=["stdio", "streamable-http", "sse"])
    search.add_argument("--secrets", choices=["yes", "no"], help="needs secrets or not")
    search.add_argument("--sort", default="relevance",
                        choices=["relevance", "name", "installs", "rating"])
    search.add_argument("--limit", type=int, default=20)
    search.add_argument("--cursor")
    add("show", "one extension in full").add_argument("name")
    add("import", "import a server.json file or a registry URL").add_argument("source")
    for name, text in (("install", "install for an organization"),
                       ("configure", "change an installation's configuration"),
                       ("enable", "enable an installation"), ("disable", "disable it"),
                       ("upgrade", "upgrade to the newest (or --version)"),
                       ("uninstall", "remove the installation and its files"),
                       ("health", "start it sandboxed and list its tools")):
        parser = add(name, text)
        parser.add_argument("org")
        parser.add_argument("name")
        if name in ("install", "configure"):
            parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        if name in ("install", "upgrade"):
            parser.add_argument("--version")
    add("list", "an organization's installations").add_argument("org")
    rate = add("rate", "rate an extension 1-5")
    rate.add_argument("name")
    rate.add_argument("stars", type=int)
    rate.add_argument("--user", required=True)
    rate.add_argument("--review", default="")
    add("sandbox", "what the sandbox enforces on this machine")


def _public(inst: Any) -> dict[str, Any]:
    return {"org": inst.org_id, "name": inst.name, "version": inst.version,
            "enabled": inst.enabled, "config": inst.config, "secrets": sorted(inst.secrets),
            "path": inst.path, "health": inst.health}


async def _act(args: argparse.Namespace, market: Any) -> Any:
    from .marketplace import SearchQuery

    action = args.action
    if action == "search":
        page = await market.search(SearchQuery(
            text=args.text, category=args.category, registry=args.registry,
            transport=args.transport,
            needs_secrets=None if args.secrets is None else args.secrets == "yes",
            sort=args.sort, limit=args.limit, cursor=args.cursor))
        return {"servers": [e.summary() for e in page.items], "total": page.total,
                "nextCursor": page.next_cursor}
    if action == "show":
        return await market.show(args.name)
    if action == "import":
        if args.source.startswith(("http://", "https://")):
            result = await market.import_registry(args.source)
            return {"imported": len(result.entries), "pages": result.pages,
                    "rejected": [f"{w}: {why}" for w, why in result.rejected]}
        return {"imported": await market.import_file(Path(args.source))}
    if action == "install":
        return _public(await market.install(args.org, args.name, version=args.version,
                                            config=_pairs(args.set)))
    if action == "configure":
        return _public(await market.configure(args.org, args.name, _pairs(args.set)))
    if action in ("enable", "disable"):
        return _public(await market.set_enabled(args.org, args.name, action == "enable"))
    if action == "upgrade":
        return _public(await market.upgrade(args.org, args.name, version=args.version))
    if action == "uninstall":
        await market.uninstall(args.org, args.name)
        return {"uninstalled": args.name}
    if action == "list":
        return [_public(i) for i in await market.installations(args.org)]
    if action == "health":
        return await market.check_health(args.org, args.name)
    if action == "rate":
        stored = await market.rate(args.name, args.stars, args.review, user=args.user)
        return {"name": stored.name, "user": stored.user_id, "stars": stored.stars}
    return {"enforced": market.sandbox.enforced}


def _text(action: str, result: Any) -> str:
    if action == "search":
        lines = [f"{s['name']}  {s['version']}  [{s['category']}]  {s['description']}"
                 for s in result["servers"]]
        lines.append(f"({result['total']} found" + (
            f"; next page: --cursor {result['nextCursor']})" if result["nextCursor"] else ")"))
        return "\n".join(lines)
    if action == "sandbox":
        return "\n".join(result["enforced"])
    return json.dumps(result, indent=2, sort_keys=True)


def run_market_command(args: argparse.Namespace) -> int:
    import anyio

    from .marketplace import MarketError, Marketplace, SecretBox, load_key, market_store
    from .marketplace.inputs import InputError
    from .marketplace.registry import RegistryError
    from .marketplace.secrets import SecretError
    from .marketplace.serverjson import ServerJsonError
    from .storage import StoreError, data_dir, open_store, store_url

    async def run(act: Callable[[argparse.Namespace, Any], Awaitable[Any]]) -> Any:
        home = data_dir()
        async with open_store(store_url(args.store)) as store:
            market = Marketplace(market_store(store), home=home,
                                 box=SecretBox(load_key(home)))
            await market.load_stored()
            return await act(args, market)

    try:
        result = anyio.run(run, _act)
    except (MarketError, InputError, ServerJsonError, RegistryError, SecretError, StoreError,
            ValueError, RuntimeError, OSError) as error:
        lines = str(error).splitlines() or [type(error).__name__]
        # one line: what failed, and for an install the tool's last word
        text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1].strip()}"
        print(f"mobius market {args.action}: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result, sort_keys=True) if args.json else _text(args.action, result))
    if args.action == "health" and result.get("status") != "ok":
        return 1
    return 0
