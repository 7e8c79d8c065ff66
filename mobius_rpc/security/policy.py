"""Who may do what: organizations' rules and the decisions made from them.

A :class:`~.store.Rule` of an organization allows or denies *actions*
(list, call, read, get, subscribe, complete) on *things* of one *kind*
(tools, resources, prompts, and later extensions and projects) whose name
(a tool's or prompt's name, a resource's URI, a template's URI template)
matches a glob, for a *subject*: a role, one user, or anyone acting in the
organization.  ``when`` narrows a rule to things whose annotations say so,
e.g. ``{"readOnlyHint": True}``; a hint the thing does not state takes the
protocol's default (readOnlyHint false, destructiveHint true, idempotentHint
false, openWorldHint true), so an unannotated tool counts as one that may
destroy.

How a decision is made (:meth:`RuleSet.decide`):

* Deny by default: with no rule allowing it, an action is refused.
* Deny wins: one matching deny rule refuses, whatever allows it.
* Visibility: every action needs ``list`` as well, because a caller may not
  use what it may not see; and ``list`` of a tool, resource or prompt needs
  its primary action too (call, read, get), so a list shows exactly what the
  caller can use.
* Scopes narrow, never widen: a credential that carries scopes of the form
  ``KIND:ACTION`` (``*`` for either; ``tools:call`` implies ``tools:list``)
  allows only those; scopes of other shapes (OAuth's ``openid``, ...) are
  not about this policy and are ignored.
* Ownership: a thing that belongs to another organization (the ``owner``
  the caller passes, see :class:`Ownership`) is refused before any rule.
* Roles match exactly: a rule for ``member`` does not apply to an admin.
  Glob patterns know ``*`` (any run of characters, ``/`` included) and ``?``
  (one character); everything else is literal and case-sensitive.

Rules are compiled once per organization and rules version
(:class:`PolicyEngine`), and decisions are cached within a compiled set, so
filtering a long list costs a dictionary lookup per item.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .audit import AuditLog
from .principal import Principal, Role
from .store import Membership, Organization, Rule, SecurityStore

__all__ = ("Kind", "Action", "Effect", "PRIMARY_ACTION", "HINT_DEFAULTS", "DEFAULT_RULES",
           "Decision", "Explanation", "RuleSet", "PolicyEngine", "Ownership", "make_rule",
           "glob_regex", "create_organization", "add_rule", "remove_rule")


class Kind(StrEnum):
    TOOLS = "tools"
    RESOURCES = "resources"
    PROMPTS = "prompts"
    EXTENSIONS = "extensions"
    PROJECTS = "projects"


class Action(StrEnum):
    LIST = "list"
    CALL = "call"
    READ = "read"
    GET = "get"
    SUBSCRIBE = "subscribe"
    COMPLETE = "complete"


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


#: what "using" a listed thing means; listing needs it too
PRIMARY_ACTION: Mapping[Kind, Action] = {Kind.TOOLS: Action.CALL, Kind.RESOURCES: Action.READ,
                                         Kind.PROMPTS: Action.GET}
#: the protocol's defaults for tool hints a tool does not state
HINT_DEFAULTS: Mapping[str, Any] = {"readOnlyHint": False, "destructiveHint": True,
                                    "idempotentHint": False, "openWorldHint": True}
_MISSING = object()
_KINDS = frozenset(k.value for k in Kind)
_ACTIONS = frozenset(a.value for a in Action)
_EFFECTS = frozenset(e.value for e in Effect)
_ROLES = frozenset(r.value for r in Role)
_ALL = "*"
_CACHE_LIMIT = 8192

#: a new organization's rules: (effect, subject, kind, pattern, actions, when, description)
DEFAULT_RULES: tuple[tuple[str, str, str, str, tuple[str, ...], dict[str, Any], str], ...] = (
    ("allow", "role:owner", "*", "*", ("*",), {}, "owners may do everything"),
    ("allow", "role:admin", "*", "*", ("*",), {}, "admins may do everything"),
    ("allow", "role:member", "*", "*", ("*",), {}, "members may list, call, read and get"),
    ("allow", "role:viewer", "*", "*", ("list", "read", "get", "subscribe", "complete"), {},
     "viewers may list, read and get"),
    ("allow", "role:viewer", "tools", "*", ("call",), {"readOnlyHint": True},
     "viewers may call only tools marked read-only"),
)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """``*`` any run of characters, ``?`` one character, the rest literal."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL)


def make_rule(org_id: str, effect: str, subject: str, kind: str, pattern: str,
              actions: Iterable[str] = ("*",), when: Mapping[str, Any] | None = None,
              description: str = "", *, rule_id: str | None = None,
              now: float | None = None) -> Rule:
    """A validated rule; ``subject`` is ``role:NAME``, ``user:ID`` or ``*``.

    Raises ValueError naming what is wrong, so a CLI can print it as is.
    """
    if effect not in _EFFECTS:
        raise ValueError(f"effect must be allow or deny, not {effect!r}")
    if subject == _ALL:
        subject_type, subject_value = "any", _ALL
    else:
        subject_type, _, subject_value = subject.partition(":")
        if subject_type == "role" and subject_value not in _ROLES:
            raise ValueError(f"unknown role {subject_value!r}")
        if subject_type not in ("role", "user") or not subject_value:
            raise ValueError(f"subject must be role:NAME, user:ID or *, not {subject!r}")
    if kind != _ALL and kind not in _KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    acts = tuple(actions)
    if not acts or any(a != _ALL and a not in _ACTIONS for a in acts):
        raise ValueError(f"actions must be * or among {', '.join(Action)}: {acts!r}")
    if not pattern:
        raise ValueError("the pattern is empty")
    conditions = dict(when or {})
    for key, value in conditions.items():
        if not isinstance(value, (bool, int, float, str)) or value is None:
            raise ValueError(f"condition {key!r} must be a boolean, number or string")
    return Rule(id=rule_id or uuid.uuid4().hex[:12], org_id=org_id, effect=effect,
                subject_type=subject_type, subject=subject_value, kind=kind, pattern=pattern,
                actions=acts, when=conditions, description=description,
                created_at=time.time() if now is None else now)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    #: the rule that decided (None: deny by default, or refused before any rule)
    rule: Rule | None
    reason: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why :meth:`RuleSet.decide` answered what it did, step by step."""

    decision: Decision
    #: (the action checked, its decision) for each step, in order
    steps: tuple[tuple[str, Decision], ...]
    #: every rule whose subject, kind, pattern and conditions matched
    matching: tuple[Rule, ...] = field(default=())

    def lines(self) -> list[str]:
        verdict = "allowed" if self.decision.allowed else "denied"
        out = [f"{verdict}: {self.decision.reason}"]
        out += [f"  {action}: {'allowed' if d.allowed else 'denied'} - {d.reason}"
                for action, d in self.steps]
        out += [f"  matching rule {r.id}: {r.effect} {r.subject_type}:{r.subject} {r.kind} "
                f"{r.pattern!r} {','.join(r.actions)}" for r in self.matching]
        return out


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    regex: re.Pattern[str]
    deny: bool


def _subject_matches(rule: Rule, principal: Principal) -> bool:
    if rule.subject_type == "any":
        return True
    if rule.subject_type == "user":
        return rule.subject == principal.user
    return any(role.value == rule.subject for role in principal.roles)


def _when_matches(rule: Rule, annotations: Mapping[str, Any]) -> bool:
    for key, wanted in rule.when.items():
        actual = annotations.get(key, HINT_DEFAULTS.get(key, _MISSING))
        if actual is _MISSING or isinstance(actual, bool) != isinstance(wanted, bool) \
                or actual != wanted:
            return False
    return True


def _scopes_allow(scopes: frozenset[str], kind: str, action: str) -> bool | None:
    """Whether the credential's policy scopes allow ``kind:action`` (None: it has none)."""
    pairs = [s.partition(":") for s in scopes if s.count(":") == 1]
    shaped = [(k, a) for k, _, a in pairs if (k == _ALL or k in _KINDS)
              and (a == _ALL or a in _ACTIONS)]
    if not shaped:
        return None
    return any((k in (_ALL, kind)) and (a in (_ALL, action) or action == Action.LIST)
               for k, a in shaped)


class RuleSet:
    """One organization's rules, compiled; decisions are pure and cached."""

    def __init__(self, org_id: str, version: int, rules: Iterable[Rule]) -> None:
        self.org_id = org_id
        self.version = version
        self.rules = tuple(sorted(rules, key=lambda r: r.position))
        self._by: dict[tuple[str, str], tuple[_Compiled, ...]] = {}
        compiled = [_Compiled(r, glob_regex(r.pattern), r.effect == Effect.DENY)
                    for r in self.rules]
        for kind in Kind:
            for action in Action:
                self._by[(kind, action)] = tuple(
                    c for c in compiled if c.rule.kind in (_ALL, kind)
                    and (_ALL in c.rule.actions or action in c.rule.actions))
        self._when_keys = tuple(sorted({k for r in self.rules for k in r.when}))
        self._cache: dict[tuple[Any, ...], Decision] = {}

    def decide(self, principal: Principal, action: str, kind: str, name: str,
               annotations: Mapping[str, Any] | None = None, *,
               owner: str | None = None) -> Decision:
        """May ``principal`` do ``action`` on the ``kind`` thing called ``name``?"""
        notes = annotations or {}
        try:
            key = (principal, action, kind, name, owner,
                   tuple(notes.get(k, _MISSING) for k in self._when_keys))
            hash(key)
        except TypeError:
            return self.explain(principal, action, kind, name, notes, owner=owner).decision
        cached = self._cache.get(key)
        if cached is None:
            cached = self.explain(principal, action, kind, name, notes, owner=owner,
                                  collect=False).decision
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = cached
        return cached

    def explain(self, principal: Principal, action: str, kind: str, name: str,
                annotations: Mapping[str, Any] | None = None, *, owner: str | None = None,
                collect: bool = True) -> Explanation:
        """The decision with each step and (``collect``) every matching rule."""
        notes = annotations or {}
        if kind not in _KINDS or action not in _ACTIONS:
            return Explanation(Decision(False, None, f"unknown kind or action {kind}:{action}"),
                               ())
        if principal.organization != self.org_id:
            return Explanation(Decision(False, None, "the caller acts in another organization"),
                               ())
        if owner is not None and owner != principal.organization:
            return Explanation(Decision(False, None,
                                        f"{kind} {name} belongs to another organization"), ())
        primary = PRIMARY_ACTION.get(Kind(kind))
        steps_wanted = [Action.LIST.value]
        if action != Action.LIST:
            steps_wanted.append(action)
        elif primary is not None:
            steps_wanted.append(primary.value)
        steps: list[tuple[str, Decision]] = []
        final: Decision | None = None
        for step in steps_wanted:
            decision = self._single(principal, step, kind, name, notes)
            steps.append((step, decision))
            if not decision.allowed:
                final = decision
                break
        if final is None:
            final = steps[-1][1] if action != Action.LIST else steps[0][1]
        matching: tuple[Rule, ...] = ()
        if collect:
            matching = tuple(r for r in self.rules if _subject_matches(r, principal)
                             and r.kind in (_ALL, kind) and glob_regex(r.pattern).fullmatch(name)
                             and _when_matches(r, notes))
        return Explanation(final, tuple(steps), matching)

    def _single(self, principal: Principal, action: str, kind: str, name: str,
                notes: Mapping[str, Any]) -> Decision:
        allow: Rule | None = None
        for c in self._by[(kind, action)]:
            rule = c.rule
            if not _subject_matches(rule, principal) or not c.regex.fullmatch(name) \
                    or not _when_matches(rule, notes):
                continue
            if c.deny:
                return Decision(False, rule, f"rule {rule.id} denies {action} on {kind} {name}")
            if allow is None:
                allow = rule
        if allow is None:
            return Decision(False, None,
                            f"no rule allows {action} on {kind} {name} (deny by default)")
        scoped = _scopes_allow(principal.scopes, kind, action)
        if scoped is False:
            return Decision(False, None, f"the credential's scopes do not include {kind}:{action}")
        return Decision(True, allow, f"rule {allow.id} allows {action} on {kind} {name}")


class Ownership:
    """Which organization a tool, resource or prompt belongs to, when one does.

    Things nobody assigned are shared: every organization's rules decide on
    them.  A layer that installs things per organization (a gateway's
    upstream, a marketplace extension) assigns them here, or passes its own
    ``(kind, name) -> org | None`` function to the middleware instead.
    """

    def __init__(self) -> None:
        self._owners: dict[tuple[str, str], str] = {}

    def assign(self, kind: str, name: str, org_id: str) -> None:
        self._owners[(kind, name)] = org_id

    def release(self, kind: str, name: str) -> None:
        self._owners.pop((kind, name), None)

    def __call__(self, kind: str, name: str) -> str | None:
        return self._owners.get((kind, name))


class PolicyEngine:
    """Compiled rule sets per organization, recompiled when its rules version moves.

    Each lookup re-reads the organization's version from the store unless the
    last check is younger than ``max_staleness`` seconds (0, the default:
    every request sees a rule change made by any replica at once).
    """

    def __init__(self, store: SecurityStore, *, max_staleness: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.max_staleness = max_staleness
        self._clock = clock
        self._sets: dict[str, tuple[RuleSet, float]] = {}

    async def rules_for(self, org_id: str) -> RuleSet:
        now = self._clock()
        cached = self._sets.get(org_id)
        if cached is not None and self.max_staleness > 0 and now - cached[1] < self.max_staleness:
            return cached[0]
        org = await self.store.get_organization(org_id)
        if org is None:
            return RuleSet(org_id, -1, ())  # no such organization: nothing is allowed
        if cached is not None and cached[0].version == org.rules_version:
            self._sets[org_id] = (cached[0], now)
            return cached[0]
        rules = RuleSet(org_id, org.rules_version, await self.store.list_rules(org_id))
        self._sets[org_id] = (rules, now)
        return rules

    def invalidate(self, org_id: str | None = None) -> None:
        if org_id is None:
            self._sets.clear()
        else:
            self._sets.pop(org_id, None)

    async def decide(self, principal: Principal, action: str, kind: str, name: str,
                     annotations: Mapping[str, Any] | None = None, *,
                     owner: str | None = None) -> Decision:
        rules = await self.rules_for(principal.organization)
        return rules.decide(principal, action, kind, name, annotations, owner=owner)


# ------------------------------------------------------------- admin changes

async def create_organization(store: SecurityStore, name: str, *, owner_user_id: str,
                              org_id: str | None = None, default_rules: bool = True,
                              audit: AuditLog | None = None, actor: Principal | None = None,
                              now: float | None = None) -> Organization:
    """A new organization with ``owner_user_id`` as its owner and (unless told
    otherwise) :data:`DEFAULT_RULES`, which its admins may then change."""
    at = time.time() if now is None else now
    if await store.get_user(owner_user_id) is None:
        raise ValueError(f"no user {owner_user_id!r}")
    org = Organization(id=org_id or uuid.uuid4().hex[:12], name=name, created_at=at)
    await store.create_organization(org)
    await store.put_membership(Membership(org.id, owner_user_id, Role.OWNER.value, at))
    if default_rules:
        for effect, subject, kind, pattern, actions, when, text in DEFAULT_RULES:
            await store.add_rule(make_rule(org.id, effect, subject, kind, pattern, actions,
                                           when, text, now=at))
    if audit is not None:
        await audit.append(method="admin/org.create", outcome="ok", principal=actor,
                           target=org.id, detail={"name": name, "owner": owner_user_id})
    return await store.get_organization(org.id) or org


async def add_rule(store: SecurityStore, rule: Rule, *, audit: AuditLog | None = None,
                   actor: Principal | None = None) -> Rule:
    """Store ``rule`` (from :func:`make_rule`); recorded before it takes effect."""
    if audit is not None:
        await audit.append(method="admin/rule.add", outcome="ok", principal=actor,
                           target=rule.id, detail={"org": rule.org_id, "effect": rule.effect,
                                                   "subject": f"{rule.subject_type}:"
                                                              f"{rule.subject}",
                                                   "kind": rule.kind, "pattern": rule.pattern,
                                                   "actions": list(rule.actions)})
    return await store.add_rule(rule)


async def remove_rule(store: SecurityStore, org_id: str, rule_id: str, *,
                      audit: AuditLog | None = None, actor: Principal | None = None) -> bool:
    removed = await store.delete_rule(org_id, rule_id)
    if audit is not None:
        await audit.append(method="admin/rule.remove", outcome="ok" if removed else "error",
                           principal=actor, target=rule_id, detail={"org": org_id})
    return removed
