"""The embeddable server: registration, dispatch and the transports, put together.

:class:`Server` is what people embed::

    server = Server("notes", version="1.0")

    @server.tool()
    async def add(a: int, b: int) -> int:
        return a + b

    anyio.run(server.run_stdio)

It is a :class:`~.registration.Registration` (decorators, registries,
capabilities) with a :class:`~.dispatch.Dispatcher` (``server.dispatcher``,
the runtime's session handler: built-in methods, MRTR state, pushes) and the
entry points that serve them on a stream, over stdio, or as ASGI apps.  Any
standard method can be taken over with :meth:`request_handler` (the low-level
API); middleware (:meth:`use`) wraps every request, for access checks, audit
or forwarding, without subclassing.

Per-session data (log level, resource subscriptions) is plain data in
``session.state`` so that a store can persist it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..core.connection import Connection, Role
from ..core.types import TransportContext
from ..runtime.exchange import ExchangeSession
from ..runtime.session import Session
from ..transports.base import MessageStream, RoutedMessageStream
from .dispatch import Dispatcher, Middleware
from .registration import Registration
from .relay import SessionRelay, take_up
from .shared_tasks import SharedTasks

__all__ = ("Server",)


class Server(Registration):
    """An MCP server: tools, resources, prompts, completion, logging.

    Security is three optional parts, all off by default (an embedded server
    answers whoever reaches it, as before; ``mobius serve --http`` turns them
    on, see docs/security.md and :func:`mobius_rpc.security.serving.secure`):

    * ``authenticator``: a function from an ASGI app to the app behind
      authentication (:class:`mobius_rpc.security.serving.Authenticator`); every
      network app this server makes (:meth:`asgi_app`, :meth:`http_app`) is
      wrapped in it, so no route or transport bypasses it;
    * ``policy``: a middleware run outside every other one, which decides and
      filters (:class:`mobius_rpc.security.middleware.SecurityMiddleware`);
    * ``audit``: the audit sink (:class:`mobius_rpc.security.audit.AuditLog`)
      handed to the policy and the authenticator (``use_audit``); None: the
      policy keeps its own log on its store.
    """

    def __init__(self, *args: Any, authenticator: Callable[[Any], Any] | None = None,
                 policy: Middleware | None = None, audit: Any = None, **options: Any) -> None:
        super().__init__(*args, **options)
        self.authenticator: Callable[[Any], Any] | None = None
        self.policy: Middleware | None = None
        self.audit: Any = None
        if authenticator is not None or policy is not None or audit is not None:
            self.secure(authenticator=authenticator, policy=policy, audit=audit)

    def secure(self, *, authenticator: Callable[[Any], Any] | None = None,
               policy: Middleware | None = None, audit: Any = None) -> None:
        """Install the security parts (see the class docstring) after construction."""
        if audit is not None:
            self.audit = audit
            for part in (authenticator, policy):
                hand_over = getattr(part, "use_audit", None)
                if hand_over is not None:
                    hand_over(audit)
        if authenticator is not None:
            self.authenticator = authenticator
        if policy is not None:
            self.policy = policy
            self.dispatcher.use(policy, outermost=True)

    def _guarded(self, app: Any) -> Any:
        return app if self.authenticator is None else self.authenticator(app)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        """How this server answers (made on first use; sessions use it)."""
        return Dispatcher(self)

    def use(self, middleware: Middleware) -> None:
        """Run ``middleware(ctx, call_next)`` around every request (see :mod:`.dispatch`)."""
        self.dispatcher.use(middleware)

    # ---------------------------------------------------------- pushes

    async def send_log(self, session: Session, level: str, data: Any,
                       logger: str | None = None, threshold: str | None = None) -> None:
        """A ``notifications/message`` to one session, filtered by its level."""
        await self.dispatcher.send_log(session, level, data, logger, threshold)

    async def notify_resource_updated(self, uri: str) -> None:
        """Tell every session subscribed to ``uri`` that it changed."""
        await self.dispatcher.notify_resource_updated(uri)

    # ---------------------------------------------------------- running

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
        session = Session(self.connection(legacy=legacy), stream, self.dispatcher)
        prefix = getattr(stream, "id_prefix", None)
        if prefix is not None:  # a legacy session replicas share (see share_sessions)
            session.connection.id_prefix = prefix
            take_up(session, getattr(stream, "restored", None),
                    self.dispatcher.session_initialized)
        await session.run()

    def share_sessions(self, relay: SessionRelay) -> None:
        """Serve legacy sessions that other processes serve too, through ``relay``
        (the transport's shared-session host): state and resource updates go
        through it, so each replica sees the others' (see :mod:`.relay`)."""
        self.relay = relay
        relay.on_resource_updated(self.dispatcher.notify_listeners)
        old = self.task_manager
        tasks = SharedTasks(relay.store.tasks, replica=relay.replica,
                            cancelled=relay.task_cancelled,
                            default_ttl_ms=old.default_ttl_ms, max_ttl_ms=old.max_ttl_ms,
                            poll_interval_ms=old.poll_interval_ms, page_size=old.page_size)
        relay.on_task_cancelled(tasks.stop)
        self.task_manager = tasks

    async def serve_modern(self, stream: MessageStream) -> None:
        """Serve one stateless 2026-07-28 exchange on ``stream``."""
        await self.serve(stream, legacy=False)

    async def serve_exchange(self, body: bytes, decoded: Any, stream: RoutedMessageStream,
                             spawner: TaskGroup, *, scope: anyio.CancelScope | None = None,
                             transport: TransportContext | None = None) -> None:
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
        session = ExchangeSession(self.connection(legacy=False), stream, self.dispatcher, spawner,
                                  scope=scope)
        await session.serve_once(body, decoded, transport)

    def http_app(self, **options: Any) -> Any:
        """An ASGI app serving this server over Streamable HTTP (both eras).

        Options go to :class:`~mobius_rpc.transports.streamable_http.StreamableHTTPTransport`
        (``origin_policy``, ``max_body_bytes``, ``session_idle_timeout`` ...); with
        ``shared`` (a ``SharedSessions``), legacy sessions live in its store, shared
        with the other replicas on it.  With an ``authenticator`` the transport comes
        back behind it.
        """
        from ..transports.streamable_http import StreamableHTTPTransport
        options.setdefault("header_parameters", self.tools.header_parameters)
        if options.get("shared") is not None:
            self.share_sessions(options["shared"])
        return self._guarded(StreamableHTTPTransport(
            self.serve, serve_modern=self.serve_modern, exchange=self.serve_exchange,
            legacy_revisions=self.revisions, modern_revisions=self.modern_revisions, **options))

    def asgi_app(self, **options: Any) -> Any:
        """Every network transport at once (an :class:`McpTransports`; ``.app`` is the
        Starlette application): Streamable HTTP at ``/mcp``, HTTP+SSE at ``/sse``,
        WebSocket at ``/ws``."""
        from ..transports.asgi import McpTransports
        options.setdefault("header_parameters", self.tools.header_parameters)
        if options.get("shared") is not None:
            self.share_sessions(options["shared"])
        transports = McpTransports(self.serve, serve_modern=self.serve_modern,
                                   exchange=self.serve_exchange,
                                   legacy_revisions=self.revisions,
                                   modern_revisions=self.modern_revisions, limits=self.limits,
                                   **options)
        transports.app = self._guarded(transports.app)  # every route, /mcp's fast path too
        return transports

    async def run_stdio(self, *, principal: Any = None) -> None:
        """Serve one client on this process's stdin/stdout; ends on EOF or SIGTERM.

        ``principal``: the local identity every request acts as (``mobius serve
        --stdio`` passes the OS user, owner of a personal organization)."""
        from ..transports.stdio import StdioTransport
        await _serve_until_signal(self, StdioTransport(limits=self.limits, principal=principal))


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

