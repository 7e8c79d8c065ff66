"""Who may see which project: organizations own projects, the security rules narrow them.

A project belongs to one organization (recorded in the store, ``ctx_projects``).
Where a security policy guards the server (``mobius serve --http`` with
authentication), a caller sees a project only when the rules of the
organization it acts in allow it to *read* the ``projects`` thing of that name
and the project is that organization's own (the rules' ownership check refuses
another organization's project before any rule).  Everything that names a
project asks here: the ``context://projects`` list, every tool, resource,
completion and prompt; a project the caller may not see is answered exactly
like one that does not exist, and the refusal goes to the audit log.

Without a policy (stdio, where the local user who launched the server owns
what it serves, or ``--no-auth``) every served project is visible.

The decision is cheap on the hot path: the visible set is cached per principal
and per compiled rule set (a new rules version compiles a new one, so a rule
change shows on the next request) and per owner epoch of the engine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

import anyio

from ..security.middleware import SecurityMiddleware
from ..security.policy import Action, Kind, RuleSet
from ..security.principal import Principal
from ..server.context import Context

__all__ = ("ProjectAccess", "project_of", "NOT_VISIBLE")


class _Project(Protocol):
    name: str
    org: str | None


class _Engine(Protocol):
    @property
    def projects(self) -> Mapping[str, _Project]: ...

    @property
    def owner_epoch(self) -> int: ...

    async def owners_ready(self) -> None: ...


#: what a refused project's audit record says (the caller only ever hears "no project")
NOT_VISIBLE = "project not visible to the caller"

_caller: ContextVar[Context | None] = ContextVar("mobius_context_caller", default=None)
_CACHE_LIMIT = 4096
_PREFIX = "context://projects/"


def project_of(uri: object) -> str | None:
    """The project a ``context://projects/{project}/...`` URI names, if it names one."""
    if not isinstance(uri, str) or not uri.startswith(_PREFIX):
        return None
    return uri[len(_PREFIX):].split("/", 1)[0] or None


def _guard() -> tuple[Context, Principal, SecurityMiddleware] | None:
    """The request, its principal and the security policy, when one guards it."""
    ctx = _caller.get()
    if ctx is None:
        return None
    policy = getattr(ctx.server, "policy", None)
    if not isinstance(policy, SecurityMiddleware):
        return None
    principal = ctx.transport.principal
    if principal is None:
        principal = policy.default_principal
    if not isinstance(principal, Principal):
        return None
    return ctx, principal, policy


class ProjectAccess:
    """The projects of an engine the current caller may see (see the module's text)."""

    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self._cache: dict[Principal, tuple[RuleSet, int, frozenset[str]]] = {}

    async def _rules(self, principal: Principal, policy: SecurityMiddleware) -> RuleSet:
        # the middleware fetched the rules for this very request before the handler ran
        # (every guarded method does): reuse them, no second store read per request
        found = policy.policy.current(principal.organization)
        return found if found is not None else \
            await policy.policy.rules_for(principal.organization)

    async def middleware(self, ctx: Context, call_next: Callable[[Context], Awaitable[Any]]
                         ) -> Any:
        """Remember the request for the handlers' checks (completion handlers get no
        ``ctx``), and guard what reaches no handler of ours: a subscription to a hidden
        project's URI is acknowledged like one to a project that does not exist (which
        nothing will ever update) but not made; a listen stream drops such URIs."""
        token = _caller.set(ctx)
        try:
            if ctx.method == "resources/subscribe":
                name = project_of(ctx.params.get("uri"))
                if name in self.engine.projects and await self.find(name) is None:
                    return {}
            elif ctx.method == "subscriptions/listen":
                await self._filter_listen(ctx)
            return await call_next(ctx)
        finally:
            _caller.reset(token)

    async def _filter_listen(self, ctx: Context) -> None:
        wanted = ctx.params.get("notifications")
        uris = wanted.get("resourceSubscriptions") if isinstance(wanted, dict) else None
        if not isinstance(wanted, dict) or not isinstance(uris, list):
            return
        kept = []
        for uri in uris:
            name = project_of(uri)
            if name is None or name not in self.engine.projects or await self.find(name):
                kept.append(uri)
        if len(kept) != len(uris):
            ctx.params = {**ctx.params,
                          "notifications": {**wanted, "resourceSubscriptions": kept}}

    async def visible_names(self) -> frozenset[str] | None:
        """The names the caller may see; None: no policy, every project."""
        await self.engine.owners_ready()  # once: every project's owner known and recorded
        guard = _guard()
        if guard is None:
            return None
        _ctx, principal, policy = guard
        rules = await self._rules(principal, policy)
        epoch = self.engine.owner_epoch
        cached = self._cache.get(principal)
        if cached is not None and cached[0] is rules and cached[1] == epoch:
            return cached[2]
        names = frozenset(
            name for name, project in self.engine.projects.items()
            if project.org is not None and rules.decide(
                principal, Action.READ, Kind.PROJECTS, name, owner=project.org).allowed)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[principal] = (rules, epoch, names)
        return names

    async def visible(self) -> list[str]:
        """The names of the caller's projects, in the order they are served."""
        names = await self.visible_names()
        return [n for n in self.engine.projects if names is None or n in names]

    async def find(self, name: str | None) -> str | None:
        """``name`` (None or "": the caller's first project) if the caller may see it;
        None otherwise, after recording a refusal of a project that exists."""
        names = await self.visible_names()
        if not name:
            return next((n for n in self.engine.projects if names is None or n in names), None)
        project = self.engine.projects.get(name)
        if project is None:
            return None
        if names is None or name in names:
            return name
        await self._record_refusal(project)
        return None

    async def _record_refusal(self, project: _Project) -> None:
        guard = _guard()
        if guard is None:
            return
        ctx, principal, policy = guard
        rules = await self._rules(principal, policy)
        decision = rules.decide(principal, Action.READ, Kind.PROJECTS, project.name,
                                owner=project.org) if project.org is not None else None
        detail = {"reason": decision.reason if decision else "the project has no owner yet",
                  "rule": decision.rule.id if decision and decision.rule else None,
                  "kind": Kind.PROJECTS.value}
        with anyio.CancelScope(shield=True):  # on record before the answer is sent
            await policy.audit.append(
                method=ctx.method, outcome="denied", principal=principal,
                target=f"project:{project.name}", session=ctx.transport.session_id,
                request_id=ctx.request_id, error=NOT_VISIBLE,
                detail={k: v for k, v in detail.items() if v is not None})
