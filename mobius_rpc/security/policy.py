"""Who may do what: organizations' rules and the decisions made from them.

A :class:`~.store.Rule` allows or denies *actions* (list, call, read, get,
subscribe, complete) on things of one *kind* (tools, resources, prompts, and
later extensions and projects) whose name (a tool's or prompt's name, a
resource's URI, a template's URI template) matches a glob (``*`` any run of
characters, ``/`` included; ``?`` one character; the rest literal), for a
role, one user, or anyone in the organization (roles match exactly).  ``when``
narrows a rule to things whose annotations say so; an unstated hint takes the
protocol's default, so an unannotated tool counts as one that may destroy.

Deny by default; deny wins; every action needs ``list`` too (nobody uses what
they may not see) and listing a tool, resource or prompt needs its primary
action (call, read, get), so a list shows exactly what the caller can use.
Credential scopes of the form ``KIND:ACTION`` narrow, never widen; a thing
owned by another organization is refused before any rule.  docs/security.md
has the full model and the default rules.  Rules are compiled once per
organization and rules version (:class:`PolicyEngine`) and decisions cached,
so filtering a long list costs a dictionary lookup per item.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .principal import Principal, Role
from .store import Rule, SecurityStore

__all__ = ("Kind", "Action", "Effect", "PRIMARY_ACTION", "HINT_DEFAULTS", "DEFAULT_RULES",
           "Decision", "Explanation", "RuleSet", "PolicyEngine", "make_rule",
           "glob_regex")


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
    ("allow", "role:member", "*", "*", ("*",), {}, "members may use everything"),
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


class _Group:
    """The rules of one effect that may apply to one (principal, kind, action):
    the unconditional ones' patterns joined into one regular expression, so the
    common question "does any match?" is a single match whatever their number."""

    __slots__ = ("rules", "plain")

    def __init__(self, rules: list[_Compiled]) -> None:
        self.rules = tuple(rules)
        plain = [f"(?:{c.regex.pattern})" for c in rules if not c.rule.when]
        conditional = any(c.rule.when for c in rules)
        self.plain = re.compile("|".join(plain), re.DOTALL) if plain and not conditional \
            else None

    def first(self, name: str, notes: Mapping[str, Any]) -> Rule | None:
        """The first rule (by position) matching ``name`` and ``notes``."""
        if self.plain is not None and not self.plain.fullmatch(name):
            return None
        for c in self.rules:
            if c.regex.fullmatch(name) and _when_matches(c.rule, notes):
                return c.rule
        return None


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
        self._compiled = [_Compiled(r, glob_regex(r.pattern)) for r in self.rules]
        #: per (user, roles): per (kind, action): (deny group, allow group)
        self._subjects: dict[tuple[str, frozenset[Role]],
                             dict[tuple[str, str], tuple[_Group, _Group]]] = {}
        self._when_keys = tuple(sorted({k for r in self.rules for k in r.when}))
        self._cache: dict[tuple[Any, ...], Decision] = {}

    def decide(self, principal: Principal, action: str, kind: str, name: str,
               annotations: Mapping[str, Any] | None = None, *,
               owner: str | None = None) -> Decision:
        """May ``principal`` do ``action`` on the ``kind`` thing called ``name``?"""
        notes = annotations or {}
        when = self._when_keys
        key: tuple[Any, ...]
        if not when:
            key = (principal, action, kind, name, owner)
        elif len(when) == 1:  # the default rules: one condition (readOnlyHint)
            key = (principal, action, kind, name, owner, notes.get(when[0], _MISSING))
        else:
            key = (principal, action, kind, name, owner, *[notes.get(k, _MISSING) for k in when])
        try:
            cached = self._cache.get(key)
        except TypeError:  # an annotation value that cannot be a key: decide uncached
            return self.explain(principal, action, kind, name, notes, owner=owner,
                                collect=False).decision
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

    def _groups(self, principal: Principal, kind: str, action: str) -> tuple[_Group, _Group]:
        """The rules that can apply to this principal, kind and action, compiled once."""
        key = (principal.user, principal.roles)
        table = self._subjects.get(key)
        if table is None:
            if len(self._subjects) >= _CACHE_LIMIT:
                self._subjects.clear()
            table = self._subjects[key] = {}
        groups = table.get((kind, action))
        if groups is None:
            mine = [c for c in self._compiled if _subject_matches(c.rule, principal)
                    and c.rule.kind in (_ALL, kind)
                    and (_ALL in c.rule.actions or action in c.rule.actions)]
            groups = table[(kind, action)] = (
                _Group([c for c in mine if c.rule.effect == Effect.DENY]),
                _Group([c for c in mine if c.rule.effect == Effect.ALLOW]))
        return groups

    def _single(self, principal: Principal, action: str, kind: str, name: str,
                notes: Mapping[str, Any]) -> Decision:
        denies, allows = self._groups(principal, kind, action)
        deny = denies.first(name, notes)
        if deny is not None:
            return Decision(False, deny, f"rule {deny.id} denies {action} on {kind} {name}")
        allow = allows.first(name, notes)
        if allow is None:
            return Decision(False, None,
                            f"no rule allows {action} on {kind} {name} (deny by default)")
        scoped = _scopes_allow(principal.scopes, kind, action)
        if scoped is False:
            return Decision(False, None, f"the credential's scopes do not include {kind}:{action}")
        return Decision(True, allow, f"rule {allow.id} allows {action} on {kind} {name}")


class PolicyEngine:
    """Compiled rule sets per organization, recompiled when its rules version moves.

    Each lookup re-reads the organization's version from the store unless the
    last check is younger than ``max_staleness`` seconds (0, the default:
    every request sees a rule change made by any replica at once).
    """

    #: how long a version noted by the authenticator stands for a store read (seconds)
    HINT_TTL = 1.0

    def __init__(self, store: SecurityStore, *, max_staleness: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.max_staleness = max_staleness
        self._clock = clock
        self._sets: dict[str, tuple[RuleSet, float]] = {}
        self._hints: dict[str, tuple[int, float]] = {}

    def note_version(self, org_id: str, version: int | None) -> None:
        """The organization's rules version as just read with a request's credential
        (:func:`~.tokens.resolve_principal`): that request's decision need not read it
        again.  A hint stands for :attr:`HINT_TTL` seconds at most; each request
        notes a fresh one, so a rule change shows from the first request that
        authenticates after it, as if the version had been read for that request."""
        if version is None:
            self._hints.pop(org_id, None)
        else:
            if len(self._hints) >= _CACHE_LIMIT:
                self._hints.clear()
            self._hints[org_id] = (version, self._clock())

    def ready(self, org_id: str) -> RuleSet | None:
        """:meth:`rules_for` when it would not read the store (a fresh version hint
        or cached set that match), else None: await :meth:`rules_for`.  The same
        answer without a coroutine, for the per-request check."""
        cached = self._sets.get(org_id)
        if cached is None:
            return None
        now = self._clock()
        if self.max_staleness > 0 and now - cached[1] < self.max_staleness:
            return cached[0]
        hint = self._hints.get(org_id)
        if hint is None or now - hint[1] >= self.HINT_TTL or hint[0] != cached[0].version:
            return None
        if self.max_staleness > 0:  # when the set was last checked (only read then)
            self._sets[org_id] = (cached[0], now)
        return cached[0]

    async def rules_for(self, org_id: str) -> RuleSet:
        found = self.ready(org_id)  # the cached set, when nothing needs reading
        if found is not None:
            return found
        now = self._clock()
        cached = self._sets.get(org_id)
        hint = self._hints.get(org_id)
        if hint is not None and now - hint[1] < self.HINT_TTL:
            version: int | None = hint[0]
        else:
            org = await self.store.get_organization(org_id)
            version = None if org is None else org.rules_version
        if version is None:
            return RuleSet(org_id, -1, ())  # no such organization: nothing is allowed
        if cached is not None and cached[0].version == version:
            self._sets[org_id] = (cached[0], now)
            return cached[0]
        rules = RuleSet(org_id, version, await self.store.list_rules(org_id))
        self._sets[org_id] = (rules, now)
        return rules

    def current(self, org_id: str) -> RuleSet | None:
        """The rule set :meth:`rules_for` last returned for ``org_id``, without a store
        read: for a handler deciding more (which projects a caller sees) inside a request
        whose policy check just called :meth:`rules_for`, so it is just as fresh."""
        cached = self._sets.get(org_id)
        return cached[0] if cached is not None else None

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
