"""Revocations seen without reading the security epoch on every request.

On PostgreSQL a listening :class:`~mobius_rpc.security.epoch.EpochWatch` reads
the epoch only when a notice (or this process's own change) says it moved, or
when its safety poll is due; these tests show each of the three ways a
revocation reaches a cached token: a change made in this process (the very
next request fails), a change made by another process (its NOTIFY), and a
change whose notice was lost (the poll).  On SQLite the epoch is read for every
request (cheaply), so another process's revocation fails the very next request.

The other process is a real one (``python -c``), because changes made in this
process are caught by the local count whatever the channel does.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from mobius_rpc.security.open import open_security_store
from mobius_rpc.security.policy import PolicyEngine
from mobius_rpc.security.serving import Authenticator
from mobius_rpc.security.store import SecurityStore
from mobius_rpc.security.tokens import issue_token
from tests.security.support import make_world
from tests.storage.conftest import FAST_SQLITE, Target, make_target, pg_cluster  # noqa: F401

pytestmark = pytest.mark.anyio

_REVOKE = textwrap.dedent("""
    import sys, anyio
    from mobius_rpc.security.open import open_security_store
    from mobius_rpc.security.sql_store import SqlSecurityStore
    url, schema, token_id, announce = sys.argv[1:5]
    async def main():
        async with open_security_store(url, schema=schema) as (_, security):
            if announce == "no":  # as if the notice were lost (a crash after the commit)
                security = SqlSecurityStore(security.db)
            assert await security.revoke_token(token_id, 1.0)
    anyio.run(main)
""")


def revoke_elsewhere(target: Target, token_id: str, *, announce: bool = True) -> None:
    """Revoke ``token_id`` from another process (another replica, the CLI)."""
    subprocess.run([sys.executable, "-c", _REVOKE, target.url, target.schema, token_id,
                    "yes" if announce else "no"], check=True, timeout=60)


@asynccontextmanager
async def watching(target: Target, *, poll: float
                   ) -> AsyncIterator[tuple[SecurityStore, Authenticator]]:
    """A store with a token-checking authenticator whose epoch watch runs."""
    options: dict[str, Any] = {"schema": target.schema}
    if target.backend == "sqlite":
        options["sqlite"] = FAST_SQLITE
    async with open_security_store(target.url, **options) as (_, store):
        auth = Authenticator(store)
        auth.policy = PolicyEngine(store)
        auth.epoch.poll = poll
        async with anyio.create_task_group() as tg:
            tg.start_soon(auth.epoch.run)
            with anyio.fail_after(10):
                while target.backend == "postgresql" and not auth.epoch.listening:
                    await anyio.sleep(0.01)
            yield store, auth
            tg.cancel_scope.cancel()


async def seen_after(auth: Authenticator, token: str, *, limit: float = 10.0) -> int:
    """Requests made until ``token`` fails (bounded: a revocation must be seen)."""
    attempts = 0
    with anyio.fail_after(limit):
        while await auth.verify(token) is not None:
            attempts += 1
            await anyio.sleep(0.01)
    return attempts


@pytest.fixture
def pg_target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return make_target("postgresql", tmp_path, request)


async def test_postgresql_reads_the_epoch_only_when_it_may_have_moved(
        pg_target: Target) -> None:
    async with watching(pg_target, poll=3600.0) as (store, auth):
        await make_world(store)
        issued = await issue_token(store, user_id="u-member", org_id="A")
        assert await auth.verify(issued.token) is not None
        reads = auth.epoch.reads
        for _ in range(50):
            assert await auth.verify(issued.token) is not None
        assert auth.epoch.reads == reads  # 50 requests, no read: nothing moved
        # a change in this process: the very next request fails, the poll is an hour off
        other = await issue_token(store, user_id="u-viewer", org_id="A")
        assert await auth.verify(other.token) is not None
        assert await store.revoke_token(other.record.id, 1.0)
        assert await auth.verify(other.token) is None
        # a change by another process: its notice makes this one read the epoch again
        # (the token is cached at the current epoch first, and no read is due)
        assert await auth.verify(issued.token) is not None
        reads = auth.epoch.reads
        assert await auth.verify(issued.token) is not None
        assert auth.epoch.reads == reads
        revoke_elsewhere(pg_target, issued.record.id)
        await seen_after(auth, issued.token)


async def test_postgresql_a_lost_notice_is_caught_by_the_safety_poll(
        pg_target: Target) -> None:
    async with watching(pg_target, poll=0.5) as (store, auth):
        await make_world(store)
        issued = await issue_token(store, user_id="u-member", org_id="A")
        assert await auth.verify(issued.token) is not None
        assert await auth.verify(issued.token) is not None  # cached now
        revoke_elsewhere(pg_target, issued.record.id, announce=False)
        await seen_after(auth, issued.token)
        # and while notices stand still, reads happen at most once per poll
        kept = await issue_token(store, user_id="u-viewer", org_id="A")
        await auth.verify(kept.token)
        reads = auth.epoch.reads
        for _ in range(30):
            assert await auth.verify(kept.token) is not None
        assert auth.epoch.reads - reads <= 1


async def test_sqlite_another_process_revoking_fails_the_very_next_request(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    target = make_target("sqlite", tmp_path, request)
    async with watching(target, poll=3600.0) as (store, auth):
        await make_world(store)
        issued = await issue_token(store, user_id="u-member", org_id="A")
        for _ in range(3):
            assert await auth.verify(issued.token) is not None
        revoke_elsewhere(target, issued.record.id)
        assert await auth.verify(issued.token) is None
