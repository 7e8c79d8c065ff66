"""The SecurityStore contract, the same on memory, SQLite and PostgreSQL.

Each test drives one part of the protocol directly, so a backend that drifts
from the memory reference (a uniqueness rule, an ordering, the version bump
of a rule change, a bucket that forgets) fails here by name.
"""

from __future__ import annotations

import anyio
import pytest

from mobius_rpc.security.open import open_security_store, security_store_for
from mobius_rpc.security.policy import make_rule
from mobius_rpc.security.sql_store import SqlSecurityStore
from mobius_rpc.security.store import (
    ApiToken,
    DuplicateError,
    Membership,
    Organization,
    SecurityStore,
    StoreError,
    User,
)
from mobius_rpc.storage import open_store

pytestmark = pytest.mark.anyio


async def test_organizations_and_users(sec_store: SecurityStore) -> None:
    s = sec_store
    await s.create_organization(Organization("A", "Org A", 1.0, settings={"k": [1, "x"]}))
    with pytest.raises(DuplicateError):
        await s.create_organization(Organization("A", "again", 2.0))
    assert await s.get_organization("A") == Organization("A", "Org A", 1.0, 0, {"k": [1, "x"]})
    assert await s.get_organization("nope") is None
    await s.create_user(User("u1", "ada", 1.0, attributes={"mail": "a@x"}))
    for clash in (User("u1", "other", 2.0), User("u2", "ada", 2.0)):
        with pytest.raises(DuplicateError):
            await s.create_user(clash)
    await s.create_user(User("u2", "alan", 2.0))
    assert [u.name for u in await s.list_users()] == ["ada", "alan"]
    assert (await s.get_user_by_name("ada")) == User("u1", "ada", 1.0, False, {"mail": "a@x"})
    assert await s.set_user_disabled("u1", True) is True
    assert (await s.get_user("u1")).disabled is True  # type: ignore[union-attr]
    assert await s.set_user_disabled("ghost", True) is False
    assert [o.id for o in await s.list_organizations()] == ["A"]


async def test_memberships(sec_store: SecurityStore) -> None:
    s = sec_store
    await s.put_membership(Membership("A", "u1", "member", 1.0))
    await s.put_membership(Membership("B", "u1", "viewer", 2.0))
    await s.put_membership(Membership("A", "u2", "viewer", 3.0))
    await s.put_membership(Membership("A", "u1", "admin", 4.0))  # a role change replaces
    assert await s.get_membership("A", "u1") == Membership("A", "u1", "admin", 4.0)
    assert sorted(m.org_id for m in await s.list_memberships(user_id="u1")) == ["A", "B"]
    assert sorted(m.user_id for m in await s.list_memberships(org_id="A")) == ["u1", "u2"]
    assert len(await s.list_memberships()) == 3
    assert await s.delete_membership("A", "u1") is True
    assert await s.delete_membership("A", "u1") is False
    assert await s.get_membership("A", "u1") is None


async def test_tokens(sec_store: SecurityStore) -> None:
    s = sec_store
    token = ApiToken("tid1", "u1", "A", "h" * 64, 5.0, ("tools:call",), 99.0, description="ci")
    await s.add_token(token)
    with pytest.raises(DuplicateError):
        await s.add_token(token)
    assert await s.get_token("tid1") == token
    await s.add_token(ApiToken("tid2", "u2", "A", "g" * 64, 6.0))
    assert [t.id for t in await s.list_tokens(org_id="A")] == ["tid1", "tid2"]
    assert [t.id for t in await s.list_tokens(user_id="u2")] == ["tid2"]
    await s.touch_token("tid1", 7.5)
    assert await s.revoke_token("tid1", 8.0) is True
    assert await s.revoke_token("tid1", 9.0) is False
    assert await s.revoke_token("ghost", 9.0) is False
    got = await s.get_token("tid1")
    assert got is not None and (got.revoked_at, got.last_used_at) == (8.0, 7.5)


async def test_rules_keep_their_order_and_bump_the_version(sec_store: SecurityStore) -> None:
    s = sec_store
    await s.create_organization(Organization("A", "Org A", 1.0))
    await s.create_organization(Organization("B", "Org B", 1.0))
    with pytest.raises(StoreError):
        await s.add_rule(make_rule("nowhere", "allow", "*", "tools", "*"))
    first = await s.add_rule(make_rule("A", "allow", "role:member", "tools", "a*", ("call",),
                                       {"readOnlyHint": True}, "text", rule_id="r1", now=3.0))
    await s.add_rule(make_rule("B", "deny", "*", "*", "*", rule_id="r1"))  # ids are per org
    second = await s.add_rule(make_rule("A", "deny", "user:u9", "resources", "x://*",
                                        rule_id="r2"))
    with pytest.raises(DuplicateError):
        await s.add_rule(make_rule("A", "deny", "*", "*", "*", rule_id="r2"))
    assert second.position > first.position > 0
    rules = await s.list_rules("A")
    assert [r.id for r in rules] == ["r1", "r2"]
    assert rules[0] == first and rules[0].when == {"readOnlyHint": True}
    assert rules[0].actions == ("call",) and rules[1].subject == "u9"
    version = (await s.get_organization("A")).rules_version  # type: ignore[union-attr]
    assert version == 2
    assert await s.delete_rule("A", "r1") is True
    assert await s.delete_rule("A", "r1") is False
    assert (await s.get_organization("A")).rules_version == 3  # type: ignore[union-attr]
    assert [r.id for r in await s.list_rules("B")] == ["r1"]


async def test_rate_buckets(sec_store: SecurityStore) -> None:
    s = sec_store
    results = [await s.consume_bucket("k", 2.0, 1.0, 1.0, 100.0) for _ in range(3)]
    assert [r.allowed for r in results] == [True, True, False]
    assert results[2].retry_after == pytest.approx(1.0)
    assert (await s.consume_bucket("k", 2.0, 1.0, 1.0, 101.5)).allowed  # refilled 1.5
    assert (await s.consume_bucket("other", 2.0, 1.0, 1.0, 100.0)).allowed


async def test_concurrent_bucket_takes_never_overdraw(sec_store: SecurityStore) -> None:
    allowed: list[bool] = []

    async def take() -> None:
        allowed.append((await sec_store.consume_bucket("shared", 5.0, 0.0, 1.0, 50.0)).allowed)

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(take)
    assert sum(allowed) == 5


async def test_memory_urls_share_a_security_store_by_name_and_sql_uses_the_database(
        tmp_path: object) -> None:
    async with open_store("memory:sec-shared") as one, open_store("memory:sec-shared") as two:
        assert security_store_for(one) is security_store_for(two)
    async with open_store("memory:") as private:
        assert security_store_for(private) is not security_store_for(private)
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_security_store(url) as (_, security):
        assert isinstance(security, SqlSecurityStore)
        await security.create_user(User("u1", "ada", 1.0))
    async with open_security_store(url) as (_, again):  # it persisted
        assert (await again.get_user("u1")) is not None


async def test_a_resolved_token_and_the_epoch_that_guards_caches(sec_store: SecurityStore
                                                                  ) -> None:
    s = sec_store
    await s.create_organization(Organization("A", "Org A", 1.0))
    await s.create_user(User("u1", "ada", 1.0))
    await s.add_token(ApiToken("tid1", "u1", "A", "h" * 64, 5.0))
    await s.add_token(ApiToken("orphan", "ghost", "Z", "g" * 64, 5.0))
    assert await s.resolve_token("nope") is None
    found = await s.resolve_token("tid1")
    assert found is not None and found.token == await s.get_token("tid1")
    assert (found.user_active, found.role, found.rules_version) == (True, None, 0)
    lonely = await s.resolve_token("orphan")
    assert lonely is not None and (lonely.user_active, lonely.role, lonely.rules_version) == (
        False, None, None)
    seen = [await s.security_epoch()]
    for change in (lambda: s.put_membership(Membership("A", "u1", "member", 2.0)),
                   lambda: s.add_rule(make_rule("A", "allow", "*", "*", "*", rule_id="r")),
                   lambda: s.delete_rule("A", "r"),
                   lambda: s.set_user_disabled("u1", True),
                   lambda: s.revoke_token("tid1", 9.0),
                   lambda: s.delete_membership("A", "u1")):
        await change()
        seen.append(await s.security_epoch())
    assert seen == sorted(set(seen)), seen  # every change moved it
    found = await s.resolve_token("tid1")
    assert found is not None and found.user_active is False and found.rules_version == 2
    before = await s.security_epoch()
    await s.touch_token("tid1", 10.0)  # recording use narrows nothing
    await s.revoke_token("tid1", 11.0)  # revoked already: nothing changed
    assert await s.security_epoch() == before
