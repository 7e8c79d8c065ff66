"""A token's last use is written behind the answer while ``Authenticator.run`` runs.

* The request that finds the minute's last-use write due answers while another
  connection holds SQLite's write lock; the write lands once the lock is free.
* A clean stop writes what was noted; a write the store refuses is tried again,
  and a newer use noted meanwhile wins.
* Without the runner the request writes the value itself, as before.
* ``mobius serve --http``'s security runs it.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import anyio
import pytest

from mobius_rpc.demo import build_demo_server
from mobius_rpc.security.last_use import LastUseWriter
from mobius_rpc.security.open import open_security_store
from mobius_rpc.security.serving import Authenticator, serve_http_security
from mobius_rpc.security.store import MemorySecurityStore, SecurityStore
from mobius_rpc.security.tokens import TOUCH_INTERVAL, issue_token
from tests.security.support import make_world
from tests.storage.conftest import FAST_SQLITE

pytestmark = pytest.mark.anyio


async def _last_used(store: SecurityStore, token_id: str) -> float | None:
    found = await store.get_token(token_id)
    assert found is not None
    return found.last_used_at


async def _until(predicate_value: object, read: object, timeout: float = 5.0) -> None:
    """Poll the coroutine function ``read`` until it returns ``predicate_value``."""
    with anyio.fail_after(timeout):
        while await read() != predicate_value:  # type: ignore[operator]
            await anyio.sleep(0.01)


async def test_a_due_last_use_does_not_wait_for_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    now = [1000.0]
    async with open_security_store(f"sqlite:///{path}", sqlite=FAST_SQLITE) as (_, store):
        await make_world(store)
        issued = await issue_token(store, user_id="u-member", org_id="A", now=now[0])
        tid, raw = issued.record.id, issued.token
        auth = Authenticator(store, clock=lambda: now[0], cache_ttl=3600.0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(auth.run)
            await _until(True, _running(auth.last_use))
            first = await auth.verify(raw)  # first use: resolved, its use noted
            assert first is not None
            await _until(now[0], lambda: _last_used(store, tid))
            used_at = now[0]
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # holds the write lock
            try:
                now[0] += TOUCH_INTERVAL
                with anyio.fail_after(1.0):  # the 5 s busy timeout would exceed it
                    assert auth.cached(raw.encode()) == first
                    now[0] += TOUCH_INTERVAL
                    assert await auth.verify(raw) == first
                await anyio.sleep(0.1)
                assert await _last_used(store, tid) == used_at  # still behind the lock
            finally:
                blocker.execute("COMMIT")
                blocker.close()
            await _until(now[0], lambda: _last_used(store, tid))  # the newest use won
            tg.cancel_scope.cancel()


def _running(writer: LastUseWriter):  # type: ignore[no-untyped-def]
    async def read() -> bool:
        return writer.running
    return read


async def test_a_clean_stop_writes_what_was_noted(tmp_path: Path) -> None:
    async with open_security_store(f"sqlite:///{tmp_path / 's.db'}",
                                   sqlite=FAST_SQLITE) as (_, store):
        await make_world(store)
        issued = await issue_token(store, user_id="u-member", org_id="A", now=5.0)
        writer = LastUseWriter(store)
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            await _until(True, _running(writer))
            assert writer.note(issued.record.id, 77.0)
            tg.cancel_scope.cancel()  # before the runner had a turn to write it
        assert not writer.running
        assert await _last_used(store, issued.record.id) == 77.0
        assert not writer.note(issued.record.id, 78.0)  # nothing runs: the caller writes


class _Outage(MemorySecurityStore):
    """A store whose last-use writes fail while ``down`` (a store outage: the one
    thing here that cannot be made to happen for real on demand)."""

    down = True
    refused = 0

    async def touch_token(self, token_id: str, at: float) -> None:
        if self.down:
            self.refused += 1
            raise OSError("the store is unreachable")
        await super().touch_token(token_id, at)


async def test_a_refused_write_is_kept_and_tried_again(
        caplog: pytest.LogCaptureFixture) -> None:
    store = _Outage()
    await make_world(store)
    issued = await issue_token(store, user_id="u-member", org_id="A", now=1.0)
    tid = issued.record.id
    writer = LastUseWriter(store, retry_delay=0.05)
    caplog.set_level(logging.WARNING, "mobius_rpc.security")
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        await _until(True, _running(writer))
        assert writer.note(tid, 10.0)
        with anyio.fail_after(5):
            while store.refused < 3:
                await anyio.sleep(0.01)
        assert writer.note(tid, 20.0)  # a newer use while the store is down
        assert writer.note(tid, 15.0)  # an older one noted late does not replace it
        store.down = False
        await _until(20.0, lambda: _last_used(store, tid))
        tg.cancel_scope.cancel()
    warnings = [r for r in caplog.records if "refused a write" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per retry


async def test_without_the_runner_the_request_writes_the_last_use() -> None:
    store = MemorySecurityStore()
    await make_world(store)
    now = [100.0]
    issued = await issue_token(store, user_id="u-member", org_id="A", now=now[0])
    auth = Authenticator(store, clock=lambda: now[0])
    assert await auth.verify(issued.token) is not None
    assert await _last_used(store, issued.record.id) == 100.0
    now[0] += TOUCH_INTERVAL
    assert auth.cached(issued.token.encode()) is None  # the write is verify's
    assert await auth.verify(issued.token) is not None
    assert await _last_used(store, issued.record.id) == now[0]


async def test_a_full_writer_leaves_the_write_to_the_caller() -> None:
    store = MemorySecurityStore()
    await make_world(store)
    issued = await issue_token(store, user_id="u-member", org_id="A", now=1.0)
    writer = LastUseWriter(store, max_noted=1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        await _until(True, _running(writer))
        writer._wake = anyio.Event()  # keep the runner asleep for this check
        assert writer.note("some-other-token", 2.0)
        assert not writer.note(issued.record.id, 3.0)
        await writer.record(issued.record.id, 3.0)  # written at once instead
        assert await _last_used(store, issued.record.id) == 3.0
        tg.cancel_scope.cancel()


async def test_serve_http_security_runs_the_last_use_writer(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setenv("MOBIUS_HOME", str(tmp_path))
    server = build_demo_server()
    async with serve_http_security(server, auth=True, store_url=f"sqlite:///{tmp_path / 's.db'}",
                                   audit_writer="thread"):
        authenticator = server.authenticator
        assert isinstance(authenticator, Authenticator)
        await _until(True, _running(authenticator.last_use))
    assert not authenticator.last_use.running
