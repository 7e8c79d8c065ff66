"""``mobius gateway diff|approve`` and the ``serve --gateway`` hook.

``diff`` connects to the upstreams of a host config (``mcp.json``) and shows
how their tools differ from what was approved (added, changed with the fields
that changed, removed); exit status 1 when something is pending, 0 when
nothing is.  ``approve`` pins the current definitions (all of an upstream's,
or ``--tool`` ones), which the gateway then serves.  The pins live in the
store (``--store URL``, else ``$MOBIUS_STORE``, else the SQLite file in the
data directory), the same one ``mobius serve --gateway`` reads.  Errors are
one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from contextlib import AsyncExitStack
from typing import Any

__all__ = ("add_gateway_parser", "attach_gateway", "extension_upstreams", "load_extensions",
           "StorePins")


def add_gateway_parser(sub: Any) -> None:
    gateway = sub.add_parser("gateway", help="the gateway's pinned tool definitions")
    actions = gateway.add_subparsers(dest="action", required=True)
    for action, text in (("diff", "show tool changes waiting for approval"),
                         ("approve", "approve the upstreams' current tool definitions")):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("--config", required=True, metavar="FILE",
                            help="host config with mcpServers (mcp.json)")
        parser.add_argument("--store", metavar="URL", help="where pins are kept "
                            "(default: $MOBIUS_STORE, else the SQLite file in the data dir)")
        parser.add_argument("--upstream", action="append", metavar="NAME",
                            help="only this upstream (repeatable)")
        parser.add_argument("--json", action="store_true", help="print JSON")
        if action == "approve":
            parser.add_argument("--tool", action="append", metavar="NAME",
                                help="approve only this tool (repeatable; needs one --upstream)")
            parser.add_argument("--by", default="admin", help="who approves (audited)")
        parser.set_defaults(func=run_gateway_command)


class StorePins:
    """A pin store opened on first use from a store URL (for long-running serve).

    It is also the pinning's audit sink: changes and approvals go to the security
    audit log on the same store (the one ``mobius audit search|verify`` reads), so
    the pin rows are never the only trace of who approved what."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self._stack: AsyncExitStack | None = None
        self._pins: Any = None
        self._audit: Any = None

    async def _open(self) -> Any:
        if self._pins is None:
            from .gateway.pinstore import pin_store_for
            from .security.audit import AuditLog
            from .security.open import security_store_for
            from .storage import open_store
            self._stack = AsyncExitStack()
            store = await self._stack.enter_async_context(open_store(self.url))
            self._pins = pin_store_for(store)
            self._audit = AuditLog(security_store_for(store))
        return self._pins

    async def append(self, **fields: Any) -> Any:
        """Append an audit record (see :class:`~.security.audit.AuditLog.append`)."""
        await self._open()
        return await self._audit.append(**fields)

    async def aclose(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()

    async def pins(self, upstream: str) -> Any:
        return await (await self._open()).pins(upstream)

    async def tool_set(self, upstream: str) -> Any:
        return await (await self._open()).tool_set(upstream)

    async def approve(self, upstream: str, pins: Any, removed: Any, tool_set: Any) -> None:
        await (await self._open()).approve(upstream, pins, removed, tool_set)

    async def upstreams(self) -> list[str]:
        result: list[str] = await (await self._open()).upstreams()
        return result


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def extension_upstreams(entries: dict[str, dict[str, Any]], taken: set[str]
                        ) -> dict[str, dict[str, Any]]:
    """Installed extensions (``Marketplace.launch_entries``) keyed by gateway upstream
    name: the extension name's last part (``.../mcp-hello-world`` -> ``mcp-hello-world``),
    so tools read ``mcp-hello-world__echo``; the whole name, ``/`` made ``_``, when the
    short one is taken (by a config entry or another extension)."""
    out: dict[str, dict[str, Any]] = {}
    for name, entry in sorted(entries.items()):
        short = _UNSAFE.sub("-", name.rsplit("/", 1)[-1]).strip("-") or "extension"
        upstream = short if short not in taken else _UNSAFE.sub("_", name)
        if upstream in taken:
            raise ValueError(f"extension {name} clashes with upstream {upstream!r}")
        taken.add(upstream)
        out[upstream] = entry
    return out


def load_extensions(org: str, store: str | None) -> dict[str, dict[str, Any]]:
    """The enabled installations of organization ``org`` in ``store``, as sandboxed
    ``mcpServers`` entries (run before serving: the entries are fixed for the run)."""
    import anyio

    from .marketplace import Marketplace, SecretBox, load_key, market_store
    from .storage import data_dir, open_store

    async def load() -> dict[str, dict[str, Any]]:
        home = data_dir()
        async with open_store(store) as opened:
            market = Marketplace(market_store(opened), home=home, box=SecretBox(load_key(home)))
            await market.load_stored()
            return await market.launch_entries(org)
    return anyio.run(load)


def attach_gateway(server: Any, config: str | None, pins: str = "tofu",
                   store: str | None = None, extensions: str | None = None,
                   lane: bool = True) -> int:
    """``mobius serve --gateway FILE`` and/or ``--extensions ORG``: serve the config's
    upstreams and the organization's installed extensions through ``server``."""
    from .gateway import Gateway, Pinning
    from .gateway.gateway import read_servers
    from .marketplace import MarketError
    from .marketplace.inputs import InputError
    from .marketplace.secrets import SecretError
    from .storage import StoreError, store_url
    what = " ".join(f"{flag} {value}" for flag, value in
                    (("--gateway", config), ("--extensions", extensions)) if value)
    try:
        url = store_url(store)
        servers = read_servers(config) if config else {}
        owned: dict[str, dict[str, Any]] = {}
        if extensions is not None:
            found = load_extensions(extensions, url)
            if not found:
                print(f"mobius serve: --extensions {extensions}: no enabled installations",
                      file=sys.stderr)
            owned = extension_upstreams(found, set(servers))
            servers.update(owned)
        pinned = StorePins(url)
        pinning = None if pins == "off" else Pinning(pinned, mode=pins, audit=pinned)
        gateway = Gateway(servers, pinning=pinning, lane=lane).attach(server)
        if extensions is not None:
            # --http: only ORG's principals see and use its extensions (the security
            # middleware asks server.owners; see security/serving.py)
            gateway.owners.update({name: extensions for name in owned})
            server.owners = gateway.owner_of
    except (OSError, ValueError, StoreError, MarketError, InputError, SecretError) as exc:
        print(f"mobius serve: {what}: {exc}", file=sys.stderr)
        return 2
    return 0


def run_gateway_command(args: argparse.Namespace) -> int:
    import anyio

    from .storage import StoreError
    try:
        return anyio.run(_run, args)
    except (OSError, ValueError, KeyError, StoreError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mobius gateway {args.action}: {text}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace) -> int:
    from .gateway import Gateway, Pinning, UpstreamOptions
    from .gateway.gateway import read_servers
    from .storage import store_url

    servers = read_servers(args.config)
    chosen = args.upstream or list(servers)
    unknown = [name for name in chosen if name not in servers]
    if unknown:
        raise ValueError(f"no upstream named {', '.join(unknown)} in {args.config}")
    if getattr(args, "tool", None) and len(chosen) != 1:
        raise ValueError("--tool needs exactly one --upstream")
    pins = StorePins(store_url(args.store))
    pinning = Pinning(pins, mode="strict", audit=pins)
    gateway = Gateway({name: servers[name] for name in chosen},
                      options=UpstreamOptions(health_interval=0))
    out: dict[str, Any] = {}
    pending = False
    try:
        await gateway.wait_ready(30.0)
        for name in chosen:
            upstream = gateway.upstreams[name]
            if not upstream.ready:
                raise ValueError(f"cannot reach upstream {name}: {upstream.client.last_error}")
            tools = upstream.lists["tools"]
            if args.action == "diff":
                changes = await pinning.diff(name, tools)
            else:
                changes = await pinning.approve(name, tools, names=args.tool, by=args.by)
            pending = pending or bool(changes)
            out[name] = [c.as_dict() for c in changes]
    finally:
        await gateway.aclose()
        await pins.aclose()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for name, changes in out.items():
            verb = "approved" if args.action == "approve" else "pending"
            print(f"{name}: {len(changes)} change(s) {verb}" if changes
                  else f"{name}: up to date")
            for change in changes:
                fields = f" ({', '.join(change['fields'])})" if change.get("fields") else ""
                print(f"  {change['change']:8} {change['tool']}{fields}")
    return 1 if args.action == "diff" and pending else 0
