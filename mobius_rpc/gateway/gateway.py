"""The gateway: upstream MCP servers re-served through one Mobius server.

``Gateway(...).attach(server)`` takes over the server's list, call, read,
get, subscribe and completion methods so that each answers with the server's
own items *and* every upstream's, under :mod:`.router`'s public names; a name
the gateway does not know goes on to what the server answered before (its
own registrations, or another layer's handler), so the gateway sits next to
whatever else the server serves.  Because it works at the level of request
handlers, everything below it comes for free: every transport and both eras
downstream, the dispatcher's middleware (security policy and audit apply to
upstream tools by their public names, ``git__*``), list_changed fan-out.

Upstream connections (:mod:`.upstreams`) are long-lived and start with the
first request (or :meth:`Gateway.start`); per-call relaying is :mod:`.relay`;
which tools may be served at all is :mod:`.pinning`.  Upstream credentials
live in the upstream's own configuration (its ``env`` or ``headers``); the
downstream client's token is never forwarded.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio

from ..client.targets import Target
from ..core.errors import INVALID_PARAMS, McpError
from ..core.modern import META_LOG_LEVEL
from ..core.revisions import Era, has_tasks, served_tool
from ..runtime.session import Session
from ..server.builtins import BUILTINS
from ..server.context import Context
from ..server.registration import Registration, RequestHandler
from .lane import Lane
from .parking import Parking, ParkingOptions, applies
from .pinning import Pinning
from .relay import Relay
from .router import HOP_PARAMS, Naming, Router, hop_free, paginate_by_key
from .tasks import TASKS_CAPABILITY, start_task, upstream_task_status
from .upstreams import Upstream, UpstreamOptions

__all__ = ("Gateway", "expand", "read_servers")

log = logging.getLogger("mobius_rpc.gateway")

#: list method -> (result key, sort field, view kind, list_changed kind)
_LISTS = {"tools/list": ("tools", "name", "tools"),
          "resources/list": ("resources", "uri", "resources"),
          "resources/templates/list": ("resourceTemplates", "uriTemplate", "templates"),
          "prompts/list": ("prompts", "name", "prompts")}
_HOP_PARAMS = HOP_PARAMS  # the params only the downstream hop has (never forwarded)
#: tool fields that describe how *this* server runs a tool: none (an upstream's
#: ``execution.taskSupport`` is served as it is, see :mod:`.tasks`)
_TOOL_LOCAL_FIELDS: tuple[str, ...] = ()


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(value: Any, environ: Mapping[str, str]) -> Any:
    """``value`` with ``${VAR}`` and ``${VAR:-default}`` in its strings replaced from
    ``environ`` (as Claude Code and Cursor configs write secrets: kept in the user's
    environment, not in the file).  An unset variable without a default is an error."""
    if isinstance(value, str):
        def one(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is None:
                raise ValueError(f"${{{name}}} is not set")
            return default
        return _VARIABLE.sub(one, value)
    if isinstance(value, list):
        return [expand(item, environ) for item in value]
    if isinstance(value, Mapping):
        return {key: expand(item, environ) for key, item in value.items()}
    return value


def read_servers(source: str | Path | Mapping[str, Any],
                 environ: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The server entries of a host config (``mcpServers``, VS Code ``servers``, or a
    bare map), disabled ones left out, ``${VAR}`` expanded from ``environ`` (default:
    this process's environment)."""
    data = json.loads(Path(source).read_text()) if isinstance(source, (str, Path)) else source
    if not isinstance(data, Mapping):
        raise ValueError("a server configuration must be a JSON object")
    servers = data.get("mcpServers", data.get("servers", data))
    if not isinstance(servers, Mapping):
        raise ValueError("'mcpServers' must be an object")
    out: dict[str, dict[str, Any]] = {}
    for name, entry in servers.items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"server {name!r}: an entry must be an object")
        if entry.get("disabled") is True:
            continue
        try:
            out[str(name)] = expand(dict(entry), os.environ if environ is None else environ)
        except ValueError as exc:
            raise ValueError(f"server {name!r}: {exc}") from None
    return out


class Gateway:
    """Upstream servers behind one server; see the module docstring."""

    def __init__(self, upstreams: Mapping[str, Target | Mapping[str, Any]] | None = None, *,
                 naming: Naming | None = None, options: UpstreamOptions | None = None,
                 pinning: Pinning | None = None, list_wait: float = 10.0,
                 parking: ParkingOptions | None = None, lane: bool = True) -> None:
        """``lane`` False serves every call on the general path (see :mod:`.lane`;
        for comparing the two, or ruling the lane out when chasing a problem)."""
        self.router = Router(naming)
        self.lane = lane
        #: calls of legacy upstreams waiting for a modern downstream's input (:mod:`.parking`)
        self.parking = Parking(parking)
        self.options = options or UpstreamOptions()
        self.pinning = pinning
        #: how long a list request waits for upstreams still making their first connection
        self.list_wait = list_wait
        self.upstreams: dict[str, Upstream] = {}
        self._server: Registration | None = None
        self._local: dict[str, RequestHandler] = {}
        self._views: dict[str, list[dict[str, Any]]] = {
            "tools": [], "resources": [], "templates": [], "prompts": []}
        self._admitted: dict[str, list[dict[str, Any]]] = {}
        #: upstream -> the organization it belongs to (an installed extension); the
        #: others are shared.  :meth:`owner_of` answers the security middleware's question
        self.owners: dict[str, str] = {}
        self._subscribers: dict[str, set[Session]] = {}
        #: public URI -> open downstream listen streams that carry it
        self._listened: dict[str, int] = {}
        self._started = False
        self._waited = False
        #: lane calls handed back to the general path with the upstream's first
        #: InputRequiredResult, which that path goes on from (see .lane)
        self._resumed: dict[tuple[Session, Any], dict[str, Any]] = {}
        for name, target in (upstreams or {}).items():
            self._add(name, target)

    @classmethod
    def from_config(cls, source: str | Path | Mapping[str, Any], **options: Any) -> Gateway:
        """A gateway for the servers of a host config file (``mcp.json``)."""
        return cls(read_servers(source), **options)

    # ------------------------------------------------------------ upstreams

    def _add(self, name: str, target: Target | Mapping[str, Any]) -> Upstream:
        if not name or any(c in name for c in "\x00/"):
            raise ValueError(f"bad upstream name {name!r}")
        if name in self.upstreams:
            raise ValueError(f"there is already an upstream named {name!r}")
        try:
            upstream = Upstream(name, target, options=self.options, on_lists=self._lists_changed,
                                on_notification=self._upstream_notified)
        except ValueError as exc:
            raise ValueError(f"server {name!r}: {exc}") from None
        self.router.add_upstream(name)
        self.upstreams[name] = upstream
        return upstream

    async def add_upstream(self, name: str, target: Target | Mapping[str, Any]) -> Upstream:
        """Add an upstream at run time (an ``mcpServers`` entry or a target); it
        connects in the background and its items appear once it answers."""
        upstream = self._add(name, target)
        if self._started:
            upstream.start()
        return upstream

    async def remove_upstream(self, name: str) -> bool:
        """Disconnect an upstream and withdraw its items; whether there was one."""
        upstream = self.upstreams.pop(name, None)
        if upstream is None:
            return False
        self.router.remove_upstream(name)
        self._admitted.pop(name, None)
        self.owners.pop(name, None)
        await upstream.aclose()
        for kinds in (("tools",), ("resources", "templates"), ("prompts",)):
            self._rebuild(set(kinds))
        return True

    def owner_of(self, kind: str, name: str) -> str | None:
        """The organization a public tool, prompt (by name) or resource (by URI or
        URI template) belongs to, if its upstream has one: the ``owners`` argument of
        :class:`~..security.middleware.SecurityMiddleware`, which refuses it to, and
        leaves it out of the lists of, every other organization's principals."""
        if not self.owners:
            return None
        found = self.router.route(kind, name) if kind in ("tools", "prompts") else \
            self.router.resolve_uri(name) if kind == "resources" else None
        return self.owners.get(found[0]) if found is not None else None

    def health(self) -> list[dict[str, Any]]:
        return [upstream.health() for upstream in self.upstreams.values()]

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start connecting every upstream (in the background; idempotent)."""
        self._started = True
        for upstream in self.upstreams.values():
            upstream.start()

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every upstream made its first connection attempt."""
        self.start()
        wait = self.list_wait if timeout is None else timeout
        async with anyio.create_task_group() as tg:
            for upstream in list(self.upstreams.values()):
                tg.start_soon(upstream.wait_first, wait)

    async def aclose(self) -> None:
        self.parking.close()
        async with anyio.create_task_group() as tg:
            for upstream in list(self.upstreams.values()):
                tg.start_soon(upstream.aclose)

    async def __aenter__(self) -> Gateway:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------ attaching

    def attach(self, server: Registration) -> Gateway:
        """Serve the upstreams through ``server`` beside what it already serves."""
        if self._server is not None:
            raise ValueError("this gateway is already attached to a server")
        self._server = server
        server.add_capabilities(tasks=TASKS_CAPABILITY)  # upstream tools run as our tasks
        handlers: dict[str, Callable[[Context, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            **{method: self._lister(method) for method in _LISTS},
            "tools/call": self._tools_call, "prompts/get": self._prompts_get,
            "resources/read": self._resources_read, "resources/subscribe": self._subscribe,
            "resources/unsubscribe": self._unsubscribe, "completion/complete": self._complete}
        for method, handler in handlers.items():
            self._local[method] = server.request_handlers.get(method) \
                or _builtin(server, method)
            server.request_handler(method)(handler)
        dispatcher = getattr(server, "dispatcher", None)
        if dispatcher is not None:  # a Server: its listen streams can carry upstream URIs
            self._local["subscriptions/listen"] = server.request_handlers.get(
                "subscriptions/listen") or dispatcher.listen
            server.request_handler("subscriptions/listen")(self._listen)
        if self.lane:  # plain calls of upstream items skip the task and handler machinery
            server.lane = Lane(self.router, self.upstreams, server, self._resumed, {
                method: server.request_handlers[method]
                for method in ("tools/call", "prompts/get", "resources/read")})
        return self

    async def _local_call(self, method: str, ctx: Context, params: dict[str, Any]
                          ) -> dict[str, Any]:
        return await self._local[method](ctx, params)

    # ------------------------------------------------------------ views

    async def _lists_changed(self, upstream: Upstream, kinds: set[str]) -> None:
        if "tools" in kinds:
            tools = [{k: v for k, v in t.items() if k not in _TOOL_LOCAL_FIELDS}
                     for t in upstream.lists["tools"] if isinstance(t.get("name"), str)]
            if self.pinning is not None:
                tools = await self.pinning.admit(upstream.name, tools)
            self._admitted[upstream.name] = tools
        self._rebuild(kinds)

    def _rebuild(self, kinds: set[str]) -> None:
        live = [u for u in self.upstreams.values()]
        if "tools" in kinds:
            self._views["tools"] = self.router.rebuild(
                "tools", {u.name: self._admitted.get(u.name, []) for u in live})
        if "prompts" in kinds:
            self._views["prompts"] = self.router.rebuild(
                "prompts", {u.name: [p for p in u.lists["prompts"]
                                     if isinstance(p.get("name"), str)] for u in live})
        if "resources" in kinds:
            self._views["resources"] = self.router.resources(
                {u.name: u.lists["resources"] for u in live})
        if "templates" in kinds:
            self._views["templates"] = self.router.templates(
                {u.name: u.lists["templates"] for u in live})
        server = self._server
        if server is not None:
            for kind in ("tools", "prompts"):
                if kind in kinds:
                    server.on_list_changed(kind)
            if kinds & {"resources", "templates"}:
                server.on_list_changed("resources")

    def view(self, kind: str) -> list[dict[str, Any]]:
        """The public items of every upstream ("tools", "resources", "templates", "prompts")."""
        return list(self._views[kind])

    async def _upstream_notified(self, upstream: Upstream, method: str,
                                 params: dict[str, Any]) -> None:
        if method == "notifications/tasks/status":
            upstream_task_status(upstream, params)  # a task our task follows (.tasks)
            return
        if method == "notifications/resources/updated" and self._server is not None:
            uri = params.get("uri")
            if isinstance(uri, str):
                public = self.router.public_uri(upstream.name, uri)
                notify = getattr(self._server, "notify_resource_updated", None)
                if notify is not None:
                    await notify(public)

    # ------------------------------------------------------------ handlers

    def _lister(self, method: str) -> RequestHandler:
        key, field, kind = _LISTS[method]

        async def handler(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
            if not self._waited:
                self._waited = True
                await self.wait_ready()
            local: list[dict[str, Any]] = []
            page_params = {k: v for k, v in params.items() if k != "cursor"}
            for _ in range(1000):
                page = await self._local_call(method, ctx, page_params)
                local.extend(page.get(key) or [])
                cursor = page.get("nextCursor")
                if not cursor:
                    break
                page_params = {**page_params, "cursor": cursor}
            items = local + self._views[kind]
            if kind == "tools" and not has_tasks(ctx.protocol_version):
                revision = ctx.protocol_version  # no execution.taskSupport without tasks
                items = [served_tool(tool, revision) for tool in items]
            size = self._server.page_size if self._server is not None else 100
            found, next_cursor = paginate_by_key(kind, items, field, params, size)
            result: dict[str, Any] = {key: found}
            if next_cursor is not None:
                result["nextCursor"] = next_cursor
            return result
        return handler

    async def _forward(self, ctx: Context, name: str, method: str, params: dict[str, Any],
                       timeout: float | None = None) -> dict[str, Any]:
        if not self._started:
            self.start()
        upstream = self.upstreams.get(name)
        if upstream is None:
            raise McpError(INVALID_PARAMS, f"upstream {name} was removed")
        forwarded = {k: v for k, v in params.items() if k not in _HOP_PARAMS}
        level = _log_level(ctx)
        if level is not None and upstream.client.era is Era.MODERN:
            forwarded["_meta"] = {META_LOG_LEVEL: level}  # a modern upstream logs only if asked
        relay = Relay(ctx, name)
        first = self._resumed.pop((ctx.session, ctx.request_id), None) \
            if self._resumed else None
        parks = self._server is not None and applies(ctx, upstream.client.era)
        # a parked call's time waiting for input is not the upstream's: parking times it
        limit = math.inf if parks else timeout

        def call() -> Awaitable[dict[str, Any]]:
            nonlocal first
            given, first = first, None  # a first round is gone on from once
            return upstream.request(method, forwarded, handlers=relay.handlers(),
                                    on_progress=relay.progress(), timeout=limit, first=given)
        if parks and self._server is not None:
            # a legacy upstream, a modern downstream: input requests park the call
            result = await self.parking.forward(ctx, self._server.state_key, relay, call,
                                                upstream.options.timeout)
            if result.get("resultType") == "input_required":
                return result
        else:
            result = await relay.run(call)
        return dict(self.router.publish_contents(name, hop_free(result)))

    async def _tools_call(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        route = self.router.route("tools", name) if isinstance(name, str) else None
        if route is None:
            return await self._local_call("tools/call", ctx, params)
        forwarded = {**params, "name": route[1]}
        if ctx.session.connection.is_task_request(ctx.request_id) and self._server is not None:
            upstream = self.upstreams.get(route[0])  # a task of ours (.tasks)
            if upstream is None:
                raise McpError(INVALID_PARAMS, f"upstream {route[0]} was removed")
            # a task's call may take as long as the task may live, not one request's time
            task = params.get("task")
            ttl = task.get("ttl") if isinstance(task, dict) else None
            lifetime = ttl / 1000 if isinstance(ttl, int | float) and ttl > 0 else math.inf
            return await start_task(self._server, ctx, str(name), upstream, route[1], params,
                                    self.router, lambda task_ctx: self._forward(
                                        task_ctx, route[0], "tools/call", forwarded,
                                        timeout=lifetime))
        return await self._forward(ctx, route[0], "tools/call", forwarded)

    async def _prompts_get(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        route = self.router.route("prompts", name) if isinstance(name, str) else None
        if route is None:
            return await self._local_call("prompts/get", ctx, params)
        return await self._forward(ctx, route[0], "prompts/get", {**params, "name": route[1]})

    def _resolve(self, uri: Any) -> tuple[str, str] | None:
        return self.router.resolve_uri(uri) if isinstance(uri, str) else None

    async def _resources_read(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        found = self._resolve(params.get("uri"))
        if found is None:
            return await self._local_call("resources/read", ctx, params)
        return await self._forward(ctx, found[0], "resources/read", {**params, "uri": found[1]})

    async def _subscribe(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        uri = params.get("uri")
        found = self._resolve(uri)
        if found is None:
            return await self._local_call("resources/subscribe", ctx, params)
        assert isinstance(uri, str)
        subscribers = self._subscribers.setdefault(uri, set())
        if not subscribers:
            await self._watch(ctx, found, True)
        subscribers.add(ctx.session)
        ctx.session.state.setdefault("subscriptions", set()).add(uri)
        return {}

    async def _unsubscribe(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        uri = params.get("uri")
        found = self._resolve(uri)
        if found is None:
            return await self._local_call("resources/unsubscribe", ctx, params)
        assert isinstance(uri, str)
        ctx.session.state.setdefault("subscriptions", set()).discard(uri)
        subscribers = self._subscribers.get(uri, set())
        subscribers.discard(ctx.session)
        subscribers.difference_update([s for s in subscribers if s.closed])
        if not subscribers:
            self._subscribers.pop(uri, None)
            if not self._listened.get(uri):
                await self._watch(ctx, found, False)
        return {}

    async def _listen(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        """A 2026-07-28 listen stream: its upstream resource URIs are watched upstream
        for as long as it is open."""
        wanted = params.get("notifications")
        uris = wanted.get("resourceSubscriptions") if isinstance(wanted, dict) else None
        ours = [u for u in uris if isinstance(u, str) and self._resolve(u) is not None] \
            if isinstance(uris, list) else []
        for uri in ours:
            self._listened[uri] = self._listened.get(uri, 0) + 1
            if self._listened[uri] == 1 and not self._subscribers.get(uri):
                await self._watch(ctx, self._resolve(uri) or ("", ""), True)
        try:
            return await self._local_call("subscriptions/listen", ctx, params)
        finally:
            with anyio.CancelScope(shield=True):
                for uri in ours:
                    self._listened[uri] -= 1
                    if not self._listened[uri]:
                        del self._listened[uri]
                        if not self._subscribers.get(uri):
                            found = self._resolve(uri)
                            if found is not None and found[0] in self.upstreams:
                                with anyio.move_on_after(5):
                                    await self._watch(ctx, found, False)

    async def _watch(self, ctx: Context, found: tuple[str, str], on: bool) -> None:
        """Start or stop hearing of one upstream resource's updates."""
        upstream = self.upstreams.get(found[0])
        if upstream is None:
            raise McpError(INVALID_PARAMS, f"upstream {found[0]} was removed")
        if upstream.client.era is Era.MODERN:
            mine = {self.router.resolve_uri(u) for u in [*self._subscribers, *self._listened]}
            upstream.watch_resources({uri for owner, uri in filter(None, mine)
                                      if owner == found[0]} | ({found[1]} if on else set()))
            return
        method = "resources/subscribe" if on else "resources/unsubscribe"
        await self._forward(ctx, found[0], method, {"uri": found[1]})

    async def _complete(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = params.get("ref")
        ref = ref if isinstance(ref, dict) else {}
        if ref.get("type") == "ref/prompt":
            route = self.router.route("prompts", str(ref.get("name")))
            if route is not None:
                return await self._complete_upstream(ctx, route[0], params,
                                                     {**ref, "name": route[1]})
        elif ref.get("type") == "ref/resource":
            found = self._resolve(ref.get("uri"))
            if found is not None:
                return await self._complete_upstream(ctx, found[0], params,
                                                     {**ref, "uri": found[1]})
        return await self._local_call("completion/complete", ctx, params)

    async def _complete_upstream(self, ctx: Context, name: str, params: dict[str, Any],
                                 ref: dict[str, Any]) -> dict[str, Any]:
        upstream = self.upstreams.get(name)
        if upstream is None or "completions" not in upstream.client.server_capabilities:
            return {"completion": {"values": []}}
        return await self._forward(ctx, name, "completion/complete", {**params, "ref": ref})


def _log_level(ctx: Context) -> str | None:
    """The level of log messages the downstream client wants for this request."""
    if ctx.request_meta is not None:
        return ctx.request_meta.log_level
    level = ctx.session.state.get("log_level")
    return level if isinstance(level, str) else None


def _builtin(server: Registration, method: str) -> RequestHandler:
    builtin = BUILTINS[method]

    async def local(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return await builtin(server, ctx, params)
    return local
