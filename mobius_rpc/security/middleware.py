"""The security middleware: policy, limits and audit around every request.

Installed with ``server.use(SecurityMiddleware(store))``; it reads the caller
from ``ctx.transport.principal`` (put there by an authenticator) and:

* filters every list (tools, resources, resource templates, prompts, and the
  values of a resource-template completion) down to what the caller may use;
* checks every ``tools/call``, ``resources/read``, ``prompts/get``,
  ``resources/subscribe`` and ``completion/complete`` before it runs, and
  refuses with exactly the error the server gives for a thing that does not
  exist (so a refusal tells nothing about what exists);
* applies the :mod:`.limits` (rates, concurrency, and for tools the timeout
  and the output size);
* records each of those requests, and every refusal, in the audit log
  before the answer leaves.

Without a principal only ``ping``, ``initialize`` and ``server/discover``
pass, unless a ``default_principal`` is configured (a stdio server's local
identity, say).  Methods it does not know are refused as unknown methods:
list a custom method in ``extra_methods`` to let it through.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NoReturn

import anyio

from ..core.errors import METHOD_NOT_FOUND, McpError
from ..core.types import TransportKind
from ..server.context import Context
from ..server.dispatch import routes_next
from ..server.registration import Registration
from .audit import AuditLog
from .audit_wire import use_row
from .limits import Limiter, Limits
from .middleware_support import (
    NO_DETAIL,
    Ownership,
    failure,
    not_found,
    present,
    registration,
    resource_annotations,
    unknown,
)
from .policy import Action, Kind, PolicyEngine, RuleSet
from .principal import Principal
from .store import SecurityStore

__all__ = ("SecurityMiddleware", "UNAUTHENTICATED", "OwnerLookup", "Ownership", "Revalidate")

#: JSON-RPC code of a request that arrived without an identity
UNAUTHENTICATED = -31001
#: which organization a thing belongs to, if any (see :class:`Ownership`)
OwnerLookup = Callable[[str, str], str | None]
Next = Callable[[Context], Awaitable[dict[str, Any]]]
#: the principal as it stands now, or None when its credential no longer holds
Revalidate = Callable[[Principal], Awaitable[Principal | None]]

_perf_counter = time.perf_counter
_SESSION_PREFIX = uuid.uuid4().hex[:16]
_SESSIONS = itertools.count(1)
#: outcomes on record before the answer is sent, even with a background writer
_DURABLE_FIRST = frozenset(("denied", "limited"))
#: methods answered without an identity (the connection's own handshake)
_PUBLIC = frozenset(("ping", "initialize", "server/discover"))
#: session bookkeeping any identified caller may do (nothing to decide about)
_SESSION = frozenset(("logging/setLevel", "resources/unsubscribe", "tasks/get",
                      "tasks/result", "tasks/list", "tasks/cancel"))
#: the members the hot path passes (read once: an enum member lookup is a slow path)
_CALL, _TOOLS, _WEBSOCKET = Action.CALL, Kind.TOOLS, TransportKind.WEBSOCKET
_LISTS = {"tools/list": ("tools", Kind.TOOLS, "name"),
          "resources/list": ("resources", Kind.RESOURCES, "uri"),
          "resources/templates/list": ("resourceTemplates", Kind.RESOURCES, "uriTemplate"),
          "prompts/list": ("prompts", Kind.PROMPTS, "name")}


class SecurityMiddleware:
    """Deny by default, filter lists, check uses, enforce limits, audit."""

    #: it never sends anything before the answer itself (the dispatcher then needs
    #: no cancel scope for requests whose handler cannot send early either)
    sends_early = False

    def __init__(self, store: SecurityStore, *, policy: PolicyEngine | None = None,
                 audit: AuditLog | None = None, limits: Limits | None = None,
                 default_principal: Principal | None = None, owners: OwnerLookup | None = None,
                 extra_methods: Iterable[str] = (), clock: Callable[[], float] = time.time,
                 revalidate: Revalidate | None = None) -> None:
        """``revalidate`` checks the principal of a WebSocket connection again on each
        request (:func:`~.tokens.revalidate_token`): the connection authenticated
        once, at its handshake, but a revoked token must fail on its next request."""
        self.store = store
        self.policy = policy or PolicyEngine(store)
        self.audit = audit or AuditLog(store, clock=clock)
        self.limiter = Limiter(limits or Limits(), store, clock=clock)
        self._run_handler = self.limiter.run_handler
        self.default_principal = default_principal
        self.owners = owners
        self.extra_methods = frozenset(extra_methods)
        self._clock = clock
        self.revalidate = revalidate

    def use_audit(self, audit: AuditLog) -> None:
        """Record to ``audit`` (``Server(audit=...)`` hands its sink over this way)."""
        self.audit = audit

    async def __call__(self, ctx: Context, call_next: Next) -> dict[str, Any]:
        method = ctx.method
        if method in _PUBLIC:
            return await call_next(ctx)
        transport = ctx.request.transport  # ctx.transport, without its property call
        found = transport.principal if transport is not None else None
        principal = self.default_principal if found is None \
            else found if isinstance(found, Principal) else None
        if principal is not None and transport is not None \
                and transport.kind is _WEBSOCKET:
            principal = await self._still_valid(principal)
        if principal is None:
            await self._refuse(ctx, None, None, McpError(UNAUTHENTICATED,
                                                         "Authentication required"), {})
        params = ctx.params
        if method == "tools/call":
            name = params.get("name")
            if isinstance(name, str):
                server = registration(ctx)
                tool = server.tools.get(name)
                if tool is not None:
                    # the common case first: a known tool, the rules at hand, the call
                    # allowed (a decision the rule set has cached); otherwise _guarded
                    # decides again, reads the rules if it must, and refuses
                    rules = self.policy.ready(principal.organization)
                    owners = self.owners
                    if rules is not None and rules.decide(
                            principal, _CALL, _TOOLS, name, tool.annotations,
                            owner=None if owners is None else owners(_TOOLS, name)).allowed:
                        return await self._use(ctx, call_next, principal, name,
                                               params.get("arguments"), name, server)
            else:
                tool = None
            return await self._guarded(
                ctx, call_next, principal, Action.CALL, Kind.TOOLS, name,
                tool.annotations if tool else None, lambda: unknown("tool", name, True),
                params.get("arguments"), tool=str(name))
        listed = _LISTS.get(method)
        if listed is not None:
            return await self._list(ctx, call_next, principal, *listed)
        if method in ("resources/read", "resources/subscribe"):
            uri = params.get("uri")
            action = Action.READ if method == "resources/read" else Action.SUBSCRIBE
            return await self._guarded(ctx, call_next, principal, action, Kind.RESOURCES, uri,
                                       resource_annotations(ctx, uri),
                                       lambda: not_found(ctx, uri),
                                       None)
        if method == "prompts/get":
            name = params.get("name")
            return await self._guarded(ctx, call_next, principal, Action.GET, Kind.PROMPTS,
                                       name, None, lambda: unknown("prompt", name, True),
                                       params.get("arguments"))
        if method == "completion/complete":
            return await self._complete(ctx, call_next, principal)
        if method == "subscriptions/listen":
            await self._filter_listen(ctx, principal)
            return await call_next(ctx)
        if method in _SESSION or method in self.extra_methods:
            return await call_next(ctx)
        await self._refuse(ctx, principal, None,
                           McpError(METHOD_NOT_FOUND, f"Method not found: {method}"), {})

    async def _still_valid(self, principal: Principal) -> Principal | None:
        """The principal of a WebSocket as it stands for this request, or None.

        The connection authenticated once, at its handshake; HTTP authenticates
        each request anew.  So here each request checks that the credential has
        not expired (a JWT cannot be asked again: its bytes are not kept) and,
        with ``revalidate``, that an API token was not revoked meanwhile."""
        expires = principal.expires_at
        if expires is not None and self._clock() >= expires:
            return None
        return principal if self.revalidate is None else await self.revalidate(principal)

    def _owner(self, kind: str, name: str) -> str | None:
        return self.owners(kind, name) if self.owners is not None else None

    def _may(self, rules: RuleSet, principal: Principal, action: str, kind: str, name: Any,
             annotations: Any) -> bool:
        if not isinstance(name, str):
            return False
        notes = annotations if isinstance(annotations, dict) else None
        return rules.decide(principal, action, kind, name, notes,
                            owner=self._owner(kind, name)).allowed

    # ----------------------------------------------------------------- lists

    async def _list(self, ctx: Context, call_next: Next, principal: Principal, key: str,
                    kind: Kind, field: str) -> dict[str, Any]:
        rules = await self.policy.rules_for(principal.organization)
        result = await call_next(ctx)
        items = result.get(key)
        if isinstance(items, list):
            result = {**result, key: [
                item for item in items if isinstance(item, dict) and self._may(
                    rules, principal, Action.LIST, kind, item.get(field),
                    item.get("annotations"))]}
        return result

    async def _filter_listen(self, ctx: Context, principal: Principal) -> None:
        """Drop the resource subscriptions of a modern-era listen the caller may
        not have; the acknowledgement then shows only the accepted ones."""
        wanted = ctx.params.get("notifications")
        uris = wanted.get("resourceSubscriptions") if isinstance(wanted, dict) else None
        if not isinstance(wanted, dict) or not isinstance(uris, list):
            return
        rules = await self.policy.rules_for(principal.organization)
        kept = [u for u in uris if self._may(rules, principal, Action.SUBSCRIBE,
                                             Kind.RESOURCES, u, resource_annotations(ctx, u))]
        ctx.params = {**ctx.params, "notifications": {**wanted, "resourceSubscriptions": kept}}
        await self._record(ctx, principal, None, uris, "ok", None, self._clock(), 0.0,
                           {"refused": len(uris) - len(kept)})

    # ------------------------------------------------------------------ uses

    async def _guarded(self, ctx: Context, call_next: Next, principal: Principal,
                       action: str, kind: str, target: Any, annotations: Any,
                       refusal: Callable[[], McpError], arguments: Any, *,
                       tool: str | None = None) -> dict[str, Any]:
        """``refusal`` makes the error a refusal answers with (only when refused)."""
        policy = self.policy
        rules = policy.ready(principal.organization)
        if rules is None:
            rules = await policy.rules_for(principal.organization)
        name = target if isinstance(target, str) else None
        owners = self.owners
        decision = None if name is None else rules.decide(
            principal, action, kind, name, annotations if isinstance(annotations, dict)
            else None, owner=None if owners is None else owners(kind, name))
        if decision is None or not decision.allowed:
            detail = {"reason": decision.reason if decision else "no name",
                      "rule": decision.rule.id if decision and decision.rule else None}
            await self._refuse(ctx, principal, name, refusal(), detail, arguments)
        return await self._use(ctx, call_next, principal, name, arguments, tool)

    async def _use(self, ctx: Context, call_next: Next, principal: Principal,
                   name: str | None, arguments: Any, tool: str | None,
                   server: Registration | None = None) -> dict[str, Any]:
        """Run a use the policy allowed under its limits (``tool``: the tool's name,
        for a tool call) and record it, however it ends.  ``server``: the request's
        registration, when the caller has looked it up already."""
        at, started = self._clock(), _perf_counter()
        outcome, detail = "ok", NO_DETAIL
        error: McpError | None = None
        slot: str | None = None
        limiter = self.limiter
        try:
            if not limiter.admits_at_once:
                if limiter.has_rates:
                    await limiter.check_rates(principal, tool)
                slot = limiter.enter(principal)  # None without a cap
            if tool is None:
                result = await call_next(ctx)
            else:
                if "task" in ctx.params:  # run as a task: the run itself under the limits
                    ctx.limit_task = self._task_limits(principal, tool, arguments)
                if server is None:
                    server = registration(ctx)
                if routes_next(call_next) and "tools/call" not in server.request_handlers:
                    # the server's own tools answer next: the timeout goes around the
                    # handler alone (Context.limit_handler), where it can act
                    ctx.limit_handler = self._run_handler
                    result = await call_next(ctx)
                    limiter.check_output(tool, result)
                else:
                    result = await limiter.run_tool(tool, call_next, ctx)
            if result.get("isError") is True:
                outcome = "tool-error"
            return result
        except BaseException as exc:
            outcome, error, detail = failure(exc)
            raise
        finally:
            if slot is not None:
                limiter.leave(slot)
            elapsed = (_perf_counter() - started) * 1000.0
            if not self._queued(ctx, principal, name, arguments, outcome, error, at,
                                elapsed, detail):
                if outcome == "cancelled":  # still recorded: the scope is shielded
                    with anyio.CancelScope(shield=True):
                        await self._append(ctx, principal, name, arguments, outcome, error,
                                           at, elapsed, detail)
                else:
                    await self._append(ctx, principal, name, arguments, outcome, error, at,
                                       elapsed, detail)

    def _task_limits(self, principal: Principal, tool: str, arguments: Any
                     ) -> Callable[[Context, Callable[[], Awaitable[dict[str, Any]]]],
                                   Awaitable[dict[str, Any]]]:
        """What a tool call run as a task runs its run through (``Context.limit_task``):
        the call's own answer is the task's creation, so its timeout and output
        limit would otherwise act on that alone.  The run is not admitted again
        (its call was, against the rates and the cap); its end is a record of
        its own, ``detail.task`` naming the task.  While it runs it holds one of the
        caller's concurrent slots, over the cap if need be: the call was admitted,
        and later calls see the run."""
        async def limited(task_ctx: Context, run: Callable[[], Awaitable[dict[str, Any]]]
                          ) -> dict[str, Any]:
            at, started = self._clock(), _perf_counter()
            outcome, detail = "ok", NO_DETAIL
            error: McpError | None = None
            limiter = self.limiter
            slot = limiter.enter(principal, checked=False)
            try:
                result = await limiter.run_tool(tool, run)
                if result.get("isError") is True:
                    outcome = "tool-error"
                return result
            except BaseException as exc:
                outcome, error, detail = failure(exc)
                raise
            finally:
                limiter.leave(slot)
                with anyio.CancelScope(shield=True):  # a cancelled task is recorded too
                    await self._record(task_ctx, principal, tool, arguments, outcome, error,
                                       at, (_perf_counter() - started) * 1000.0,
                                       {**detail, "task": task_ctx.task_id})
        return limited

    async def _complete(self, ctx: Context, call_next: Next, principal: Principal
                        ) -> dict[str, Any]:
        params = ctx.params
        ref = params.get("ref") if isinstance(params.get("ref"), dict) else {}
        assert isinstance(ref, dict)
        if ref.get("type") == "ref/prompt":
            name = ref.get("name")
            return await self._guarded(ctx, call_next, principal, Action.COMPLETE, Kind.PROMPTS,
                                       name, None, lambda: unknown("prompt", name, False),
                                       params.get("argument"))
        uri = ref.get("uri")
        template = registration(ctx).resources.find_template(uri) if isinstance(uri, str) else None
        notes = template.info.annotations if template is not None else None
        result = await self._guarded(ctx, call_next, principal, Action.COMPLETE,
                                     Kind.RESOURCES, uri, notes,
                                     lambda: unknown("resource template", uri, False),
                                     params.get("argument"))
        completion = result.get("completion")
        argument = params.get("argument")
        if template is None or not isinstance(completion, dict) \
                or not isinstance(argument, dict):
            return result
        context = params.get("context")
        known = context.get("arguments") if isinstance(context, dict) else None
        base = dict(known) if isinstance(known, dict) else {}
        rules = await self.policy.rules_for(principal.organization)
        values = completion.get("values") or []
        kept = [v for v in values if isinstance(v, str) and self._may(
            rules, principal, Action.READ, Kind.RESOURCES,
            template.template.expand({**base, str(argument.get("name")): v}), notes)]
        if len(kept) == len(values):
            return result
        trimmed = {k: v for k, v in completion.items() if k != "total"}
        return {**result, "completion": {**trimmed, "values": kept}}

    # ----------------------------------------------------------------- audit

    def _session_id(self, ctx: Context) -> str:
        transport = ctx.request.transport
        if transport is not None and transport.session_id:
            return transport.session_id
        state = ctx.session.state
        found = state.get("security.session")
        if found is None:
            # one per session, and a stateless POST is a session of its own: a random
            # per-process prefix and a counter are as unique as uuid4 and far cheaper
            found = state["security.session"] = f"{_SESSION_PREFIX}{next(_SESSIONS):016x}"
        return str(found)

    async def _record(self, ctx: Context, principal: Principal | None, target: str | None,
                      arguments: Any, outcome: str, error: McpError | None, at: float,
                      duration_ms: float, detail: dict[str, Any]) -> None:
        if not self._queued(ctx, principal, target, arguments, outcome, error, at,
                            duration_ms, detail):
            await self._append(ctx, principal, target, arguments, outcome, error, at,
                               duration_ms, detail)

    def _queued(self, ctx: Context, principal: Principal | None, target: str | None,
                arguments: Any, outcome: str, error: McpError | None, at: float,
                duration_ms: float, detail: dict[str, Any]) -> bool:
        """Whether the record went to the background writer: a use that was allowed,
        while one runs with room (the answer need not wait for the commit; see
        docs/security.md for the loss window).  Refusals and limits never do."""
        return outcome not in _DURABLE_FIRST and self.audit.queue_use(use_row(
            at, ctx.method, outcome, principal, self._session_id(ctx), ctx.request_id,
            target, arguments, None if error is None else error.message,
            None if error is None else error.code, duration_ms,
            present(detail) if detail else None))

    async def _append(self, ctx: Context, principal: Principal | None, target: str | None,
                      arguments: Any, outcome: str, error: McpError | None, at: float,
                      duration_ms: float, detail: dict[str, Any]) -> None:
        """The record, stored before this returns."""
        fields = {
            "method": ctx.method, "outcome": outcome, "principal": principal,
            "target": target, "arguments": arguments, "session": self._session_id(ctx),
            "request_id": ctx.request_id, "duration_ms": duration_ms,
            "detail": present(detail) if detail else {}, "at": at}
        if error is not None:
            fields["error"], fields["error_code"] = error.message, error.code
        await self.audit.append(**fields)

    async def _refuse(self, ctx: Context, principal: Principal | None, target: str | None,
                      error: McpError, detail: dict[str, Any], arguments: Any = None
                      ) -> NoReturn:
        """Record the refusal (durably, before anyone sees the answer), then raise it."""
        with anyio.CancelScope(shield=True):
            await self._record(ctx, principal, target, arguments, "denied", error,
                               self._clock(), 0.0, detail)
        raise error
