"""Admin changes: organizations, memberships and rules, each on the record.

Every change is written to the store, then recorded in the audit log (when
one is given) before the function returns, so it is on record before anyone
is told it happened.  A change made on behalf of a principal (``actor``) is
refused with PermissionError unless the actor is an owner or an admin of the
organization; ``actor=None`` is a trusted caller, such as the local CLI.
"""

from __future__ import annotations

import time
import uuid

from .audit import AuditLog
from .policy import DEFAULT_RULES, make_rule
from .principal import Principal, Role
from .store import Membership, Organization, Rule, SecurityStore

__all__ = ("create_organization", "set_membership", "remove_membership", "add_rule",
           "remove_rule")


def _check_actor(actor: Principal | None, org_id: str) -> None:
    if actor is not None and not (actor.organization == org_id
                                  and actor.has_role(Role.OWNER, Role.ADMIN)):
        raise PermissionError(f"{actor.user} may not change organization {org_id}")


async def create_organization(store: SecurityStore, name: str, *, owner_user_id: str,
                              org_id: str | None = None, default_rules: bool = True,
                              audit: AuditLog | None = None, actor: Principal | None = None,
                              now: float | None = None) -> Organization:
    """A new organization owned by ``owner_user_id``, with :data:`DEFAULT_RULES`
    unless told otherwise (its owners and admins may change them).

    The organization, its owner and its rules are written in one step of the store
    (:meth:`~.store.SecurityStore.create_organization_with_owner`): whoever sees the
    organization sees it whole.  :class:`~.store.DuplicateError` when ``org_id``
    exists already (then nothing was written and nothing is audited)."""
    at = time.time() if now is None else now
    if await store.get_user(owner_user_id) is None:
        raise ValueError(f"no user {owner_user_id!r}")
    org = Organization(id=org_id or uuid.uuid4().hex[:12], name=name, created_at=at)
    rules = [make_rule(org.id, effect, subject, kind, pattern, actions, when, text, now=at)
             for effect, subject, kind, pattern, actions, when, text in (
                 DEFAULT_RULES if default_rules else ())]
    stored = await store.create_organization_with_owner(
        org, Membership(org.id, owner_user_id, Role.OWNER.value, at), rules)
    if audit is not None:
        await audit.append(method="admin/org.create", outcome="ok", principal=actor,
                           target=org.id, detail={"name": name, "owner": owner_user_id})
    return stored


async def set_membership(store: SecurityStore, org_id: str, user_id: str, role: Role, *,
                         audit: AuditLog | None = None, actor: Principal | None = None,
                         now: float | None = None) -> Membership:
    """Make ``user_id`` a member of ``org_id`` with ``role`` (or change their role);
    it applies from their next request, since tokens read it each time."""
    _check_actor(actor, org_id)
    if actor is not None and role is Role.OWNER and not actor.has_role(Role.OWNER):
        raise PermissionError("only an owner may make an owner")
    if await store.get_user(user_id) is None:
        raise ValueError(f"no user {user_id!r}")
    membership = Membership(org_id, user_id, role.value, time.time() if now is None else now)
    await store.put_membership(membership)
    if audit is not None:
        await audit.append(method="admin/member.set", outcome="ok", principal=actor,
                           target=user_id, detail={"org": org_id, "role": role.value})
    return membership


async def remove_membership(store: SecurityStore, org_id: str, user_id: str, *,
                            audit: AuditLog | None = None,
                            actor: Principal | None = None) -> bool:
    _check_actor(actor, org_id)
    removed = await store.delete_membership(org_id, user_id)
    if audit is not None:
        await audit.append(method="admin/member.remove", outcome="ok" if removed else "error",
                           principal=actor, target=user_id, detail={"org": org_id})
    return removed


async def add_rule(store: SecurityStore, rule: Rule, *, audit: AuditLog | None = None,
                   actor: Principal | None = None) -> Rule:
    """Store ``rule`` (from :func:`make_rule`); it applies from the next decision."""
    _check_actor(actor, rule.org_id)
    stored = await store.add_rule(rule)
    if audit is not None:
        await audit.append(method="admin/rule.add", outcome="ok", principal=actor,
                           target=rule.id, detail={
                               "org": rule.org_id, "effect": rule.effect, "kind": rule.kind,
                               "subject": f"{rule.subject_type}:{rule.subject}",
                               "pattern": rule.pattern, "actions": list(rule.actions)})
    return stored


async def remove_rule(store: SecurityStore, org_id: str, rule_id: str, *,
                      audit: AuditLog | None = None, actor: Principal | None = None) -> bool:
    _check_actor(actor, org_id)
    removed = await store.delete_rule(org_id, rule_id)
    if audit is not None:
        await audit.append(method="admin/rule.remove", outcome="ok" if removed else "error",
                           principal=actor, target=rule_id, detail={"org": org_id})
    return removed
