"""``ClientManager``: many named servers behind one view, kept connected.

Hosts (and the gateway built on this) configure servers as an ``mcpServers``
map.  The manager connects to each lazily, on first use, so a broken entry
costs nothing until something needs it; reconnects a server that died, with
exponential backoff so a crashing server is not respawned in a tight loop;
reports each server's health; and merges tools, resources and prompts into
one namespaced view, so two servers that both have a ``search`` tool stay
distinguishable.

Names in the merged view are ``<server><separator><name>`` (``git__status``).
With ``namespace="on_collision"`` a name that only one server uses stays
bare and only clashing names are qualified.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio

from ..core.errors import INVALID_PARAMS, McpError
from .background import spawn_background
from .client import Client, ClientState, ConnectError
from .targets import Target, target_from_config

__all__ = ("ClientManager", "ServerHealth", "load_server_config")

log = logging.getLogger("mobius_rpc.client.manager")


def load_server_config(source: str | Path | Mapping[str, Any]) -> dict[str, Target]:
    """Targets by name from a host config: ``{"mcpServers": {...}}`` (Claude Desktop,
    Cursor), ``{"servers": {...}}`` (VS Code) or the bare map itself."""
    if isinstance(source, (str, Path)):
        data = json.loads(Path(source).read_text())
    else:
        data = source
    if not isinstance(data, Mapping):
        raise ValueError("a server configuration must be a JSON object")
    servers = data.get("mcpServers", data.get("servers", data))
    if not isinstance(servers, Mapping):
        raise ValueError("'mcpServers' must be an object")
    targets: dict[str, Target] = {}
    for name, entry in servers.items():
        if isinstance(entry, Mapping) and entry.get("disabled") is True:
            continue
        try:
            targets[str(name)] = target_from_config(entry)
        except ValueError as exc:
            raise ValueError(f"server {name!r}: {exc}") from None
    return targets


@dataclass
class ServerHealth:
    """What the manager knows about one server, for status pages and probes."""

    name: str
    state: ClientState
    protocol_version: str | None
    server_info: dict[str, Any]
    last_error: str | None
    failures: int
    retry_in: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state.value,
                "protocolVersion": self.protocol_version, "serverInfo": self.server_info,
                "lastError": self.last_error, "failures": self.failures,
                "retryIn": self.retry_in}


class _Entry:
    def __init__(self, name: str, client: Client) -> None:
        self.name = name
        self.client = client
        self.failures = 0
        self.next_attempt = 0.0
        self.wanted = False  # connected once: keep it connected


class ClientManager:
    """Named connections from a host-style configuration.

    ``async with ClientManager.from_config("mcp.json") as manager:`` then
    ``await manager.list_tools()`` and ``await manager.call_tool("git__status", {})``.
    ``client_options`` go to every :class:`Client` (handlers, timeouts ...).
    """

    def __init__(self, servers: Mapping[str, Target], *, separator: str = "__",
                 namespace: Literal["always", "on_collision"] = "always",
                 backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 **client_options: Any) -> None:
        if not separator:
            raise ValueError("separator must not be empty")
        self.separator = separator
        self.namespace = namespace
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._entries = {
            name: _Entry(name, Client(target, label=name, on_disconnect=self._lost,
                                      **client_options))
            for name, target in servers.items()}
        self._wake = anyio.Event()
        self._closing = False
        self._supervisor_done: anyio.Event | None = None
        self._routes: dict[str, dict[str, tuple[str, str]]] = {
            "tools": {}, "prompts": {}}

    @classmethod
    def from_config(cls, source: str | Path | Mapping[str, Any],
                    **options: Any) -> ClientManager:
        return cls(load_server_config(source), **options)

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    # ------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> ClientManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection (concurrently) and stop reconnecting."""
        self._closing = True
        self._wake.set()
        async with anyio.create_task_group() as tg:
            for entry in self._entries.values():
                tg.start_soon(entry.client.aclose)
        if self._supervisor_done is not None:
            with anyio.CancelScope(shield=True):
                await self._supervisor_done.wait()

    def _lost(self, client: Client) -> None:
        """A server went away: schedule its reconnection."""
        entry = self._entries.get(client.label)
        if entry is not None and not self._closing:
            entry.next_attempt = time.monotonic() + self._backoff(entry)
            self._wake.set()

    def _backoff(self, entry: _Entry) -> float:
        return float(min(self.backoff_max, self.backoff_initial * 2.0 ** entry.failures))

    def _ensure_supervisor(self) -> None:
        if self._supervisor_done is None:
            self._supervisor_done = anyio.Event()
            spawn_background(self._supervise)

    async def _supervise(self) -> None:
        """Reconnect the servers that were in use and died, each at its due time."""
        assert self._supervisor_done is not None
        try:
            while not self._closing:
                due = [e for e in self._entries.values()
                       if e.wanted and e.client.state is ClientState.DISCONNECTED]
                now = time.monotonic()
                for entry in due:
                    if entry.next_attempt <= now:
                        await self._attempt(entry)
                waits = [e.next_attempt - time.monotonic() for e in self._entries.values()
                         if e.wanted and e.client.state is ClientState.DISCONNECTED]
                self._wake = anyio.Event()
                with anyio.move_on_after(max(0.0, min(waits)) if waits else None):
                    await self._wake.wait()
        finally:
            self._supervisor_done.set()

    async def _attempt(self, entry: _Entry) -> bool:
        try:
            if entry.client.state is ClientState.IDLE:
                await entry.client.connect()
            else:
                await entry.client.reconnect()
        except (ConnectError, McpError, OSError) as exc:
            entry.failures += 1
            entry.next_attempt = time.monotonic() + self._backoff(entry)
            log.warning("%s: connection failed (attempt %d): %s", entry.name,
                        entry.failures, exc)
            return False
        entry.failures = 0
        entry.wanted = True
        log.info("%s: connected (%s)", entry.name, entry.client.protocol_version)
        return True

    # ---------------------------------------------------------------- access

    async def client(self, name: str) -> Client:
        """The connected client for ``name``, connecting (or reconnecting) now if due."""
        entry = self._entries.get(name)
        if entry is None:
            raise KeyError(f"no server named {name!r}; known: {', '.join(self._entries)}")
        if self._closing:
            raise ConnectError("the client manager is closed")
        self._ensure_supervisor()
        if entry.client.state is ClientState.READY:
            return entry.client
        wait = entry.next_attempt - time.monotonic()
        if wait > 0:
            raise ConnectError(f"{name} is down (retrying in {wait:.1f}s): "
                               f"{entry.client.last_error}")
        if not await self._attempt(entry):
            raise ConnectError(f"{name}: {entry.client.last_error}")
        return entry.client

    def health(self) -> list[ServerHealth]:
        now = time.monotonic()
        out = []
        for entry in self._entries.values():
            client = entry.client
            waiting = entry.next_attempt - now if client.state is ClientState.DISCONNECTED else None
            out.append(ServerHealth(entry.name, client.state, client.protocol_version,
                                    client.server_info, client.last_error, entry.failures,
                                    max(0.0, waiting) if waiting is not None else None))
        return out

    # ------------------------------------------------------- aggregated view

    async def _gather(self, kind: str, servers: list[str] | None
                      ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
        """``kind`` items of every reachable server; errors by server instead of raising."""
        found: dict[str, list[dict[str, Any]]] = {}
        errors: dict[str, str] = {}

        async def one(name: str) -> None:
            try:
                client = await self.client(name)
                found[name] = await getattr(client, f"list_{kind}")()
            except (ConnectError, McpError, OSError) as exc:
                errors[name] = str(exc)

        async with anyio.create_task_group() as tg:
            for name in servers or self.names:
                tg.start_soon(one, name)
        return {name: found[name] for name in self.names if name in found}, errors

    def _qualify(self, kind: str, by_server: dict[str, list[dict[str, Any]]]
                 ) -> list[dict[str, Any]]:
        counts: dict[str, int] = {}
        for items in by_server.values():
            for item in items:
                counts[item["name"]] = counts.get(item["name"], 0) + 1
        routes: dict[str, tuple[str, str]] = {}
        merged: list[dict[str, Any]] = []
        for server, items in by_server.items():
            for item in items:
                original = item["name"]
                if self.namespace == "on_collision" and counts[original] == 1:
                    public = original
                else:
                    public = f"{server}{self.separator}{original}"
                base, n = public, 2
                while public in routes:  # e.g. "a__b" + "c" and "a" + "b__c"
                    public, n = f"{base}~{n}", n + 1
                routes[public] = (server, original)
                merged.append({**item, "name": public, "_server": server,
                               "_originalName": original})
        self._routes[kind] = routes
        return merged

    async def list_tools(self, servers: list[str] | None = None) -> list[dict[str, Any]]:
        """Every tool of every reachable server, under its namespaced name.

        Each entry keeps the server's definition plus ``_server`` and
        ``_originalName``; unreachable servers are skipped (see :meth:`health`).
        """
        by_server, _ = await self._gather("tools", servers)
        return self._qualify("tools", by_server)

    async def list_prompts(self, servers: list[str] | None = None) -> list[dict[str, Any]]:
        by_server, _ = await self._gather("prompts", servers)
        return self._qualify("prompts", by_server)

    async def list_resources(self, servers: list[str] | None = None
                             ) -> list[dict[str, Any]]:
        """Every resource, tagged with ``_server`` (URIs are not renamed)."""
        by_server, _ = await self._gather("resources", servers)
        return [{**item, "_server": server} for server, items in by_server.items()
                for item in items]

    async def _route(self, kind: str, name: str) -> tuple[str, str]:
        route = self._routes[kind].get(name)
        if route is None:
            await getattr(self, f"list_{kind}")()
            route = self._routes[kind].get(name)
        if route is None:
            server, sep, original = name.partition(self.separator)
            if sep and server in self._entries:
                return server, original
            raise McpError(INVALID_PARAMS, f"no {kind[:-1]} named {name!r} on any server")
        return route

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None,
                        **options: Any) -> dict[str, Any]:
        """Call a tool by its namespaced name (as :meth:`list_tools` shows it)."""
        server, original = await self._route("tools", name)
        return await (await self.client(server)).call_tool(original, arguments, **options)

    async def get_prompt(self, name: str, arguments: dict[str, str] | None = None
                         ) -> dict[str, Any]:
        server, original = await self._route("prompts", name)
        return await (await self.client(server)).get_prompt(original, arguments)

    async def read_resource(self, uri: str, *, server: str | None = None) -> dict[str, Any]:
        """Read ``uri`` from ``server``, or from the one server that lists it."""
        if server is None:
            owners = sorted({r["_server"] for r in await self.list_resources()
                             if r.get("uri") == uri})
            if len(owners) > 1:
                raise McpError(INVALID_PARAMS, f"{uri!r} is listed by several servers "
                                       f"({', '.join(owners)}): name one")
            if not owners:
                raise McpError(INVALID_PARAMS, f"no server lists {uri!r}; name the server")
            server = owners[0]
        return await (await self.client(server)).read_resource(uri)
