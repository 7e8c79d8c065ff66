"""The gateway's lane: a downstream call relayed at the cost of its messages.

The general path (:meth:`Gateway._forward`) serves a call the way every
request is served: a task, a :class:`~..server.context.Context`, a
:class:`.relay.Relay`, the client's request machinery (an event to wait on,
a timer, the retry loop of the modern era), then the answer from that task.
For a gateway that is most of what a call costs, several times what the
upstream spends on it.  Most calls need none of it: one request goes up, one
answer comes back, perhaps with progress in between.

The lane serves such calls inside the two receive loops.  The downstream
session offers each request it receives to ``take_request`` before it
starts a task; the lane forwards an eligible one at once
(:meth:`Upstream.forward`, which writes it to the upstream without waiting)
and the upstream's receive loop hands the answer back
(:meth:`Session.answer_taken`), written downstream without waiting where the
stream allows.  Two loop turns per call, no task.

A call is eligible (anything else takes the general path, unchanged) when:

* it is ``tools/call``, ``prompts/get`` or ``resources/read`` of an upstream
  item, and the gateway still serves that method (no later layer took it over);
* the server has no middleware (a security policy, an audit sink or limits
  run on the general path: they are async and around the handler);
* it is not a task-augmented call, nor a 2026-07-28 retry carrying answers,
  nor a 2026-07-28 call to a legacy upstream (whose questions would park it);
* the upstream is connected with its breaker closed (see :meth:`Upstream.forward`).

What the general path does, the lane does too: the names and URIs mapped
both ways, the hop's own fields dropped, the upstream's timeout and breaker,
progress under the downstream client's own token, cancellation both ways
(a downstream ``notifications/cancelled`` or the end of the downstream
session cancels upstream; an upstream timeout cancels there and fails the
call), and whatever the upstream asks or logs meanwhile (sampling,
elicitation, roots, log messages) relayed to this caller by a
:class:`.relay.Relay` made the first time it is needed.  Two outcomes hand
the call back to the general path (``Session.serve_taken``): a 2026-07-28
upstream's ``InputRequiredResult`` (that path asks the caller and retries
with the answers, going on from the round the lane got), and an expired
upstream HTTP session (that path renews it and retries).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..client.client import Client
from ..client.session import CallHandlers
from ..core.errors import INTERNAL_ERROR, LocalProtocolError, McpError
from ..core.events import RequestReceived
from ..core.modern import META_LOG_LEVEL
from ..core.revisions import Era, has_progress_message
from ..runtime.session import Session, TakenCancel
from ..server.context import Context
from ..server.registration import Registration
from .relay import Relay
from .router import HOP_PARAMS, Router, hop_free
from .upstreams import Upstream

__all__ = ("Lane",)

log = logging.getLogger("mobius_rpc.gateway")

#: method -> the kind of item it names (how its target is routed)
_LANE_METHODS = {"tools/call": "tools", "prompts/get": "prompts", "resources/read": "resources"}


class Lane:
    """``take_request`` for a server a gateway is attached to: the gateway's router
    and upstreams (live: upstreams come and go), its server, its own handlers."""

    def __init__(self, router: Router, upstreams: Mapping[str, Upstream],
                 server: Registration, resumed: dict[tuple[Session, Any], dict[str, Any]],
                 handlers: dict[str, Callable[..., Any]]) -> None:
        self._router = router
        self._upstreams = upstreams
        self._server = server
        #: where a call handed back with its first InputRequiredResult leaves it
        self._resumed = resumed
        #: the gateway's own handlers: a method another layer took over since is not ours
        self._handlers = handlers

    def __call__(self, session: Session, event: RequestReceived) -> TakenCancel | None:
        """Take ``event`` over and forward it, or None to leave it to the general path."""
        method = event.method
        kind = _LANE_METHODS.get(method)
        if kind is None or self._server.request_handlers.get(method) is not \
                self._handlers[method]:
            return None
        params = event.params
        if "requestState" in params or "inputResponses" in params:
            return None  # a 2026-07-28 retry: its answers are opened by the dispatcher
        router = self._router
        if kind == "resources":
            uri = params.get("uri")
            found = router.resolve_uri(uri) if isinstance(uri, str) else None
            field = "uri"
        else:
            name = params.get("name")
            found = router.route(kind, name) if isinstance(name, str) else None
            field = "name"
            if "task" in params:
                return None
        if found is None:
            return None
        upstream = self._upstreams.get(found[0])
        if upstream is None:
            return None
        upstream_era = upstream.client.era
        modern = session.connection.era is Era.MODERN
        if modern and upstream_era is Era.LEGACY:
            return None  # what the upstream asks would park the call (.parking)
        forwarded = {k: v for k, v in params.items() if k not in HOP_PARAMS}
        forwarded[field] = found[1]
        if upstream_era is Era.MODERN:
            # as the general path: a modern upstream logs only if asked
            level = event.meta.log_level if event.meta is not None \
                else session.state.get("log_level")
            if isinstance(level, str):
                forwarded["_meta"] = {META_LOG_LEVEL: level}
        call = _LaneCall(self._server, router, session, event, found[0], self._resumed)
        meta = params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        call.token = token
        call.client = upstream.client
        cancel = upstream.forward(method, forwarded, done=call.done,
                                  handlers=call.handlers(),
                                  on_progress=call.progress if token is not None else None)
        if cancel is None:
            return None
        return lambda: cancel("cancelled by the caller")


class _LaneCall:
    """One call in the lane: how its answer, progress and requests get back."""

    __slots__ = ("_server", "_router", "_session", "_event", "_upstream", "_relay", "token",
                 "client", "_resumed")

    def __init__(self, server: Registration, router: Router, session: Session,
                 event: RequestReceived, upstream: str,
                 resumed: dict[tuple[Session, Any], dict[str, Any]]) -> None:
        self._server = server
        self._router = router
        self._resumed = resumed
        self._session = session
        self._event = event
        self._upstream = upstream
        self._relay: Relay | None = None
        self.token: Any = None
        self.client: Client | None = None

    def done(self, result: dict[str, Any] | None, error: McpError | None) -> None:
        try:
            self._done(result, error)
        except Exception:  # a bug of ours costs this call an error answer, never its answer
            log.exception("the lane could not answer %s", self._event.method)
            self._session.answer_taken(self._event, error=McpError(
                INTERNAL_ERROR, f"Internal error while handling {self._event.method}"))

    def _done(self, result: dict[str, Any] | None, error: McpError | None) -> None:
        session, event = self._session, self._event
        if error is not None or result is None:
            if self.client is not None and self.client.session_expired:
                # the HTTP session ended upstream: the general path renews it and retries
                session.serve_taken(event)
                return
            session.answer_taken(event, error=error)
            return
        if result.get("resultType") == "input_required":
            # A 2026-07-28 upstream needs input first: the general path asks this
            # caller (in its era) and goes on from this round with the answers.
            key = (session, event.id)
            self._resumed[key] = result
            if not session.serve_taken(event):
                self._resumed.pop(key, None)
            return
        session.answer_taken(event, dict(
            self._router.publish_contents(self._upstream, hop_free(result))))

    def progress(self, progress: float, total: float | None, message: str | None) -> None:
        session = self._session
        if session.closed:
            return
        params: dict[str, Any] = {"progressToken": self.token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None and has_progress_message(session.connection.revision):
            params["message"] = message
        try:
            session.connection.notify("notifications/progress", params,
                                      related=self._event.id)
        except LocalProtocolError:
            return  # the request finished or was cancelled meanwhile
        session.flush_now()

    # ------------------------------------------ what the upstream asks meanwhile

    def handlers(self) -> CallHandlers:
        return CallHandlers(sampling=self._sampling, elicitation=self._elicitation,
                            roots=self._roots, on_notification=self._notified,
                            owner=self._session)

    def _relay_now(self) -> Relay:
        if self._relay is None:
            self._relay = Relay(Context(self._server, self._session, self._event),
                                self._upstream)
        return self._relay

    async def _sampling(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._relay_now().sampling(params)

    async def _elicitation(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._relay_now().elicitation(params)

    async def _roots(self) -> list[dict[str, Any]]:
        return await self._relay_now().roots()

    async def _notified(self, method: str, params: dict[str, Any]) -> None:
        await self._relay_now().notified(method, params)
