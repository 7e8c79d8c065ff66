"""Creating an organization is one step: the organization, its owner and its rules.

On memory, SQLite and a real PostgreSQL, ``create_organization_with_owner`` writes
all three or nothing: a rule that clashes (a constraint violation in SQL, after the
organization and the membership rows were inserted in the same transaction) or a
failure mid-write leaves no organization and no membership behind, and an
organization that exists is refused without touching what it holds.  The admin
function built on it keeps its audit record on file before it returns.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mobius_rpc.security import admin
from mobius_rpc.security.audit import AuditLog
from mobius_rpc.security.policy import DEFAULT_RULES, make_rule
from mobius_rpc.security.store import (
    DuplicateError,
    Membership,
    MemorySecurityStore,
    Organization,
    Rule,
    SecurityStore,
    User,
)

from .conftest import audit_rows

pytestmark = pytest.mark.anyio


def _rules(org_id: str, n: int = 3) -> list[Rule]:
    return [make_rule(org_id, "allow", "role:member", "tools", f"tool{i}*", ("*",), None,
                      f"rule {i}", now=1.0) for i in range(n)]


async def _nothing_of(s: SecurityStore, org_id: str) -> None:
    """No trace of ``org_id``: no organization, no member, no rule."""
    assert await s.get_organization(org_id) is None
    assert await s.list_memberships(org_id=org_id) == []
    assert await s.list_rules(org_id) == []
    assert [o.id for o in await s.list_organizations() if o.id == org_id] == []


async def test_the_organization_its_owner_and_its_rules_arrive_together(
        sec_store: SecurityStore) -> None:
    s = sec_store
    before = await s.security_epoch()
    rules = _rules("A")
    owner = Membership("A", "u1", "owner", 1.0)
    stored = await s.create_organization_with_owner(
        Organization("A", "Org A", 1.0, settings={"k": 1}), owner, rules)
    assert stored == Organization("A", "Org A", 1.0, len(rules), {"k": 1})
    assert await s.get_organization("A") == stored
    assert await s.list_memberships(org_id="A") == [owner]
    listed = await s.list_rules("A")
    assert [r.id for r in listed] == [r.id for r in rules]  # in the order given
    assert [replace(r, position=0) for r in listed] == rules
    assert sorted({r.position for r in listed}) == [r.position for r in listed]
    assert await s.security_epoch() != before
    # an organization without rules, and rules added later go after the first ones
    bare = await s.create_organization_with_owner(
        Organization("B", "Org B", 2.0), Membership("B", "u1", "owner", 2.0))
    assert bare.rules_version == 0 and await s.list_rules("B") == []
    later = await s.add_rule(_rules("A", 1)[0])
    assert later.position > listed[-1].position


async def test_a_clashing_rule_leaves_no_organization_and_no_owner(
        sec_store: SecurityStore) -> None:
    s = sec_store
    rules = _rules("A")
    clash = [*rules, replace(rules[0], pattern="other")]  # the last repeats the first's id
    with pytest.raises(DuplicateError):
        await s.create_organization_with_owner(
            Organization("A", "Org A", 1.0), Membership("A", "u1", "owner", 1.0), clash)
    await _nothing_of(s, "A")
    # and the same organization can then be made whole
    await s.create_organization_with_owner(
        Organization("A", "Org A", 1.0), Membership("A", "u1", "owner", 1.0), rules)
    assert len(await s.list_rules("A")) == len(rules)


async def test_an_existing_organization_is_refused_and_left_as_it_was(
        sec_store: SecurityStore) -> None:
    s = sec_store
    first = await s.create_organization_with_owner(
        Organization("A", "Org A", 1.0), Membership("A", "u1", "owner", 1.0), _rules("A"))
    kept_rules = await s.list_rules("A")
    with pytest.raises(DuplicateError, match="already exists"):
        await s.create_organization_with_owner(
            Organization("A", "another", 2.0), Membership("A", "u2", "owner", 2.0),
            _rules("A", 5))
    assert await s.get_organization("A") == first
    assert await s.list_memberships(org_id="A") == [Membership("A", "u1", "owner", 1.0)]
    assert await s.list_rules("A") == kept_rules


@pytest.mark.parametrize("owner_org, rule_org", [("B", "A"), ("A", "B")])
async def test_records_of_another_organization_are_refused_before_writing(
        sec_store: SecurityStore, owner_org: str, rule_org: str) -> None:
    s = sec_store
    with pytest.raises(ValueError, match="names another one"):
        await s.create_organization_with_owner(
            Organization("A", "Org A", 1.0), Membership(owner_org, "u1", "owner", 1.0),
            _rules(rule_org))
    await _nothing_of(s, "A")
    await _nothing_of(s, "B")


async def test_a_failure_after_the_first_rows_rolls_them_back(sec_store: SecurityStore) -> None:
    """A rule that cannot be written (its conditions are no JSON) fails in the middle
    of the SQL transaction, after the organization's and the owner's rows went in."""
    s = sec_store
    if isinstance(s, MemorySecurityStore):
        pytest.skip("the memory store keeps any value; its check-then-write is covered above")
    bad = replace(_rules("A", 1)[0], when={"x": object()})
    with pytest.raises(TypeError):
        await s.create_organization_with_owner(
            Organization("A", "Org A", 1.0), Membership("A", "u1", "owner", 1.0),
            [*_rules("A", 2), bad])
    await _nothing_of(s, "A")


def _same_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every default rule the admin function makes gets one id: the second clashes."""
    real = make_rule

    def clashing(*args: Any, **kw: Any) -> Rule:
        return replace(real(*args, **kw), id="same-id")
    monkeypatch.setattr(admin, "make_rule", clashing)


async def test_create_organization_leaves_nothing_when_its_rules_fail(
        sec_store: SecurityStore, monkeypatch: pytest.MonkeyPatch) -> None:
    s = sec_store
    assert len(DEFAULT_RULES) > 1
    await s.create_user(User("u1", "ada", 1.0))
    log = AuditLog(s)
    _same_ids(monkeypatch)
    with pytest.raises(DuplicateError):
        await admin.create_organization(s, "Acme", owner_user_id="u1", org_id="acme",
                                        audit=log)
    await _nothing_of(s, "acme")
    assert [r.method for r in await audit_rows(s)] == []  # nothing happened: nothing said


async def test_create_organization_is_whole_and_on_record_when_it_returns(
        sec_store: SecurityStore) -> None:
    s = sec_store
    await s.create_user(User("u1", "ada", 1.0))
    org = await admin.create_organization(s, "Acme", owner_user_id="u1", org_id="acme",
                                          audit=AuditLog(s), now=5.0)
    assert org == await s.get_organization("acme")
    assert org is not None and org.rules_version == len(DEFAULT_RULES)
    assert await s.list_memberships(org_id="acme") == [Membership("acme", "u1", "owner", 5.0)]
    assert len(await s.list_rules("acme")) == len(DEFAULT_RULES)
    records = await audit_rows(s)  # durable: read back from the store itself
    assert [(r.method, r.target) for r in records] == [("admin/org.create", "acme")]
    with pytest.raises(DuplicateError, match="already exists"):
        await admin.create_organization(s, "Acme", owner_user_id="u1", org_id="acme",
                                        audit=AuditLog(s))
    assert len(await audit_rows(s)) == 1
