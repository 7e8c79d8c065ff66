"""Rules and decisions: the documented defaults, deny wins, explain, caching."""

from __future__ import annotations

import pytest

from mobius_rpc.security.admin import (
    add_rule,
    create_organization,
    remove_membership,
    remove_rule,
    set_membership,
)
from mobius_rpc.security.audit import AuditLog
from mobius_rpc.security.policy import DEFAULT_RULES, PolicyEngine, RuleSet, glob_regex, make_rule
from mobius_rpc.security.principal import Role
from mobius_rpc.security.store import MemorySecurityStore, SecurityStore, User
from tests.security.conftest import audit_rows
from tests.security.support import make_world, principal

pytestmark = pytest.mark.anyio

READ_ONLY = {"readOnlyHint": True}
DESTRUCTIVE = {"readOnlyHint": False, "destructiveHint": True}
GENTLE = {"readOnlyHint": False, "destructiveHint": False}


async def defaults() -> RuleSet:
    store = MemorySecurityStore()
    await make_world(store)
    return await PolicyEngine(store).rules_for("A")


async def test_the_default_rules_of_a_new_organization() -> None:
    rules = await defaults()
    assert len(rules.rules) == len(DEFAULT_RULES)
    owner, admin = principal("u-owner", "A", Role.OWNER), principal("u-admin", "A", Role.ADMIN)
    member, viewer = principal("u-m", "A", Role.MEMBER), principal("u-v", "A", Role.VIEWER)
    nobody = principal("u-x", "A")
    for who in (owner, admin, member):
        for notes in (READ_ONLY, DESTRUCTIVE, GENTLE, None):
            assert rules.decide(who, "call", "tools", "t", notes).allowed
        assert rules.decide(who, "read", "resources", "file:///x").allowed
        assert rules.decide(who, "list", "extensions", "e").allowed
    assert rules.decide(viewer, "call", "tools", "t", READ_ONLY).allowed
    for notes in (DESTRUCTIVE, GENTLE, None, {"destructiveHint": False}):
        assert not rules.decide(viewer, "call", "tools", "t", notes).allowed
        assert not rules.decide(viewer, "list", "tools", "t", notes).allowed
    for action, kind in (("read", "resources"), ("subscribe", "resources"), ("get", "prompts"),
                         ("complete", "prompts"), ("list", "prompts")):
        assert rules.decide(viewer, action, kind, "x").allowed
    assert not rules.decide(nobody, "list", "tools", "t", READ_ONLY).allowed
    decision = rules.decide(nobody, "read", "resources", "x")
    assert decision.rule is None and "deny by default" in decision.reason


async def test_deny_wins_and_explain_names_the_rule(sec_store: SecurityStore) -> None:
    store = sec_store
    await make_world(store)
    log = AuditLog(store)
    deny = await add_rule(store, make_rule("A", "deny", "user:u-member", "tools", "db.*",
                                           ("call",), description="no database for Bob"),
                          audit=log)
    rules = await PolicyEngine(store).rules_for("A")
    bob = principal("u-member", "A", Role.MEMBER)
    decision = rules.decide(bob, "call", "tools", "db.drop")
    assert not decision.allowed and decision.rule == deny
    explained = rules.explain(bob, "call", "tools", "db.drop")
    assert explained.decision == decision
    assert [a for a, _ in explained.steps] == ["list", "call"]
    assert deny in explained.matching and any(r.effect == "allow" for r in explained.matching)
    assert any(deny.id in line for line in explained.lines())
    # listing needs the primary action: a tool Bob may not call is not listed
    assert not rules.decide(bob, "list", "tools", "db.drop").allowed
    assert rules.decide(bob, "call", "tools", "dbx").allowed  # "." is literal
    allowed = rules.decide(bob, "call", "tools", "other")
    assert allowed.allowed and allowed.rule is not None and allowed.rule.subject == "member"
    assert (await audit_rows(store))[-1].method == "admin/rule.add"
    assert await remove_rule(store, "A", deny.id, audit=log)
    assert (await audit_rows(store))[-1].method == "admin/rule.remove"


async def test_unstated_hints_take_the_protocols_defaults(sec_store: SecurityStore) -> None:
    store = sec_store
    await make_world(store)
    await add_rule(store, make_rule("A", "allow", "role:viewer", "tools", "*", ("call",),
                                    {"destructiveHint": True}))
    await add_rule(store, make_rule("A", "deny", "role:viewer", "tools", "*", ("call",),
                                    {"openWorldHint": True}))
    rules = await PolicyEngine(store).rules_for("A")
    viewer = principal("u-v", "A", Role.VIEWER)
    # an unannotated tool counts as destructive and open-world: allowed, then denied
    decision = rules.decide(viewer, "call", "tools", "t", None)
    assert not decision.allowed and decision.rule is not None
    assert decision.rule.when == {"openWorldHint": True}
    assert rules.decide(viewer, "call", "tools", "t", {"openWorldHint": False}).allowed
    assert not rules.decide(viewer, "call", "tools", "t", {"openWorldHint": False,
                                                           "destructiveHint": False}).allowed


async def test_hiding_from_lists_also_refuses_use(sec_store: SecurityStore) -> None:
    store = sec_store
    await make_world(store)
    await add_rule(store, make_rule("A", "deny", "*", "prompts", "internal-*", ("list",)))
    rules = await PolicyEngine(store).rules_for("A")
    owner = principal("u-owner", "A", Role.OWNER)
    assert not rules.decide(owner, "get", "prompts", "internal-x").allowed
    assert rules.decide(owner, "get", "prompts", "public").allowed


async def test_scopes_narrow_never_widen() -> None:
    rules = await defaults()
    scoped = principal("u-owner", "A", Role.OWNER, scopes=frozenset({"tools:call", "openid"}))
    assert rules.decide(scoped, "call", "tools", "t").allowed
    assert rules.decide(scoped, "list", "tools", "t").allowed  # call implies list
    assert not rules.decide(scoped, "read", "resources", "x").allowed
    assert "scopes" in rules.decide(scoped, "read", "resources", "x").reason
    foreign = principal("u-owner", "A", Role.OWNER, scopes=frozenset({"openid", "mcp"}))
    assert rules.decide(foreign, "read", "resources", "x").allowed  # not policy scopes
    viewer = principal("u-v", "A", Role.VIEWER, scopes=frozenset({"*:*"}))
    assert not rules.decide(viewer, "call", "tools", "t", DESTRUCTIVE).allowed


async def test_other_organizations_and_owners() -> None:
    rules = await defaults()
    b_owner = principal("u-bowner", "B", Role.OWNER)
    assert not rules.decide(b_owner, "list", "tools", "t").allowed
    owner = principal("u-owner", "A", Role.OWNER)
    assert rules.decide(owner, "call", "tools", "t", owner="A").allowed
    decision = rules.decide(owner, "call", "tools", "t", owner="B")
    assert not decision.allowed and "another organization" in decision.reason


async def test_the_engine_recompiles_when_the_rules_version_moves(sec_store: SecurityStore) -> None:
    store = sec_store
    await make_world(store)
    engine = PolicyEngine(store)
    first = await engine.rules_for("A")
    assert await engine.rules_for("A") is first
    rule = await add_rule(store, make_rule("A", "deny", "*", "*", "*"))
    second = await engine.rules_for("A")
    assert second is not first and second.version == first.version + 1
    assert not second.decide(principal("u-owner", "A", Role.OWNER), "list", "tools", "x").allowed
    await remove_rule(store, "A", rule.id)
    assert (await engine.rules_for("A")).version == second.version + 1
    assert (await engine.rules_for("nope")).rules == ()
    stale = PolicyEngine(store, max_staleness=3600)
    cached = await stale.rules_for("A")
    await add_rule(store, make_rule("A", "deny", "*", "*", "*"))
    assert await stale.rules_for("A") is cached  # allowed to be stale, by choice
    stale.invalidate("A")
    assert await stale.rules_for("A") is not cached


def test_rules_are_validated() -> None:
    for args in (("maybe", "*", "tools", "x"), ("allow", "role:king", "tools", "x"),
                 ("allow", "group:g", "tools", "x"), ("allow", "*", "widgets", "x"),
                 ("allow", "*", "tools", "")):
        with pytest.raises(ValueError):
            make_rule("A", *args)
    with pytest.raises(ValueError):
        make_rule("A", "allow", "*", "tools", "x", ("explode",))
    with pytest.raises(ValueError):
        make_rule("A", "allow", "*", "tools", "x", when={"readOnlyHint": [True]})


def test_globs() -> None:
    assert glob_regex("file:///*").fullmatch("file:///a/b/c")
    assert glob_regex("a?c").fullmatch("abc") and not glob_regex("a?c").fullmatch("ac")
    assert glob_regex("[x]").fullmatch("[x]") and not glob_regex("[x]").fullmatch("x")
    assert not glob_regex("Tool").fullmatch("tool")


async def test_create_organization(sec_store: SecurityStore) -> None:
    store = sec_store
    await store.create_user(User("u1", "ada", 0.0))
    log = AuditLog(store)
    org = await create_organization(store, "Acme", owner_user_id="u1", audit=log)
    assert org.rules_version == len(DEFAULT_RULES)
    assert (await store.get_membership(org.id, "u1")).role == "owner"  # type: ignore[union-attr]
    assert (await audit_rows(store))[-1].method == "admin/org.create"
    bare = await create_organization(store, "Bare", owner_user_id="u1", default_rules=False)
    assert await store.list_rules(bare.id) == []
    with pytest.raises(ValueError):
        await create_organization(store, "X", owner_user_id="nobody")


async def test_admin_changes_need_an_owner_or_admin_and_are_recorded(
        sec_store: SecurityStore) -> None:
    store = sec_store
    people = await make_world(store)
    log = AuditLog(store)
    rule = make_rule("A", "deny", "*", "tools", "x")
    for actor in (people["member"], people["viewer"], people["bowner"]):
        with pytest.raises(PermissionError):
            await add_rule(store, rule, audit=log, actor=actor)
        with pytest.raises(PermissionError):
            await set_membership(store, "A", "u-member", Role.ADMIN, actor=actor)
    with pytest.raises(PermissionError):  # an admin cannot make owners
        await set_membership(store, "A", "u-member", Role.OWNER, actor=people["admin"])
    assert not any(r.method.startswith("admin/rule") for r in (await audit_rows(store)))
    await add_rule(store, rule, audit=log, actor=people["admin"])
    await set_membership(store, "A", "u-member", Role.ADMIN, audit=log, actor=people["owner"])
    assert (await store.get_membership("A", "u-member")).role == "admin"  # type: ignore[union-attr]
    assert await remove_membership(store, "A", "u-viewer", audit=log, actor=people["admin"])
    assert [r.method for r in (await audit_rows(store))[-3:]] == [
        "admin/rule.add", "admin/member.set", "admin/member.remove"]
    assert (await audit_rows(store))[-3].user == "u-admin"
