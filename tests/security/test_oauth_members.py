"""OAuthMembership: an OAuth caller's user and roles come from the store, remembered
while the security epoch stands still and at most ``ttl`` seconds."""

from __future__ import annotations

import pytest

from mobius_rpc.security.epoch import EpochWatch
from mobius_rpc.security.oauth_members import OAuthMembership
from mobius_rpc.security.principal import AuthMethod, Principal, Role
from mobius_rpc.security.store import Membership, MemorySecurityStore, User

pytestmark = pytest.mark.anyio


class Counting(MemorySecurityStore):
    """A memory store that counts the user lookups by name."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def get_user_by_name(self, name: str) -> User | None:
        self.lookups += 1
        return await super().get_user_by_name(name)


def caller(subject: str = "ada", org: str = "acme") -> Principal:
    return Principal(subject, org, scopes=frozenset({"mcp:tools"}), method=AuthMethod.OAUTH,
                     credential="jti-1", expires_at=2e9)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_member_gets_the_users_id_and_role_and_keeps_the_rest() -> None:
    store = Counting()
    await store.create_user(User("u-ada", "oauth:ada", 0.0))
    await store.put_membership(Membership("acme", "u-ada", "admin", 0.0))
    mapped = await OAuthMembership(store, EpochWatch(store))(caller())
    assert mapped is not None
    assert (mapped.user, mapped.roles, mapped.subject) == ("u-ada", frozenset({Role.ADMIN}),
                                                           "ada")
    assert (mapped.organization, mapped.scopes, mapped.credential, mapped.expires_at) == \
        ("acme", frozenset({"mcp:tools"}), "jti-1", 2e9)


async def test_no_user_no_membership_an_unknown_role_or_no_org_grant_no_role() -> None:
    store = Counting()
    await store.create_user(User("u-ada", "oauth:ada", 0.0))
    await store.create_user(User("u-bob", "oauth:bob", 0.0))
    await store.put_membership(Membership("acme", "u-bob", "superuser", 0.0))
    await store.create_user(User("u-local", "carol", 0.0))  # the bare subject's name
    await store.put_membership(Membership("acme", "u-local", "owner", 0.0))
    await store.put_membership(Membership("", "u-ada", "owner", 0.0))  # no org: not looked at
    members = OAuthMembership(store, EpochWatch(store))
    found = [await members(caller(name, org)) for name, org in
             (("ada", "acme"), ("bob", "acme"), ("carol", "acme"), ("ada", ""))]
    assert [(p.user, p.roles) for p in found if p is not None] == [
        ("u-ada", frozenset()),  # a user, no member of acme
        ("u-bob", frozenset()),  # a role this version does not know
        ("oauth:carol", frozenset()),  # never the local user named carol
        ("u-ada", frozenset()),  # a token naming no organization
    ]


async def test_a_disabled_user_is_refused() -> None:
    store = Counting()
    await store.create_user(User("u-ada", "oauth:ada", 0.0, disabled=True))
    assert await OAuthMembership(store, EpochWatch(store))(caller()) is None


async def test_answers_are_kept_until_the_epoch_moves_or_the_ttl_passes() -> None:
    store, clock = Counting(), Clock()
    await store.create_user(User("u-ada", "oauth:ada", 0.0))
    members = OAuthMembership(store, EpochWatch(store), ttl=60, clock=clock)
    for _ in range(3):
        assert (await members(caller())).roles == frozenset()  # type: ignore[union-attr]
    assert store.lookups == 1
    await store.put_membership(Membership("acme", "u-ada", "member", 0.0))  # moves the epoch
    assert (await members(caller())).roles == {Role.MEMBER}  # type: ignore[union-attr]
    assert store.lookups == 2
    clock.now += 61
    await members(caller())
    assert store.lookups == 3


async def test_recheck_maps_the_subject_again_and_passes_unmapped_principals() -> None:
    store = Counting()
    await store.create_user(User("u-ada", "oauth:ada", 0.0))
    await store.put_membership(Membership("acme", "u-ada", "member", 0.0))
    members = OAuthMembership(store, EpochWatch(store))
    mapped = await members(caller())
    assert mapped is not None
    assert await members.recheck(mapped) == mapped
    await store.delete_membership("acme", "u-ada")
    again = await members.recheck(mapped)
    assert again is not None and again.user == "u-ada" and again.roles == frozenset()
    plain = Principal("someone", "acme", method=AuthMethod.API_TOKEN)
    assert await members.recheck(plain) is plain
