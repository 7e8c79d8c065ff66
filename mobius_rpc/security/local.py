"""The local identity of a stdio server, as records of the security store.

A stdio server has no credentials to check: whoever launched the process is
the caller.  It still answers under the organization's policy and writes the
audit log, as ``mobius serve --http`` does, so the identity it runs as must be
the store's own records: a user (the OS user by default, ``--user NAME``) and
an organization it belongs to (its personal organization ``personal:NAME``,
or ``--org ORG``).  :func:`local_identity` finds them, creating the user and
the personal organization (with the default rules, the user its owner) on the
first start, never twice, even when two servers start at once on one store;
the principal's ``user`` is the user's id, like a token's, so a rule made with
``mobius rule add --subject user:NAME`` applies on stdio as on HTTP.

:func:`serve_stdio_security` is the part of ``mobius serve --stdio`` that opens
the store, installs the policy and the audit log on the server and runs the
audit writer beside it; its end (EOF on stdin, SIGTERM) writes what is queued.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import anyio

from ..core.errors import McpError
from ..server.context import Context
from .admin import create_organization
from .audit import AuditLog
from .epoch import EpochWatch
from .middleware import _PUBLIC, UNAUTHENTICATED, Next, SecurityMiddleware
from .principal import AuthMethod, Principal, Role
from .store import AuditRecord, DuplicateError, Organization, SecurityStore, User

__all__ = ("local_identity", "serve_stdio_security", "NoAudit", "personal_org_id")


def personal_org_id(user_name: str) -> str:
    """The id of ``user_name``'s personal organization."""
    return f"personal:{user_name}"


class NoAudit(AuditLog):
    """An audit sink that keeps nothing (``mobius serve --stdio --no-audit``)."""

    async def append(self, **fields: Any) -> AuditRecord:
        return AuditRecord(seq=0, time=time.time(), method=str(fields.get("method", "")),
                           outcome=str(fields.get("outcome", "")))

    def append_later(self, **fields: Any) -> None:
        return None


class _LocalMiddleware(SecurityMiddleware):
    """The policy of a stdio session, which reads again what the session's identity
    depends on whenever the security epoch moved: the organization's rules version
    (told to the policy, the way API tokens tell it over HTTP, saving the
    organization's read per request: on SQLite a hop to a worker thread), the user's
    role there and whether the user is still active.  An admin who adds a rule,
    demotes the user or removes them is obeyed from the session's next request.

    Every such change moves the store's security epoch in the same transaction, so
    while the epoch (cheap to ask: :mod:`.epoch`) stands still what was read after it
    stands too.  The epoch is read *before* the records: a change committed between
    the two reads moves the epoch past what was seen, and the next request reads
    again.  The principal found is put on the request itself, so handlers that read
    ``ctx.transport.principal`` (project access) see the current role as well."""

    def __init__(self, store: SecurityStore, *, principal: Principal, user_name: str,
                 **options: Any) -> None:
        super().__init__(store, **options)
        self.epoch = EpochWatch(store)
        self._org_id = principal.organization
        self._user_name = user_name
        #: the identity as the session started: who is refused when it no longer holds
        self._started = principal
        #: (epoch, rules version, the principal now or None, why not)
        self._seen: tuple[int, int | None, Principal | None, str] | None = None

    async def _read(self, epoch: int) -> tuple[int, int | None, Principal | None, str]:
        org = await self.store.get_organization(self._org_id)
        version = None if org is None else org.rules_version
        user = await self.store.get_user(self._started.user)
        if user is None or user.disabled:
            return epoch, version, None, f"user {self._user_name!r} is disabled"
        member = await self.store.get_membership(self._org_id, user.id)
        if member is None:
            return epoch, version, None, (f"user {self._user_name!r} is no longer a member "
                                          f"of organization {self._org_id!r}")
        try:
            roles = frozenset({Role(member.role)})
        except ValueError:  # a role this version does not know grants nothing
            roles = frozenset()
        found = self._started if roles == self._started.roles \
            else replace(self._started, roles=roles)
        return epoch, version, found, ""

    async def __call__(self, ctx: Context, call_next: Next) -> dict[str, Any]:
        epoch = await self.epoch.current()
        seen = self._seen
        if seen is None or seen[0] != epoch:
            seen = self._seen = await self._read(epoch)
        self.policy.note_version(self._org_id, seen[1])
        principal = seen[2]
        if ctx.method not in _PUBLIC:
            if principal is None:
                named = ctx.params.get("name", ctx.params.get("uri"))
                await self._refuse(ctx, replace(self._started, roles=frozenset()),
                                   named if isinstance(named, str) else None,
                                   McpError(UNAUTHENTICATED, seen[3]), {})
            transport = ctx.request.transport
            if transport is not None and transport.principal is not principal:
                ctx.request = replace(ctx.request,
                                      transport=transport._replace(principal=principal))
        return await super().__call__(ctx, call_next)


async def _user(security: SecurityStore, name: str, audit: AuditLog | None) -> User:
    found = await security.get_user_by_name(name)
    if found is not None:
        return found
    user = User(id=uuid.uuid4().hex[:12], name=name, created_at=time.time())
    try:
        await security.create_user(user)
    except DuplicateError:  # another server on this store made it just now
        again = await security.get_user_by_name(name)
        if again is None:
            raise
        return again
    if audit is not None:
        await audit.append(method="admin/user.create", outcome="ok", target=user.id,
                           detail={"name": name, "local": True})
    return user


async def _org(security: SecurityStore, ref: str) -> Organization | None:
    found = await security.get_organization(ref)
    if found is not None:
        return found
    named = [o for o in await security.list_organizations() if o.name == ref]
    return named[0] if len(named) == 1 else None


async def local_identity(security: SecurityStore, *, user_name: str, org: str | None = None,
                         audit: AuditLog | None = None) -> Principal:
    """The principal of a stdio server run by ``user_name`` in ``org`` (an id or a name;
    None: the user's personal organization, made on first start).  ValueError (one
    line) when the user is disabled, ``org`` is unknown or the user is not a member."""
    user = await _user(security, user_name, audit)
    if user.disabled:
        raise ValueError(f"user {user_name!r} is disabled")
    if org is None:
        org_id = personal_org_id(user_name)
        if await security.get_organization(org_id) is None:
            try:
                await create_organization(security, f"{user_name}'s personal organization",
                                          owner_user_id=user.id, org_id=org_id, audit=audit)
            except DuplicateError:  # made, whole, by another server starting at the same time
                pass
    else:
        found = await _org(security, org)
        if found is None:
            raise ValueError(f"no organization {org!r} in the store (make it with: "
                             "mobius org create)")
        org_id = found.id
    # no wait for a concurrent first start: an organization is made with its owner's
    # membership in one transaction, so once it exists its owner does too
    member = await security.get_membership(org_id, user.id)
    if member is None:
        raise ValueError(f"user {user_name!r} is not a member of organization {org_id!r} "
                         "(add them with: mobius org add-member)")
    return Principal(user=user.id, organization=org_id, roles=frozenset({Role(member.role)}),
                     method=AuthMethod.LOCAL)


@asynccontextmanager
async def serve_stdio_security(server: Any, *, store_url: str | None, user_name: str,
                               org: str | None = None, audit: bool = True
                               ) -> AsyncIterator[Principal]:
    """Policy and audit on ``server`` for a stdio session: yields the local principal
    to serve as.  The store is ``store_url`` (else ``$MOBIUS_STORE``, else the SQLite
    file in the data directory); ``audit`` False keeps no audit records (a warning
    goes to stderr)."""
    from ..storage import store_url as resolve
    from .open import open_security_store

    async with open_security_store(resolve(store_url)) as (_, security):
        log: AuditLog = AuditLog(security) if audit else NoAudit(security)
        principal = await local_identity(security, user_name=user_name, org=org,
                                         audit=log if audit else None)
        # no ownership lookup: what ``--extensions ORG`` or ``--gateway`` attach is the
        # operator's own choice for this one local session (on HTTP, where several
        # organizations share a server, each sees only its own; see docs/security.md)
        middleware = _LocalMiddleware(security, principal=principal, user_name=user_name,
                                      audit=log)
        server.secure(policy=middleware, audit=log)
        if not audit:
            print("WARNING: the audit log is OFF (--no-audit): nothing this session does "
                  "is on record.", file=sys.stderr)
        async with anyio.create_task_group() as tg:
            if audit:
                tg.start_soon(log.run)  # allowed uses are written behind the answer
            tg.start_soon(middleware.epoch.run)  # PostgreSQL: changes by notice, not by read
            try:
                yield principal
            finally:
                tg.cancel_scope.cancel()  # the writer's end writes what is queued
