"""API tokens: issue, authenticate, expire, revoke, record last use (every store)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobius_rpc.security.principal import AuthMethod, Role
from mobius_rpc.security.store import Membership, SecurityStore
from mobius_rpc.security.tokens import (
    ID_LENGTH,
    TokenError,
    authenticate_token,
    issue_token,
    revoke_token,
    token_id,
)
from tests.security.support import make_world

pytestmark = pytest.mark.anyio


async def world(store: SecurityStore) -> SecurityStore:
    await make_world(store)
    return store


async def test_a_token_is_shown_once_and_stored_as_its_hash(sec_store: SecurityStore) -> None:
    store = await world(sec_store)
    issued = await issue_token(store, user_id="u-member", org_id="A", scopes=["tools:call"],
                               now=10.0)
    raw = issued.token
    assert raw.startswith("mbx_") and len(raw) == 4 + 43
    assert issued.record.id == raw[4:4 + ID_LENGTH] == token_id(raw)
    stored = await store.get_token(issued.record.id)
    assert stored is not None
    assert stored.hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in repr(await store.list_tokens()) and raw not in repr(issued)
    principal = await authenticate_token(store, raw, now=11.0)
    assert principal is not None
    assert (principal.user, principal.organization, principal.roles) == (
        "u-member", "A", frozenset({Role.MEMBER}))
    assert principal.scopes == frozenset({"tools:call"})
    assert principal.method is AuthMethod.API_TOKEN and principal.credential == stored.id


async def test_forged_malformed_and_unknown_tokens_fail(sec_store: SecurityStore) -> None:
    store = await world(sec_store)
    raw = (await issue_token(store, user_id="u-member", org_id="A")).token
    flipped = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    other_id = raw[:4] + ("x" if raw[4] != "x" else "y") + raw[5:]
    for bad in (flipped, other_id, raw + "x", raw[:-1], "", "Bearer " + raw, "mbx_" + "!" * 43):
        assert await authenticate_token(store, bad) is None, bad


@given(st.text(max_size=60))
def test_token_id_accepts_only_the_token_shape(text: str) -> None:
    tid = token_id(text)
    assert tid is None or (text.startswith("mbx_") and len(text) == 47 and tid == text[4:16])


async def test_expiry_revocation_and_membership_are_checked_every_time(
        sec_store: SecurityStore) -> None:
    store = await world(sec_store)
    raw = (await issue_token(store, user_id="u-viewer", org_id="A", ttl=60, now=100.0)).token
    assert await authenticate_token(store, raw, now=159.9) is not None
    assert await authenticate_token(store, raw, now=160.0) is None  # expired
    raw = (await issue_token(store, user_id="u-viewer", org_id="A")).token
    # promotion and removal take effect on the next request
    await store.put_membership(Membership("A", "u-viewer", "admin", 0.0))
    principal = await authenticate_token(store, raw)
    assert principal is not None and principal.roles == frozenset({Role.ADMIN})
    await store.set_user_disabled("u-viewer", True)
    assert await authenticate_token(store, raw) is None
    await store.set_user_disabled("u-viewer", False)
    await store.delete_membership("A", "u-viewer")
    assert await authenticate_token(store, raw) is None
    await store.put_membership(Membership("A", "u-viewer", "viewer", 0.0))
    tid = token_id(raw)
    assert tid is not None
    assert await revoke_token(store, tid) is True
    assert await authenticate_token(store, raw) is None
    assert await revoke_token(store, tid) is False


async def test_last_use_is_recorded_but_throttled(sec_store: SecurityStore) -> None:
    store = await world(sec_store)
    issued = await issue_token(store, user_id="u-member", org_id="A", now=0.0)
    writes: list[float] = []
    touch = store.touch_token

    async def counting(tid: str, at: float) -> None:
        writes.append(at)
        await touch(tid, at)

    store.touch_token = counting  # type: ignore[method-assign]
    for at in (1.0, 2.0, 30.0, 61.0, 62.0, 125.0):
        assert await authenticate_token(store, issued.token, now=at) is not None
    assert writes == [1.0, 61.0, 125.0]
    stored = await store.get_token(issued.record.id)
    assert stored is not None and stored.last_used_at == 125.0


async def test_tokens_are_only_issued_to_members_and_for_the_future(
        sec_store: SecurityStore) -> None:
    store = await world(sec_store)
    with pytest.raises(TokenError):
        await issue_token(store, user_id="u-member", org_id="B")
    with pytest.raises(TokenError):
        await issue_token(store, user_id="nobody", org_id="A")
    with pytest.raises(TokenError):
        await issue_token(store, user_id="u-member", org_id="A", expires_at=5.0, now=10.0)
    with pytest.raises(TokenError):
        await issue_token(store, user_id="u-member", org_id="A", ttl=0)
