"""Parked calls: a legacy upstream asking a 2026-07-28 downstream for input.

A legacy upstream (2024-11-05 ... 2025-11-25) asks for sampling, elicitation
or roots with a server-to-client request in the middle of its call; a
2026-07-28 downstream cannot receive one: it gets ``InputRequiredResult``
and retries with the answers.  Cancelling the upstream call and running it
again on the retry would run the tool's side effects twice, so instead:

* the upstream call runs in a task of its own (:class:`ParkedCall`), outside
  the downstream request, and its request waits for an answer;
* the downstream request is answered ``InputRequiredResult`` with every
  request the upstream has waiting (several at once go out together) and a
  ``requestState`` sealed by the server's key (:mod:`~..core.request_state`:
  integrity, expiry, bound to the method and its params) that carries an
  unguessable id of the parked call, itself bound to the caller's identity;
* the retry's ``inputResponses`` go to the waiting requests and the retry
  waits for what the upstream does next: its result, or more input requests
  (another round).

Bounds: a call parked longer than ``timeout`` without a retry is cancelled
upstream (``notifications/cancelled``) and forgotten; a call that fails while
parked is forgotten at once.  At most ``per_owner`` calls per caller,
``anonymous`` of the callers that name no one, and ``total`` in all may run
or wait this way at once: one more is refused with -31030 *before* it starts
upstream, so nothing of it ran.  Cancelling a downstream round cancels the
upstream call.  Time spent waiting for the downstream's answers is not the
upstream's: the upstream's per-call timeout counts only the time the call
works (no input request of it waiting), and a parked call that times out or
is abandoned never counts as a failure of the upstream (its breaker).

A parked call lives in the memory of the replica that parked it: a retry
that reaches another replica gets a clear -32602 error (that replica holds
no such call) and nothing runs again.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

import anyio

from ..client.background import spawn_background
from ..core.errors import INTERNAL_ERROR, INVALID_PARAMS, McpError, RequestTimeoutError
from ..core.request_state import open_state, seal_state
from ..core.revisions import Era
from ..core.types import TransportKind
from ..security.limits import TOO_MANY_CONCURRENT
from ..server.context import MRTR_METHODS, Context, InputRequired
from .relay import Relay

__all__ = ("PARKED_KEY", "ParkingOptions", "Inbox", "ParkedCall", "Parking", "applies",
           "owner_of")

log = logging.getLogger("mobius_rpc.gateway")

#: where a sealed requestState carries the parked call's id
PARKED_KEY = "io.mobius-rpc/parked-call"
#: upstream requests one inbox holds at once (more are refused upstream)
MAX_WAITING = 64
#: the owner of every unauthenticated stateless HTTP caller (see :func:`owner_of`)
ANONYMOUS: Hashable = ("anonymous",)


@dataclass(frozen=True)
class ParkingOptions:
    """Bounds on parked calls (see the module docstring)."""

    #: seconds a parked call waits for the downstream's retry
    timeout: float = 60.0
    #: calls per caller, of anonymous callers (who cannot be told apart), and in all
    per_owner: int = 16
    anonymous: int = 64
    total: int = 256
    #: seconds an input round waits for more input requests after the first
    gather: float = 0.05


def owner_of(ctx: Context) -> Hashable:
    """Who a parked call belongs to: the authenticated principal when there is one,
    else the connection (stdio, WebSocket, a legacy HTTP session).  A stateless
    HTTP request without authentication names no one: there the requestState's
    secrecy is all that keeps another caller out."""
    principal = ctx.transport.principal
    if principal is not None:
        user = getattr(principal, "user", None)
        if isinstance(user, str):
            return ("principal", getattr(principal, "organization", None), user)
        return ("principal", repr(principal))
    if ctx.transport.kind is TransportKind.STREAMABLE_HTTP and ctx.modern:
        return ANONYMOUS
    return ("session", id(ctx.session))


class _Slot:
    """One upstream request waiting for the downstream's answer."""

    __slots__ = ("embedded", "asker", "answered", "value", "error")

    def __init__(self, embedded: dict[str, Any], asker: ParkedCall | None) -> None:
        self.embedded = embedded
        #: the call that asked, when it can be told (None: any call of the inbox)
        self.asker = asker
        self.answered = anyio.Event()
        self.value: dict[str, Any] = {}
        self.error: McpError | None = None


class Inbox:
    """The upstream requests waiting for one caller's answers on one upstream.

    A legacy upstream's request names no call, so the upstream client gives it
    to the handlers of the calls in flight only when they share one owner
    (:class:`~..client.session.CallHandlers`): the parked calls of one caller
    on one upstream share an inbox, which is that owner, and every round of
    any of them shows all its waiting requests (an answer is taken once).
    Different callers never share one: their requests are refused as
    ambiguous rather than shown to the wrong user.

    When only one of the inbox's calls is still running upstream, a request
    is that call's and only its rounds show it; a call that never asks is
    then never handed another call's question.  While several run, which one
    asked cannot be told, and the request is shown to each (same caller).
    """

    def __init__(self) -> None:
        self.waiting: dict[str, _Slot] = {}
        self.calls: set[ParkedCall] = set()
        self._count = 0

    def poke(self) -> None:
        for call in self.calls:
            call.poke()

    def visible(self, call: ParkedCall) -> dict[str, _Slot]:
        """The waiting requests a round of ``call`` shows."""
        return {key: slot for key, slot in self.waiting.items()
                if slot.asker is None or slot.asker is call}

    async def ask(self, ctx: Context, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Wait for the downstream's answer to one upstream request."""
        if len(self.waiting) >= MAX_WAITING:
            raise McpError(INTERNAL_ERROR, f"too many requests ({MAX_WAITING}) already wait "
                           "for this caller's answers")
        running = [call for call in self.calls if not call.done]
        asker = running[0] if len(running) == 1 else None
        key = f"{method.split('/')[0]}-{self._count}"
        self._count += 1
        # a fresh context of the current round: checks the downstream's capability
        # and builds the embedded request, never reading answers given beforehand
        probe = Context(ctx.server, ctx.session, ctx.request)
        try:
            await probe.ask(method, params, key=key)
            raise McpError(INTERNAL_ERROR, "input request answered without asking")
        except InputRequired as needed:
            slot = _Slot(needed.requests[key], asker)
        self.waiting[key] = slot
        # waiting for the downstream is not the upstream's time (its call timeout)
        paused = [asker] if asker is not None else running
        for call in paused:
            call.pause()
        self.poke()
        try:
            await slot.answered.wait()
        finally:
            self.waiting.pop(key, None)
            for call in paused:
                call.resume()
        if slot.error is not None:
            raise slot.error
        return slot.value

    def deliver(self, responses: Any) -> None:
        """A retry's ``inputResponses``: each to the request it answers."""
        if not isinstance(responses, dict):
            return
        for key, value in responses.items():
            slot = self.waiting.pop(key, None) if isinstance(value, dict) else None
            if slot is not None:
                slot.value = value
                slot.answered.set()

    def abandon(self, why: str) -> None:
        """No call is left to carry these requests: they fail upstream."""
        for slot in list(self.waiting.values()):
            slot.error = McpError(INTERNAL_ERROR, why)
            slot.answered.set()
        self.waiting.clear()


class ParkedCall:
    """One upstream call that outlives the downstream requests serving it."""

    def __init__(self, owner: Hashable, relay: Relay, inbox: Inbox,
                 on_drop: Callable[[ParkedCall], None]) -> None:
        self.id = secrets.token_urlsafe(24)
        self.on_drop = on_drop
        self.owner = owner
        self.relay = relay
        self.inbox = inbox
        self.result: dict[str, Any] | None = None
        self.error: McpError | None = None
        self.done = False
        self.dropped = False
        self.attached = True                  # a downstream round is waiting on it
        self.deadline = math.inf
        self.scope = anyio.CancelScope()
        #: seconds of upstream work left (the upstream's call timeout), while paused
        self._budget = math.inf
        self._pauses = 0
        self._changed = anyio.Event()
        self._timer = anyio.Event()
        self._watched = False
        inbox.calls.add(self)
        relay.owner = inbox

        async def park(method: str, params: dict[str, Any]) -> dict[str, Any]:
            return await inbox.ask(relay.ctx, method, params)
        relay.park = park

    def poke(self) -> None:
        self._changed.set()

    def pause(self) -> None:
        """One of its input requests waits for the downstream: stop its clock."""
        self._pauses += 1
        if self._pauses == 1 and not self.done:
            self._budget = max(self.scope.deadline - anyio.current_time(), 0.0)
            self.scope.deadline = math.inf

    def resume(self) -> None:
        """An input request of it was answered (or abandoned): its clock runs again."""
        self._pauses -= 1
        if self._pauses == 0 and not self.done:
            self.scope.deadline = anyio.current_time() + self._budget

    async def run(self, call: Callable[[], Awaitable[dict[str, Any]]],
                  timeout: float = math.inf) -> None:
        """The call's own task (a call that never asks costs only this task).

        ``call`` must not time out by itself: ``timeout`` is the upstream's call
        timeout, counted here on the time the call works (see :meth:`pause`)."""
        self.scope.deadline = anyio.current_time() + timeout
        with self.scope:
            try:
                self.result = await call()
            except McpError as exc:
                self.error = exc
            except Exception:
                log.exception("call to upstream %s failed", self.relay.upstream)
                self.error = McpError(INTERNAL_ERROR, "Internal error")
        if self.result is None and self.error is None:
            if self.scope.cancelled_caught and not self.dropped:
                self.error = RequestTimeoutError(self.relay.ctx.method, timeout)
            else:
                self.error = McpError(INTERNAL_ERROR,
                                      f"call to upstream {self.relay.upstream} was cancelled")
        self.done = True
        if self.error is not None and not self.attached:
            self.drop()  # failed while parked: nothing to keep for a retry
        self.poke()

    async def _watch(self) -> None:
        """From the first time the call parks: drop it when no retry comes in time,
        or when the connection that owns it closes (no retry can come from it)."""
        session = self.relay.ctx.session if _kind(self.owner) == "session" else None
        async with anyio.create_task_group() as tg:
            if session is not None:
                async def gone() -> None:
                    await session.wait_finished()
                    if not self.dropped:
                        log.info("parked call %s: its connection closed; cancelling it "
                                 "upstream", self.relay.upstream)
                        self.drop()
                tg.start_soon(gone)
            await self._until_deadline()
            tg.cancel_scope.cancel()

    async def _until_deadline(self) -> None:
        while not self.dropped:
            if not self.attached and time.monotonic() >= self.deadline:
                log.info("parked call %s: no retry in time; cancelling it upstream",
                         self.relay.upstream)
                self.drop()
                return
            self._timer = anyio.Event()
            delay = math.inf if self.attached else self.deadline - time.monotonic()
            with anyio.move_on_after(max(delay, 0.0)):
                await self._timer.wait()

    def drop(self) -> None:
        """Forget the call; if it still runs, cancel it upstream."""
        if self.dropped:
            return
        self.dropped = True
        self.scope.cancel()
        self._timer.set()
        self.on_drop(self)

    # -------------------------------------------------------- the downstream side

    async def next_event(self, gather: float) -> None:
        """Wait until the call finished or its caller has input requests waiting."""
        while not self.done and not self.inbox.visible(self):
            self._changed = anyio.Event()
            await self._changed.wait()
        if not self.done and gather > 0:
            await anyio.sleep(gather)  # concurrent requests go out in one round

    def attach(self, ctx: Context) -> None:
        self.relay.ctx = ctx
        self.attached = True
        self.deadline = math.inf
        self._timer.set()

    def park(self, timeout: float) -> None:
        self.attached = False
        self.deadline = time.monotonic() + timeout
        self._timer.set()
        if not self._watched:
            self._watched = True
            spawn_background(self._watch)


class Parking:
    """The parked calls of one gateway (in this process)."""

    def __init__(self, options: ParkingOptions | None = None) -> None:
        self.options = options or ParkingOptions()
        #: the parked calls (named by a requestState), by id
        self.calls: dict[str, ParkedCall] = {}
        #: every call started here and not forgotten yet (what the bounds count)
        self.live: set[ParkedCall] = set()
        self._inboxes: dict[tuple[str, Hashable], Inbox] = {}

    def count(self, owner: Hashable | None = None) -> int:
        """Calls started and not forgotten yet, of ``owner`` (None: of everyone)."""
        return sum(1 for c in self.live if owner is None or c.owner == owner)

    def resumed(self, ctx: Context, key: bytes) -> ParkedCall | None:
        """The parked call a retry names, or None when it names none (a first call).

        Raises -32602 for a requestState that names a call this process does not
        hold (ended, expired, parked by another replica), or another caller's."""
        token = ctx.params.get("requestState")
        if token is None:
            return None
        state = open_state(key, token, ctx.method, ctx.params, now=time.time())
        call_id = state.get(PARKED_KEY)
        if not isinstance(call_id, str):
            return None
        call = self.calls.get(call_id)
        if call is None:
            raise McpError(INVALID_PARAMS, "Invalid params: requestState names no call "
                           "waiting here (it ended, timed out, or waits on another replica); "
                           "call again without requestState", {"reason": "unknown-call"})
        if call.owner != owner_of(ctx):
            raise McpError(INVALID_PARAMS, "Invalid params: requestState belongs to "
                           "another caller", {"reason": "foreign-call"})
        if call.attached:
            raise McpError(INVALID_PARAMS, "Invalid params: this call is already being "
                           "resumed by another request", {"reason": "busy-call"})
        return call

    async def forward(self, ctx: Context, key: bytes, relay: Relay,
                      call: Callable[[], Awaitable[dict[str, Any]]],
                      timeout: float = math.inf) -> dict[str, Any]:
        """One round of a (maybe) parked call: start it or resume it, then answer
        its result or an ``InputRequiredResult``.

        ``call`` must not time out by itself; ``timeout`` is the upstream's call
        timeout, counted on the time the call works."""
        parked = self.resumed(ctx, key)
        if parked is None:
            owner = owner_of(ctx)
            refusal = self._refusal(owner)
            if refusal is not None:  # before anything runs upstream
                raise refusal
            # an anonymous caller shares nothing, not even with itself
            inbox = None if owner == ANONYMOUS else \
                self._inboxes.get((relay.upstream, owner))
            if inbox is None:
                inbox = Inbox()
                if owner != ANONYMOUS:
                    self._inboxes[(relay.upstream, owner)] = inbox
            parked = ParkedCall(owner, relay, inbox, self._dropped)
            parked.attach(ctx)
            self.live.add(parked)
            started = parked

            async def main() -> None:
                await started.run(call, timeout)
            spawn_background(main)
        else:
            parked.attach(ctx)
            parked.inbox.deliver(ctx.params.get("inputResponses"))
        return await self._round(ctx, key, parked)

    async def _round(self, ctx: Context, key: bytes, parked: ParkedCall) -> dict[str, Any]:
        try:
            await parked.next_event(self.options.gather)
        except BaseException:
            parked.drop()  # the downstream gave up (cancelled): so does the upstream call
            raise
        if parked.done:
            parked.drop()  # at once: its state names nothing from now on
            if parked.error is not None:
                raise parked.error
            assert parked.result is not None
            return parked.result
        self.calls[parked.id] = parked
        timeout = self.options.timeout
        parked.park(timeout)
        state = seal_state(key, ctx.method, ctx.params, {PARKED_KEY: parked.id},
                           now=time.time(), ttl=timeout)
        return {"resultType": "input_required",
                "inputRequests": {k: slot.embedded
                                  for k, slot in parked.inbox.visible(parked).items()},
                "requestState": state}

    def _refusal(self, owner: Hashable) -> McpError | None:
        options = self.options
        if owner == ANONYMOUS and self.count(owner) >= options.anonymous:
            limit, which = options.anonymous, "of callers that name no one"
        elif owner != ANONYMOUS and self.count(owner) >= options.per_owner:
            limit, which = options.per_owner, "per caller"
        elif len(self.live) >= options.total:
            limit, which = options.total, "in all"
        else:
            return None
        return McpError(TOO_MANY_CONCURRENT, f"too many calls waiting for input ({limit} "
                        f"{which}); answer or abandon one first",
                        {"limit": "parked_calls", "max": limit})

    def _dropped(self, parked: ParkedCall) -> None:
        self.calls.pop(parked.id, None)
        self.live.discard(parked)
        inbox = parked.inbox
        inbox.calls.discard(parked)
        if not inbox.calls:
            inbox.abandon("the call that asked this is no longer waiting for an answer")
            key = (parked.relay.upstream, parked.owner)
            if self._inboxes.get(key) is inbox:
                del self._inboxes[key]

    def close(self) -> None:
        """Cancel every parked call (the gateway is closing)."""
        for parked in list(self.live):
            parked.drop()


def _kind(owner: Hashable) -> object:
    return owner[0] if isinstance(owner, tuple) and owner else None


def applies(ctx: Context, upstream_era: Era | None) -> bool:
    """Whether a forwarded call parks on input requests: a 2026-07-28 downstream's
    MRTR request to a legacy upstream."""
    return ctx.modern and ctx.method in MRTR_METHODS and upstream_era is Era.LEGACY
