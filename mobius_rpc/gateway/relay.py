"""Per-call relaying: what an upstream sends while serving a call goes back to
the downstream client whose call caused it.

A :class:`Relay` is made for one downstream request (from its
:class:`~mobius_rpc.server.context.Context`) and hands the upstream client
:class:`~mobius_rpc.client.session.CallHandlers` for that one call:

* progress: the upstream's progress notifications become the downstream
  request's progress (under the downstream client's own token);
* log messages: ``notifications/message`` goes to the downstream session,
  through its own level filter;
* sampling, elicitation (form and URL) and roots: asked of the downstream
  client with :meth:`Context.ask`, which checks its capabilities;
* cancellation: a downstream cancel cancels the forwarding task, which sends
  ``notifications/cancelled`` upstream; an upstream cancelling its own
  sampling request cancels the relay task, which cancels downstream.

Across eras: a 2026-07-28 upstream's input requests arrive inside its call
and are asked of the downstream client in whatever era it speaks (to a
2026-07-28 downstream, as its own ``InputRequiredResult``: the upstream round
ended anyway, and the retry asks the upstream again with the answers, as
that era's handlers expect).  A legacy upstream's request while the
downstream speaks 2026-07-28 cannot be answered during the call (the modern
downstream has no server-to-client requests).  For ``tools/call``,
``prompts/get`` and ``resources/read`` the call is then *parked*
(:mod:`.parking`): it keeps running upstream, its request waits, the
downstream gets ``InputRequiredResult`` and its retry delivers the answers to
the waiting request, so the upstream tool runs once.  Such a relay has a
``park`` callback and its ``ctx`` follows the current round.  Elsewhere
(no multi round-trip on that method) the request is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..client.session import CallHandlers
from ..core.errors import INTERNAL_ERROR, McpError
from ..core.revisions import has_form_mode_field
from ..runtime.session import current_request
from ..server.context import Context, InputRequired

__all__ = ("Relay",)


class Relay:
    """The relaying of one downstream request to one upstream call."""

    def __init__(self, ctx: Context, upstream: str,
                 publish: Callable[[Any], Any] | None = None) -> None:
        self.ctx = ctx
        self.upstream = upstream
        self._publish = publish or (lambda value: value)
        #: input requests a modern downstream must answer before the call can go on
        self.needed: dict[str, dict[str, Any]] = {}
        self._scope: anyio.CancelScope | None = None
        #: a parked call's way of asking (see :mod:`.parking`): it waits for the answer
        self.park: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]] | None = None
        #: calls with the same owner may share an upstream request (see CallHandlers)
        self.owner: object = ctx.session

    def handlers(self) -> CallHandlers:
        return CallHandlers(sampling=self.sampling, elicitation=self.elicitation,
                            roots=self.roots, on_notification=self.notified,
                            owner=self.owner)

    def progress(self) -> Any:
        """The upstream call's progress callback, or None when the downstream sent no token
        (a parked call always has one: a later round may bring a token)."""
        if self.park is None and self.ctx.meta.get("progressToken") is None:
            return None

        async def forward(progress: float, total: float | None, message: str | None) -> None:
            await self.ctx.report_progress(progress, total, message)
        return forward

    async def run(self, call: Callable[[], Any]) -> dict[str, Any]:
        """Run the upstream ``call``; raise InputRequired if the downstream must answer first."""
        if not self.ctx.modern:
            # Only a modern downstream ends a round early (``_ask`` cancels the scope
            # below on InputRequired): a legacy one is asked during the call, so
            # its calls enter no scope of their own (a scope per call costs as
            # much as validating the message).
            result: dict[str, Any] = await call()
            return result
        with anyio.CancelScope() as scope:
            self._scope = scope
            try:
                result = await call()
                return result
            except McpError:
                if not self.needed:
                    raise
        # interrupted by ourselves: a modern downstream must answer first
        if self.needed:
            raise InputRequired(dict(self.needed))
        raise McpError(INTERNAL_ERROR, f"call to upstream {self.upstream} was interrupted")

    # ------------------------------------------------------------- callbacks

    async def _ask(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if self.park is not None:
            return await self.park(method, params)
        # What we send downstream belongs to the downstream request (whose response
        # stream carries it over Streamable HTTP), not to the upstream's request
        # being served in this task.
        token = current_request.set(self.ctx.request_id)
        try:
            return await self.ctx.ask(method, params)
        except InputRequired as needed:
            # a legacy upstream asking a modern downstream: end this round
            self.needed.update(needed.requests)
            if self._scope is not None:
                self._scope.cancel()
            raise McpError(INTERNAL_ERROR, "the downstream client answers in a later round"
                           ) from None
        finally:
            current_request.reset(token)

    async def sampling(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._ask("sampling/createMessage", params)

    async def elicitation(self, params: dict[str, Any]) -> dict[str, Any]:
        params = dict(params)
        if params.get("mode") == "url":
            # 2025-11-25 names each URL elicitation; 2026-07-28 dropped the id
            if self.ctx.modern:
                params.pop("elicitationId", None)
            elif not isinstance(params.get("elicitationId"), str):
                params["elicitationId"] = uuid.uuid4().hex
        elif params.get("mode", "form") == "form":
            if has_form_mode_field(self.ctx.protocol_version):
                params["mode"] = "form"
            else:
                params.pop("mode", None)
        return await self._ask("elicitation/create", params)

    async def roots(self) -> list[dict[str, Any]]:
        result = await self._ask("roots/list", {})
        roots = result.get("roots")
        return list(roots) if isinstance(roots, list) else []

    async def notified(self, method: str, params: dict[str, Any]) -> None:
        if method != "notifications/message":
            return
        level = params.get("level")
        if not isinstance(level, str):
            return
        logger = params.get("logger")
        token = current_request.set(self.ctx.request_id)  # as in _ask
        try:
            await self.ctx.log(level, params.get("data"),
                               logger=logger if isinstance(logger, str) else self.upstream)
        except (ValueError, McpError):
            pass  # an unknown level, or the downstream went away: nothing to relay
        finally:
            current_request.reset(token)
