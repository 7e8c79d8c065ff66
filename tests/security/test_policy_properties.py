"""Property tests: decisions against a naive reference, and lists against uses.

The reference below is written from the rules as docs/security.md states
them, without looking at how policy.py organizes the work: a recursive glob
matcher, and a plain walk over every rule for every action involved.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobius_rpc.core.errors import McpError
from mobius_rpc.security.audit import AuditLog
from mobius_rpc.security.policy import PolicyEngine, RuleSet, make_rule
from mobius_rpc.security.principal import AuthMethod, Principal, Role
from mobius_rpc.security.store import MemorySecurityStore, Organization, Rule
from mobius_rpc.server.app import Server
from tests.conftest import connect
from tests.security.support import Caller, secured

ORG = "O"
KINDS = ["tools", "resources", "prompts", "extensions", "projects"]
ACTIONS = ["list", "call", "read", "get", "subscribe", "complete"]
USES = {"tools": "call", "resources": "read", "prompts": "get"}
DEFAULTS = {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": False,
            "openWorldHint": True}
TOOLS: dict[str, dict[str, Any] | None] = {
    "aa": {"readOnlyHint": True}, "ab": {"readOnlyHint": False, "destructiveHint": True},
    "ba": None, "bb": {"readOnlyHint": False, "destructiveHint": False},
    "a.b": {"readOnlyHint": True, "openWorldHint": False}}
PROMPTS = ["pa", "pb", "ab"]
RESOURCES = ["r://a", "r://ab", "r://b/a"]


# ----------------------------------------------------------------- reference

def glob(pattern: str, text: str) -> bool:
    if not pattern:
        return not text
    if pattern[0] == "*":
        return any(glob(pattern[1:], text[i:]) for i in range(len(text) + 1))
    return bool(text) and pattern[0] in ("?", text[0]) and glob(pattern[1:], text[1:])


def applies(rule: Rule, who: Principal, action: str, kind: str, name: str,
            notes: dict[str, Any]) -> bool:
    if rule.subject_type == "role" and rule.subject not in {r.value for r in who.roles}:
        return False
    if rule.subject_type == "user" and rule.subject != who.user:
        return False
    if rule.kind != "*" and rule.kind != kind:
        return False
    if "*" not in rule.actions and action not in rule.actions:
        return False
    for key, want in rule.when.items():
        have = notes[key] if key in notes else DEFAULTS.get(key, "absent")
        if type(have) is not type(want) or have != want:
            return False
    return glob(rule.pattern, name)


def scope_ok(who: Principal, kind: str, action: str) -> bool:
    ours = []
    for scope in who.scopes:
        bits = scope.split(":")
        if len(bits) == 2 and bits[0] in ["*", *KINDS] and bits[1] in ["*", *ACTIONS]:
            ours.append(bits)
    if not ours:
        return True
    return any(k in ("*", kind) and (a in ("*", action) or action == "list") for k, a in ours)


def one_action(rules: list[Rule], who: Principal, action: str, kind: str, name: str,
               notes: dict[str, Any]) -> bool:
    hits = [r for r in rules if applies(r, who, action, kind, name, notes)]
    if any(r.effect == "deny" for r in hits) or not hits:
        return False
    return scope_ok(who, kind, action)


def reference(rules: list[Rule], who: Principal, action: str, kind: str, name: str,
              notes: dict[str, Any] | None, owner: str | None = None) -> bool:
    if who.organization != ORG or (owner is not None and owner != who.organization):
        return False
    needed = {"list", action}
    if action == "list" and kind in USES:
        needed.add(USES[kind])
    return all(one_action(rules, who, a, kind, name, notes or {}) for a in needed)


# ---------------------------------------------------------------- strategies

patterns = st.one_of(
    st.sampled_from(["*", "*", "a*", "*b", "?a", "?b", "*a*", "a.b", "p*", "r://*", "r://a*",
                     "r://?", "r://b/*", "zz"]),
    st.text(alphabet="ab*?./:r", min_size=1, max_size=6))
subjects = st.sampled_from(["*", "*", "role:owner", "role:admin", "role:member", "role:viewer",
                            "user:u1", "user:u2"])
conditions = st.sampled_from([{}, {}, {"readOnlyHint": True}, {"readOnlyHint": False},
                              {"destructiveHint": False}, {"destructiveHint": True},
                              {"openWorldHint": False}, {"openWorldHint": True}])
action_sets = st.one_of(st.just(("*",)), st.just(("*",)), st.just(("list", "call", "read", "get")),
                        st.lists(st.sampled_from(ACTIONS), min_size=1,
                                                  max_size=3, unique=True).map(tuple))


@st.composite
def rule_sets(draw: st.DrawFn) -> list[Rule]:
    drafts = [make_rule(ORG, draw(st.sampled_from(["allow", "allow", "allow", "deny"])),
                        draw(subjects), draw(st.sampled_from(["*", "tools", "resources",
                                                              "prompts"])),
                        draw(patterns), draw(action_sets), draw(conditions), now=0.0)
              for _ in range(draw(st.integers(0, 10)))]
    if draw(st.booleans()):  # half the organizations open everything, and rules carve out
        drafts.insert(draw(st.integers(0, len(drafts))),
                      make_rule(ORG, "allow", "*", "*", "*", ("*",), now=0.0))
    return [replace(rule, id=f"r{i}", position=i + 1) for i, rule in enumerate(drafts)]


principals = st.builds(
    lambda user, roles, scopes, org: Principal(user, org, frozenset(roles), frozenset(scopes),
                                               AuthMethod.API_TOKEN),
    st.sampled_from(["u1", "u2", "u3"]), st.sets(st.sampled_from(list(Role)), max_size=2),
    st.sets(st.sampled_from(["tools:call", "*:read", "prompts:*", "openid", "tools:list"]),
            max_size=2),
    st.sampled_from([ORG, ORG, ORG, ORG, ORG, "other"]))
names = st.sampled_from([*TOOLS, *PROMPTS, *RESOURCES, "zz", "r://zz"])
notes_strategy = st.sampled_from([None, *TOOLS.values(), {"readOnlyHint": 1}])


@settings(max_examples=600, deadline=None)
@given(rule_sets(), principals, st.sampled_from(ACTIONS), st.sampled_from(KINDS), names,
       notes_strategy, st.sampled_from([None, None, None, ORG, ORG, "other"]))
def test_each_decision_matches_the_reference(rules: list[Rule], who: Principal, action: str,
                                             kind: str, name: str,
                                             notes: dict[str, Any] | None,
                                             owner: str | None) -> None:
    compiled = RuleSet(ORG, 1, rules)
    decision = compiled.decide(who, action, kind, name, notes, owner=owner)
    assert decision.allowed == reference(rules, who, action, kind, name, notes, owner)
    assert compiled.decide(who, action, kind, name, notes, owner=owner) == decision  # cached
    if decision.rule is not None:
        expected = "allow" if decision.allowed else "deny"
        assert decision.rule.effect == expected and decision.rule in rules


# ------------------------------------------------------ through a real server

def build() -> Server:
    server = Server("prop", "1.0")
    for tool, notes in TOOLS.items():
        server.tools.add(lambda: "ok", name=tool, annotations=notes)
    for prompt in PROMPTS:
        server.prompts.add(lambda: "hi", name=prompt)
    for uri in RESOURCES:
        server.resources.add(uri, lambda: "text")
    return server


async def scenario(rules: list[Rule], who: Principal) -> None:
    store = MemorySecurityStore()
    await store.create_organization(Organization(ORG, "org", 0.0, rules_version=1))
    store.rules[ORG] = rules
    server = build()
    secured(server, store, Caller(who), audit=AuditLog(store))
    async with connect(server) as client:
        listed = {
            "tools": {t["name"] for t in (await client.request("tools/list", {}))["tools"]},
            "prompts": {p["name"] for p in (await client.request("prompts/list", {}))["prompts"]},
            "resources": {r["uri"] for r in
                          (await client.request("resources/list", {}))["resources"]}}
        used: dict[str, set[str]] = {"tools": set(), "prompts": set(), "resources": set()}
        for kind, items, method, key in (("tools", [*TOOLS, "zz"], "tools/call", "name"),
                                         ("prompts", [*PROMPTS, "zz"], "prompts/get", "name"),
                                         ("resources", [*RESOURCES, "r://zz"],
                                          "resources/read", "uri")):
            for item in items:
                try:
                    await client.request(method, {key: item})
                except McpError as exc:
                    # a refusal reads exactly like the server's "unknown" error
                    assert exc.data == {key: item} and ("Unknown" in exc.message
                                                        or "not found" in exc.message)
                else:
                    used[kind].add(item)
    assert listed == used
    for kind, items in (("tools", TOOLS), ("prompts", PROMPTS), ("resources", RESOURCES)):
        for item in items:
            notes = TOOLS[item] if kind == "tools" else None
            assert (item in used[kind]) == reference(rules, who, USES[kind], kind, item, notes)
    calls = sum(len(v) for v in (TOOLS, PROMPTS, RESOURCES)) + 3
    assert len(store.audit_records) == calls


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_sets(), principals)
def test_what_is_listed_is_exactly_what_may_be_used(rules: list[Rule], who: Principal) -> None:
    anyio.run(scenario, rules, who)


queries = st.lists(st.tuples(principals, st.sampled_from(ACTIONS), st.sampled_from(KINDS), names,
                             notes_strategy), min_size=1, max_size=8)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_sets(), rule_sets(), queries, st.data())
def test_cached_decisions_follow_rule_changes(first: list[Rule], later: list[Rule],
                                              asked: list[tuple[Any, ...]],
                                              data: st.DataObject) -> None:
    """Decisions through the engine's caches (the compiled rule set per version, the
    decisions per principal and target, the version hint the authenticator leaves)
    are the reference's for the rules as they stand, before and after each change."""
    later = [replace(rule, id=f"l{i}") for i, rule in enumerate(later)]

    async def scenario() -> None:
        store = MemorySecurityStore()
        await store.create_organization(Organization(ORG, "org", 0.0, rules_version=1))
        engine = PolicyEngine(store)
        for rule in first:
            await store.add_rule(rule)

        async def agree() -> None:
            org = await store.get_organization(ORG)
            assert org is not None
            engine.note_version(ORG, org.rules_version)  # as a token check does
            current = await store.list_rules(ORG)
            for who, action, kind, name, notes in asked:
                for _ in range(2):  # the second answer comes from the caches
                    decision = await engine.decide(who, action, kind, name, notes)
                    assert decision.allowed == reference(current, who, action, kind, name,
                                                         notes)

        await agree()
        for rule in later:
            await store.add_rule(rule)
            await agree()
            stored = await store.list_rules(ORG)
            if stored and data.draw(st.booleans()):
                gone = data.draw(st.sampled_from(stored))
                assert await store.delete_rule(ORG, gone.id)
                await agree()

    anyio.run(scenario)
