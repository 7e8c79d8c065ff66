"""The first start's owner on memory, SQLite and PostgreSQL: made once, finished when
an earlier first start stopped halfway, and left alone by a first start that lost
the race to another one on the same store."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from mobius_rpc.security.serving import bootstrap
from mobius_rpc.security.store import SecurityStore, User
from mobius_rpc.security.tokens import resolve_principal

pytestmark = pytest.mark.anyio


async def test_the_first_start_makes_the_owner_once(sec_store: SecurityStore) -> None:
    made = await bootstrap(sec_store, user_name="ann")
    assert made is not None and made.user.name == "ann"
    assert await bootstrap(sec_store, user_name="ann") is None  # the next start changes nothing
    assert [u.name for u in await sec_store.list_users()] == ["ann"]
    assert len(await sec_store.list_organizations()) == 1
    membership = await sec_store.get_membership(made.org_id, made.user.id)
    assert membership is not None and membership.role == "owner"


async def test_a_first_start_that_stopped_after_the_user_is_finished(
        sec_store: SecurityStore) -> None:
    await sec_store.create_user(User(id="u1", name="ann", created_at=time.time()))
    made = await bootstrap(sec_store, user_name="someone-else")
    assert made is not None and made.user.id == "u1"  # the user already there
    assert len(await sec_store.list_organizations()) == 1
    assert await sec_store.list_tokens(user_id="u1")
    assert await bootstrap(sec_store) is None


async def test_a_store_with_users_and_organizations_is_left_alone(
        sec_store: SecurityStore) -> None:
    await sec_store.create_user(User(id="u1", name="ann", created_at=time.time()))
    await sec_store.create_user(User(id="u2", name="bob", created_at=time.time()))
    assert await bootstrap(sec_store) is None
    assert await sec_store.list_organizations() == []


async def test_two_first_starts_at_once_make_one_owner(sec_store: SecurityStore) -> None:
    """Both see an empty store; the one whose user name is taken backs off."""
    listed = anyio.Event()
    waiting = 0
    original = sec_store.list_users

    async def both_see_no_users() -> list[User]:
        nonlocal waiting
        found = await original()
        waiting += 1
        if waiting == 2:
            listed.set()
        await listed.wait()
        return found
    sec_store.list_users = both_see_no_users  # type: ignore[method-assign]
    outcomes: list[Any] = []

    async def start() -> None:
        outcomes.append(await bootstrap(sec_store, user_name="ann"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(start)
        tg.start_soon(start)
    sec_store.list_users = original  # type: ignore[method-assign]
    made = [o for o in outcomes if o is not None]
    assert len(made) == 1 and outcomes.count(None) == 1
    assert len(await sec_store.list_users()) == 1
    assert len(await sec_store.list_organizations()) == 1
    assert await resolve_principal(sec_store, made[0].token) is not None
