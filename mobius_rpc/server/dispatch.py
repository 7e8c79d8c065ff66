"""How a server answers: the dispatch half, the runtime's session handler.

:class:`Dispatcher` turns each validated request into a :class:`Context` and
an answer: through the middleware chain (where a policy checks access, an
audit sink records, a gateway forwards), then a method taken over with
``request_handler`` or a built-in (:mod:`.builtins`).  It seals the state of
multi round-trip requests (2026-07-28 ``InputRequiredResult``) and fans
server pushes out to the sessions and ``subscriptions/listen`` streams it
serves.  Everything it answers from lives in a
:class:`~.registration.Registration`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from ..core.errors import INTERNAL_ERROR, METHOD_NOT_FOUND, McpError, RemoteProtocolError
from ..core.events import NotificationReceived, RequestReceived, SessionInitialized
from ..core.jsonrpc import dumps
from ..core.modern import META_SUBSCRIPTION_ID
from ..core.request_state import open_state, seal_state
from ..runtime.session import Session
from .builtins import BUILTINS, QUIET_METHODS
from .context import MRTR_METHODS, Context, InputRequired, send_log
from .registration import Registration

__all__ = ("Dispatcher", "Middleware", "Next", "routes_next")

log = logging.getLogger("mobius_rpc.server")

#: the rest of the chain: answers the request its context describes
Next = Callable[[Context], Awaitable[dict[str, Any]]]
#: ``(ctx, call_next) -> result``: may refuse (raise McpError), answer itself,
#: or call ``call_next(ctx)`` and look at (or filter) what it returns
Middleware = Callable[[Context, Next], Awaitable[dict[str, Any]]]


@dataclass(eq=False, slots=True)
class _Listener:
    """One open ``subscriptions/listen`` stream (modern era)."""

    session: Session
    subscription_id: str | int
    accepted: dict[str, Any]


class Dispatcher:
    """The :class:`~..runtime.session.SessionHandler` of a server."""

    def __init__(self, server: Registration) -> None:
        self.server = server
        self.middleware: list[Middleware] = []
        #: whether some middleware may send before its answer (see :meth:`use`)
        self._middleware_sends = False
        self._chain: Next = self._route
        self._sessions: set[Session] = set()
        self._listeners: set[_Listener] = set()
        server.on_list_changed = self.list_changed

    def use(self, middleware: Middleware, *, outermost: bool = False) -> None:
        """Run ``middleware`` around every request; the first added is outermost
        (``outermost=True``: around everything added so far, as access control must be)."""
        if outermost:
            self.middleware.insert(0, middleware)
        else:
            self.middleware.append(middleware)
        # a middleware that only decides, records or refuses (the security policy)
        # says so with ``sends_early = False``: it does not make every request one
        # that may send before its answer (such a request costs a cancel scope)
        self._middleware_sends = any(getattr(m, "sends_early", True) for m in self.middleware)
        chain: Next = self._route
        for outer in reversed(self.middleware):
            chain = _link(outer, chain)
        self._chain = chain

    # ------------------------------------------------------- SessionHandler API

    def session_initialized(self, session: Session, event: SessionInitialized) -> None:
        session.state.setdefault("log_level", self.server.default_log_level)
        session.state.setdefault("subscriptions", set())
        self._sessions.add(session)

    def session_closed(self, session: Session) -> None:
        self._sessions.discard(session)

    def may_send_early(self, request: RequestReceived) -> bool:
        """Only application code that gets a :class:`Context` (or a custom
        request handler, or middleware) can send before its answer."""
        method = request.method
        if self._middleware_sends or method in self.server.request_handlers:
            return True
        if method == "tools/call":
            params = request.params
            name = params.get("name")
            tool = self.server.tools.get(name) if isinstance(name, str) else None
            return tool is not None and (tool.signature.context_param is not None
                                         or "task" in params)
        return method not in QUIET_METHODS

    def take_request(self, session: Session, request: RequestReceived
                     ) -> Callable[[], None] | None:
        """Offer ``request`` to the server's lane (a gateway relaying it without a
        task) before a task is started for it; never with middleware installed,
        which must see every request."""
        lane = self.server.lane
        if lane is None or self.middleware:
            return None
        return lane(session, request)

    async def handle_notification(self, session: Session, note: NotificationReceived) -> None:
        handler = self.server.notification_handlers.get(note.method)
        if handler is not None:
            await handler(session, note.params)

    async def handle_request(self, session: Session, request: RequestReceived
                             ) -> dict[str, Any]:
        mrtr = request.meta is not None and request.method in MRTR_METHODS
        answers = self._gather_answers(request) if mrtr else None
        ctx = Context(self.server, session, request, answers)
        try:
            if self.middleware:
                return await self._chain(ctx)
            # No middleware: what _route does, without a coroutine more per request.
            method = request.method
            custom = self.server.request_handlers.get(method)
            if custom is not None:
                return await custom(ctx, request.params)
            builtin = BUILTINS.get(method)
            if builtin is not None:
                return await builtin(self.server, ctx, request.params)
            return await self._route(ctx)
        except InputRequired as needed:
            if not mrtr:
                raise McpError(INTERNAL_ERROR,
                               "Internal error: input requested outside MRTR") from None
            server = self.server
            state = seal_state(server.state_key, request.method, request.params, ctx.answers,
                               now=time.time(), ttl=server.state_ttl)
            return {"resultType": "input_required", "inputRequests": needed.requests,
                    "requestState": state}

    def _route(self, ctx: Context) -> Awaitable[dict[str, Any]]:
        """The end of the chain: a taken-over method, or a built-in.  It hands back
        the handler's awaitable instead of awaiting it in a coroutine of its own:
        one coroutine less per request behind a middleware (its ``await
        call_next(ctx)`` awaits the handler directly)."""
        method = ctx.method
        custom = self.server.request_handlers.get(method)
        if custom is not None:
            return custom(ctx, ctx.params)
        if method == "subscriptions/listen":
            return self.listen(ctx, ctx.params)
        builtin = BUILTINS.get(method)
        if builtin is None:
            raise McpError(METHOD_NOT_FOUND, f"Method not found: {method}")
        return builtin(self.server, ctx, ctx.params)

    def _gather_answers(self, request: RequestReceived) -> dict[str, Any]:
        """Answers of earlier rounds (sealed in requestState) plus this retry's."""
        params = request.params
        answers: dict[str, Any] = {}
        if "requestState" in params:
            try:
                answers = open_state(self.server.state_key, params["requestState"],
                                     request.method, params, now=time.time())
            except RemoteProtocolError as exc:
                log.warning("refused requestState on %s (id %r): %s", request.method,
                            request.id, exc.message)
                raise
        responses = params.get("inputResponses")
        if isinstance(responses, dict):
            answers.update(responses)
        return answers

    async def listen(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        """``subscriptions/listen``: acknowledge, then stream opted-in notifications
        until the client cancels (the request never completes on its own).  Public so
        that a handler taking the method over (a gateway) can do its part around it."""
        wanted = params.get("notifications") or {}
        caps = self.server.capabilities()
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

    # --------------------------------------------------- server-side pushes

    async def send_log(self, session: Session, level: str, data: Any,
                       logger: str | None = None, threshold: str | None = None) -> None:
        """A ``notifications/message`` to one session, filtered by its level
        (or by ``threshold``, the level a modern-era request asked for)."""
        await send_log(session, level, data, logger=logger,
                       threshold=threshold or self.server.default_log_level,
                       per_session=threshold is None)

    async def notify_resource_updated(self, uri: str) -> None:
        """Tell every session subscribed to ``uri`` that it changed.

        With replicas sharing the legacy sessions (``server.relay``), the relay
        reaches their subscribers wherever their streams are held, and every
        replica's listeners (:meth:`notify_listeners`); sessions of this process
        are not sent to directly, which would send twice.
        """
        relay = self.server.relay
        if relay is not None:
            await relay.resource_updated(uri, dumps(
                {"jsonrpc": "2.0", "method": "notifications/resources/updated",
                 "params": {"uri": uri}}))
            return
        for session in list(self._sessions):
            if uri in session.state.get("subscriptions", ()) and not session.closed:
                await session.notify("notifications/resources/updated", {"uri": uri},
                                     unrelated=True)
        self.notify_listeners(uri)

    def notify_listeners(self, uri: str) -> None:
        """Tell this process's ``subscriptions/listen`` streams that ``uri`` changed."""
        for listener in list(self._listeners):
            if uri in listener.accepted.get("resourceSubscriptions", ()):
                listener.session.notify_soon("notifications/resources/updated", {
                    "uri": uri, "_meta": {META_SUBSCRIPTION_ID: listener.subscription_id}},
                    related=listener.subscription_id)

    def list_changed(self, kind: str) -> None:
        """Tell every session and listener that the ``kind`` list changed."""
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


def routes_next(call_next: Next) -> bool:
    """Whether a middleware's ``call_next`` is the dispatcher's own routing: no other
    middleware runs between it and the handlers (it is the innermost)."""
    return getattr(call_next, "__func__", None) is Dispatcher._route


def _link(middleware: Middleware, call_next: Next) -> Next:
    # a plain function handing back the middleware's awaitable: no coroutine of
    # its own per request and link
    def step(ctx: Context) -> Awaitable[dict[str, Any]]:
        return middleware(ctx, call_next)
    return step
