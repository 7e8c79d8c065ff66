"""The embeddable server: decorators, registries, and request handling.

:class:`Server` is what people embed::

    server = Server("notes", version="1.0")

    @server.tool()
    async def add(a: int, b: int) -> int:
        return a + b

    anyio.run(server.run_stdio)

It implements :class:`~mobius_rpc.runtime.session.SessionHandler`: the runtime
hands it validated requests, and it answers them from its registries.  Any
standard method can be taken over with :meth:`Server.request_handler` (the
low-level API); the built-in handling then steps aside for that method.

Per-session data (log level, resource subscriptions) is plain data in
``session.state`` so that a store can persist it.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup

from ..core.connection import Connection, Role
from ..core.errors import INVALID_PARAMS, McpError, RemoteProtocolError
from ..core.events import NotificationReceived, RequestReceived, SessionInitialized
from ..core.limits import Limits
from ..core.modern import META_SUBSCRIPTION_ID, CachePolicy
from ..core.request_state import open_state, seal_state
from ..core.revisions import LEGACY_REVISIONS, MODERN_REVISIONS, Era
from ..runtime.exchange import ExchangeSession
from ..runtime.session import Session
from ..transports.base import MessageStream, RoutedMessageStream
from .context import MRTR_METHODS, Context, InputRequired, level_passes
from .pagination import paginate
from .prompts import PromptRegistry
from .resources import ResourceRegistry
from .tasks import TaskManager
from .tools import ToolRegistry

__all__ = ("Server",)

log = logging.getLogger("mobius_rpc.server")

F = TypeVar("F", bound=Callable[..., Any])
RequestHandler = Callable[[Context, dict[str, Any]], Awaitable[dict[str, Any]]]
NotificationHandler = Callable[[Session, dict[str, Any]], Awaitable[None]]
Completer = Callable[..., Any]


@dataclass(eq=False, slots=True)
class _Listener:
    """One open ``subscriptions/listen`` stream (modern era)."""

    session: Session
    subscription_id: str | int
    accepted: dict[str, Any]


class Server:
    """An MCP server: tools, resources, prompts, completion, logging."""

    def __init__(self, name: str, version: str = "0.0.0", *, title: str | None = None,
                 instructions: str | None = None, revisions: tuple[str, ...] = LEGACY_REVISIONS,
                 modern_revisions: tuple[str, ...] = MODERN_REVISIONS,
                 limits: Limits | None = None, page_size: int = 100,
                 default_log_level: str = "info", validate: bool = True,
                 cache_policy: CachePolicy | None = None, state_key: bytes | None = None,
                 state_ttl: float = 600.0, task_manager: TaskManager | None = None) -> None:
        """``revisions``/``modern_revisions`` choose the eras served (either may be
        empty).  ``state_key`` seals MRTR ``requestState``; give every replica
        of a load-balanced server the same key (default: random per process).
        """
        self.info: dict[str, Any] = {"name": name, "version": version}
        if title:
            self.info["title"] = title
        self.instructions = instructions
        self.revisions = revisions
        self.modern_revisions = modern_revisions
        self.cache_policy = cache_policy or CachePolicy()
        self.state_key = state_key or os.urandom(32)
        self.state_ttl = state_ttl
        self.task_manager = task_manager or TaskManager()
        self.limits = limits or Limits()
        self.page_size = page_size
        self.default_log_level = default_log_level
        self.validate = validate
        self.tools = ToolRegistry(lambda: self._list_changed("tools"))
        self.resources = ResourceRegistry(lambda: self._list_changed("resources"))
        self.prompts = PromptRegistry(lambda: self._list_changed("prompts"))
        self._completers: dict[tuple[str, str], Completer] = {}
        self._request_handlers: dict[str, RequestHandler] = {}
        self._notification_handlers: dict[str, NotificationHandler] = {}
        self._sessions: set[Session] = set()
        self._listeners: set[_Listener] = set()
        #: capabilities() as of the last registration; every connection (one
        #: per stateless request) shares it, so it is dropped on any change
        self._capabilities: dict[str, Any] | None = None

    # ------------------------------------------------------------ decorators

    def tool(self, name: str | None = None, *, title: str | None = None,
             description: str | None = None, annotations: dict[str, Any] | None = None,
             icons: list[dict[str, Any]] | None = None, meta: dict[str, Any] | None = None,
             structured: bool = True, task_support: str = "forbidden",
             input_schema: dict[str, Any] | None = None) -> Callable[[F], F]:
        """Register a function as a tool; its type hints become the input schema.

        ``task_support`` ("optional"/"required") lets 2025-11-25 clients run it as
        a task they poll (``tools/call`` with ``params.task``).  ``input_schema``
        publishes and enforces a hand-written schema instead of the derived one.
        """
        def register(fn: F) -> F:
            self.tools.add(fn, name=name, title=title, description=description,
                           annotations=annotations, icons=icons, meta=meta, structured=structured,
                           task_support=task_support, input_schema=input_schema)
            return fn
        return register

    def resource(self, uri: str, *, name: str | None = None, title: str | None = None,
                 description: str | None = None, mime_type: str | None = None,
                 annotations: dict[str, Any] | None = None,
                 icons: list[dict[str, Any]] | None = None,
                 meta: dict[str, Any] | None = None) -> Callable[[F], F]:
        """Register a resource; a URI with ``{...}`` expressions is an RFC 6570 template."""
        def register(fn: F) -> F:
            self.resources.add(uri, fn, name=name, title=title, description=description,
                               mime_type=mime_type, annotations=annotations, icons=icons,
                               meta=meta)
            return fn
        return register

    def prompt(self, name: str | None = None, *, title: str | None = None,
               description: str | None = None, icons: list[dict[str, Any]] | None = None,
               meta: dict[str, Any] | None = None) -> Callable[[F], F]:
        def register(fn: F) -> F:
            self.prompts.add(fn, name=name, title=title, description=description, icons=icons,
                             meta=meta)
            return fn
        return register

    def completion(self, ref_type: str, ref: str) -> Callable[[F], F]:
        """Register argument completion for a prompt (``"ref/prompt"``, prompt name) or a
        resource template (``"ref/resource"``, template string).

        The function gets ``(argument_name, value, context_arguments)`` and returns a
        list of strings (or a ``{"values", "total", "hasMore"}`` dict).
        """
        if ref_type not in ("ref/prompt", "ref/resource"):
            raise ValueError("ref_type is 'ref/prompt' or 'ref/resource'")

        def register(fn: F) -> F:
            self._completers[(ref_type, ref)] = fn
            self._capabilities = None
            return fn
        return register

    def request_handler(self, method: str) -> Callable[[RequestHandler], RequestHandler]:
        """Low-level API: take over a standard request method entirely.

        The handler gets ``(ctx, params)`` (already validated) and returns the
        result dict, which is validated against the method's result schema.
        """
        def register(fn: RequestHandler) -> RequestHandler:
            self._request_handlers[method] = fn
            self._capabilities = None
            return fn
        return register

    def notification_handler(self, method: str
                             ) -> Callable[[NotificationHandler], NotificationHandler]:
        """Low-level API: react to a client notification (e.g. roots list_changed)."""
        def register(fn: NotificationHandler) -> NotificationHandler:
            self._notification_handlers[method] = fn
            return fn
        return register

    # ------------------------------------------------------------ capabilities

    def capabilities(self) -> dict[str, Any]:
        caps: dict[str, Any] = {"logging": {}}
        if len(self.tools) or "tools/call" in self._request_handlers:
            caps["tools"] = {"listChanged": True}
        if len(self.resources) or "resources/read" in self._request_handlers:
            caps["resources"] = {"subscribe": True, "listChanged": True}
        if len(self.prompts) or "prompts/get" in self._request_handlers:
            caps["prompts"] = {"listChanged": True}
        if self._completers or "completion/complete" in self._request_handlers:
            caps["completions"] = {}
        if self.tools.supports_tasks():
            caps["tasks"] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
        return caps

    def connection(self, *, legacy: bool = True) -> Connection:
        """A fresh sans-I/O connection configured for this server.

        ``legacy=False`` makes a modern-only connection (a stateless HTTP
        request, which has no initialize to fall back on).
        """
        if self._capabilities is None:
            self._capabilities = self.capabilities()
        return Connection(Role.SERVER, info=self.info, capabilities=self._capabilities,
                          instructions=self.instructions,
                          revisions=self.revisions if legacy else (),
                          modern_revisions=self.modern_revisions, limits=self.limits,
                          validate=self.validate, cache_policy=self.cache_policy)

    # ---------------------------------------------------------------- running

    async def serve(self, stream: MessageStream, *, legacy: bool = True) -> None:
        """Serve one client on ``stream`` until it closes (modern only if not ``legacy``)."""
        session = Session(self.connection(legacy=legacy), stream, self)
        await session.run()

    async def serve_modern(self, stream: MessageStream) -> None:
        """Serve one stateless 2026-07-28 exchange on ``stream``."""
        await self.serve(stream, legacy=False)

    async def serve_exchange(self, body: bytes, decoded: Any, stream: RoutedMessageStream,
                             spawner: TaskGroup, *, scope: anyio.CancelScope | None = None
                             ) -> None:
        """Serve one stateless 2026-07-28 POST body in the calling task.

        The cheap form of :meth:`serve_modern` for transports that hold the
        whole exchange (Streamable HTTP): no receive loop or task group of its
        own; ``decoded`` is ``body`` already parsed (a ``jsonrpc.Classified``
        when the envelopes were checked too; or None), ``spawner``
        runs what handlers start beside themselves; ``scope``, if given, is
        a cancel scope not yet entered, which the exchange enters around a
        request that may send before its answer (:meth:`may_send_early`):
        cancelling it (the client left, or :meth:`Session.close`) stops that
        request; the others cannot be asked to stop before they answer.
        """
        session = ExchangeSession(self.connection(legacy=False), stream, self, spawner,
                                  scope=scope)
        await session.serve_once(body, decoded)

    def http_app(self, **options: Any) -> Any:
        """An ASGI app serving this server over Streamable HTTP (both eras).

        Options go to :class:`~mobius_rpc.transports.streamable_http.StreamableHTTPTransport`
        (``origin_policy``, ``max_body_bytes``, ``session_idle_timeout`` ...).
        """
        from ..transports.streamable_http import StreamableHTTPTransport
        options.setdefault("header_parameters", self.tools.header_parameters)
        return StreamableHTTPTransport(self.serve, serve_modern=self.serve_modern,
                                       exchange=self.serve_exchange,
                                       legacy_revisions=self.revisions,
                                       modern_revisions=self.modern_revisions, **options)

    def asgi_app(self, **options: Any) -> Any:
        """Every network transport at once (an :class:`McpTransports`; ``.app`` is the
        Starlette application): Streamable HTTP at ``/mcp``, HTTP+SSE at ``/sse``,
        WebSocket at ``/ws``."""
        from ..transports.asgi import McpTransports
        options.setdefault("header_parameters", self.tools.header_parameters)
        return McpTransports(self.serve, serve_modern=self.serve_modern,
                             exchange=self.serve_exchange,
                             legacy_revisions=self.revisions,
                             modern_revisions=self.modern_revisions, limits=self.limits,
                             **options)

    async def run_stdio(self) -> None:
        """Serve one client on this process's stdin/stdout; ends on EOF or SIGTERM."""
        from ..transports.stdio import StdioTransport
        await _serve_until_signal(self, StdioTransport(limits=self.limits))

    # ------------------------------------------------------- SessionHandler API

    def session_initialized(self, session: Session, event: SessionInitialized) -> None:
        session.state.setdefault("log_level", self.default_log_level)
        session.state.setdefault("subscriptions", set())
        self._sessions.add(session)

    def session_closed(self, session: Session) -> None:
        self._sessions.discard(session)

    def may_send_early(self, request: RequestReceived) -> bool:
        """See :meth:`SessionHandler.may_send_early`: only application code that
        gets a :class:`Context` (or a custom request handler) can send early."""
        method = request.method
        if method in self._request_handlers:
            return True
        if method == "tools/call":
            params = request.params
            name = params.get("name")
            tool = self.tools.get(name) if isinstance(name, str) else None
            return tool is not None and (tool.signature.context_param is not None
                                         or "task" in params)
        return method not in _QUIET_METHODS

    async def handle_notification(self, session: Session, note: NotificationReceived) -> None:
        handler = self._notification_handlers.get(note.method)
        if handler is not None:
            await handler(session, note.params)

    async def handle_request(self, session: Session, request: RequestReceived
                             ) -> dict[str, Any]:
        params = request.params
        mrtr = request.method in MRTR_METHODS and session.connection.era is Era.MODERN
        answers = self._gather_answers(request) if mrtr else None
        ctx = Context(self, session, request.id, request.method, params, answers)
        try:
            custom = self._request_handlers.get(request.method)
            if custom is not None:
                return await custom(ctx, params)
            builtin = _BUILTINS.get(request.method)
            if builtin is None:
                raise McpError(-32601, f"Method not found: {request.method}")
            return await builtin(self, ctx, params)
        except InputRequired as needed:
            if not mrtr:
                raise McpError(-32603, "Internal error: input requested outside MRTR") from None
            gathered = ctx.answers
            state = seal_state(self.state_key, request.method, params, gathered,
                               now=time.time(), ttl=self.state_ttl)
            return {"resultType": "input_required", "inputRequests": needed.requests,
                    "requestState": state}

    def _gather_answers(self, request: RequestReceived) -> dict[str, Any]:
        """Answers of earlier rounds (sealed in requestState) plus this retry's."""
        params = request.params
        answers: dict[str, Any] = {}
        if "requestState" in params:
            try:
                answers = open_state(self.state_key, params["requestState"], request.method,
                                     params, now=time.time())
            except RemoteProtocolError as exc:
                log.warning("refused requestState on %s (id %r): %s", request.method,
                            request.id, exc.message)
                raise
        responses = params.get("inputResponses")
        if isinstance(responses, dict):
            answers.update(responses)
        return answers

    # ----------------------------------------------------------- the builtins

    async def _tools_list(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        page, cursor = paginate("tools", self.tools.definitions(), params, self.page_size)
        return _page({"tools": list(page)}, cursor)

    async def _tools_call(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = params["name"]
        tool = self.tools.get(name)
        as_task = ctx.session.connection.is_task_request(ctx.request_id)
        if tool is not None and as_task:
            if tool.task_support == "forbidden":
                raise McpError(INVALID_PARAMS, f"Tool {name} cannot run as a task")
            task_ctx = Context(self, ctx.session, ctx.request_id, ctx.method, params)
            record = self.task_manager.start(
                ctx.session, params.get("task") or {},
                lambda: self.tools.call(name, params.get("arguments"), task_ctx))
            task_ctx.task_id = record["task"]["taskId"]
            return record
        if tool is not None and tool.task_support == "required":
            raise McpError(-32601, f"Tool {name} must be called as a task (params.task)")
        return await self.tools.call(name, params.get("arguments"), ctx)

    async def _tasks_get(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return await self.task_manager.get(ctx.session, params)

    async def _tasks_result(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return await self.task_manager.result(ctx.session, params)

    async def _tasks_list(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return await self.task_manager.list(ctx.session, params)

    async def _tasks_cancel(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return await self.task_manager.cancel(ctx.session, params)

    async def _resources_list(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        page, cursor = paginate("resources", self.resources.definitions(), params,
                                self.page_size)
        return _page({"resources": list(page)}, cursor)

    async def _templates_list(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        page, cursor = paginate("templates", self.resources.template_definitions(), params,
                                self.page_size)
        return _page({"resourceTemplates": list(page)}, cursor)

    async def _resources_read(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return await self.resources.read(params["uri"], ctx)

    async def _subscribe(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ctx.session.state.setdefault("subscriptions", set()).add(params["uri"])
        return {}

    async def _unsubscribe(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ctx.session.state.setdefault("subscriptions", set()).discard(params["uri"])
        return {}

    async def _prompts_list(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        page, cursor = paginate("prompts", self.prompts.definitions(), params, self.page_size)
        return _page({"prompts": list(page)}, cursor)

    async def _prompts_get(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return await self.prompts.render(params["name"], params.get("arguments"), ctx)

    async def _set_level(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ctx.session.state["log_level"] = params["level"]
        return {}

    async def _discover(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {"supportedVersions": list(self.modern_revisions),
                                  "capabilities": self.capabilities()}
        if self.instructions:
            result["instructions"] = self.instructions
        return result

    async def _listen(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        """``subscriptions/listen``: acknowledge, then stream opted-in notifications
        until the client cancels (the request never completes on its own)."""
        wanted = params.get("notifications") or {}
        caps = self.capabilities()
        accepted: dict[str, Any] = {}
        for flag, kind in (("toolsListChanged", "tools"), ("promptsListChanged", "prompts"),
                           ("resourcesListChanged", "resources")):
            if wanted.get(flag) is True and (caps.get(kind) or {}).get("listChanged"):
                accepted[flag] = True
        uris = wanted.get("resourceSubscriptions")
        if isinstance(uris, list) and (caps.get("resources") or {}).get("subscribe"):
            accepted["resourceSubscriptions"] = [u for u in uris if isinstance(u, str)]
        listener = _Listener(ctx.session, ctx.request_id, accepted)
        self._listeners.add(listener)
        try:
            await ctx.session.notify("notifications/subscriptions/acknowledged", {
                "notifications": accepted,
                "_meta": {META_SUBSCRIPTION_ID: ctx.request_id}})
            await anyio.sleep_forever()
        finally:
            self._listeners.discard(listener)
        raise AssertionError("unreachable")

    async def _complete(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = params["ref"]
        ref_type = ref.get("type")
        key = ref.get("name") if ref_type == "ref/prompt" else ref.get("uri")
        argument = params["argument"]
        context_args = (params.get("context") or {}).get("arguments") or {}
        if ref_type == "ref/prompt" and self.prompts.get(str(key)) is None:
            raise McpError(INVALID_PARAMS, f"Unknown prompt: {key}")
        if ref_type == "ref/resource" and self.resources.find_template(str(key)) is None:
            raise McpError(INVALID_PARAMS, f"Unknown resource template: {key}")
        completer = self._completers.get((str(ref_type), str(key)))
        values: list[str] = []
        extra: dict[str, Any] = {}
        if completer is not None:
            outcome = completer(argument["name"], argument["value"], context_args)
            if inspect.isawaitable(outcome):
                outcome = await outcome
            if isinstance(outcome, dict):
                values = list(outcome.get("values", []))
                extra = {k: outcome[k] for k in ("total", "hasMore") if k in outcome}
            else:
                values = list(outcome or [])
        # The spec caps one answer at 100 values.
        completion: dict[str, Any] = {"values": values[:100], **extra}
        if len(values) > 100:
            completion.setdefault("total", len(values))
            completion["hasMore"] = True
        return {"completion": completion}

    # --------------------------------------------------- server-side pushes

    async def send_log(self, session: Session, level: str, data: Any,
                       logger: str | None = None, threshold: str | None = None) -> None:
        """A ``notifications/message`` to one session, filtered by its level
        (or by ``threshold``, the level a modern-era request asked for)."""
        if threshold is None:
            threshold = session.state.get("log_level", self.default_log_level)
        if not level_passes(level, threshold) or session.closed:
            return
        params: dict[str, Any] = {"level": level, "data": data}
        if logger:
            params["logger"] = logger
        await session.notify("notifications/message", params)

    async def notify_resource_updated(self, uri: str) -> None:
        """Tell every session subscribed to ``uri`` that it changed."""
        for session in list(self._sessions):
            if uri in session.state.get("subscriptions", ()) and not session.closed:
                await session.notify("notifications/resources/updated", {"uri": uri},
                                     unrelated=True)
        for listener in list(self._listeners):
            if uri in listener.accepted.get("resourceSubscriptions", ()):
                listener.session.notify_soon("notifications/resources/updated", {
                    "uri": uri, "_meta": {META_SUBSCRIPTION_ID: listener.subscription_id}},
                    related=listener.subscription_id)

    def _list_changed(self, kind: str) -> None:
        self._capabilities = None
        method = f"notifications/{kind}/list_changed"
        for session in list(self._sessions):
            if not session.closed and session.connection.can_send(method):
                session.notify_soon(method)
        flag = f"{kind}ListChanged"
        for listener in list(self._listeners):
            if listener.accepted.get(flag):
                listener.session.notify_soon(
                    method, {"_meta": {META_SUBSCRIPTION_ID: listener.subscription_id}},
                    related=listener.subscription_id)


def _page(result: dict[str, Any], cursor: str | None) -> dict[str, Any]:
    if cursor is not None:
        result["nextCursor"] = cursor
    return result


#: built-in methods that run no application code: they send nothing before their answer
_QUIET_METHODS = frozenset(("ping", "tools/list", "resources/list", "resources/templates/list",
                            "prompts/list", "server/discover"))

_BUILTINS: dict[str, Callable[[Server, Context, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "tools/list": Server._tools_list,
    "tools/call": Server._tools_call,
    "resources/list": Server._resources_list,
    "resources/templates/list": Server._templates_list,
    "resources/read": Server._resources_read,
    "resources/subscribe": Server._subscribe,
    "resources/unsubscribe": Server._unsubscribe,
    "prompts/list": Server._prompts_list,
    "prompts/get": Server._prompts_get,
    "logging/setLevel": Server._set_level,
    "completion/complete": Server._complete,
    "tasks/get": Server._tasks_get,
    "tasks/result": Server._tasks_result,
    "tasks/list": Server._tasks_list,
    "tasks/cancel": Server._tasks_cancel,
    "server/discover": Server._discover,
    "subscriptions/listen": Server._listen,
}


async def _serve_until_signal(server: Server, stream: MessageStream) -> None:
    import signal

    async with anyio.create_task_group() as tg:
        async def watch_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch_signals)
        await server.serve(stream)
        tg.cancel_scope.cancel()

