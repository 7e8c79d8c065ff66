"""The cheap paths security takes per request, and that they give nothing away.

* The authenticator caches resolved tokens while the store's security epoch
  stands still: a revocation made through *another* connection to the same
  database (another replica, the CLI) fails the very next request; an expiry is
  honoured without any change to the store.
* The audit log writes allowed uses behind the answer, but a refusal is on
  record before the caller hears of it, and nothing queued is lost on a clean
  shutdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mobius_rpc.core.errors import McpError
from mobius_rpc.security.audit import AuditLog
from mobius_rpc.security.open import open_security_store
from mobius_rpc.security.policy import PolicyEngine, make_rule
from mobius_rpc.security.serving import Authenticator
from mobius_rpc.security.store import AuditQuery, MemorySecurityStore, SecurityStore
from mobius_rpc.security.tokens import issue_token
from tests.conftest import connect
from tests.security.conftest import audit_rows
from tests.security.support import Caller, build_server, make_world, secured

pytestmark = pytest.mark.anyio


class Counting:
    """Counts resolve_token calls on a wrapped store."""

    def __init__(self, inner: SecurityStore) -> None:
        self.inner = inner
        self.resolves = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def resolve_token(self, token_id: str) -> Any:
        self.resolves += 1
        return await self.inner.resolve_token(token_id)


async def test_cached_tokens_fail_at_once_after_a_change_through_another_connection(
        sec_store: SecurityStore) -> None:
    await make_world(sec_store)
    issued = await issue_token(sec_store, user_id="u-member", org_id="A")
    counting = Counting(sec_store)
    auth = Authenticator(counting)  # type: ignore[arg-type]
    auth.policy = PolicyEngine(sec_store)
    for _ in range(5):
        assert await auth.verify(issued.token) is not None
    assert counting.resolves == 1  # resolved once, then the epoch was enough
    await sec_store.revoke_token(issued.record.id, 1.0)
    assert await auth.verify(issued.token) is None
    # the same through a second store on the same database (another process's view)
    other = await issue_token(sec_store, user_id="u-viewer", org_id="A")
    assert await auth.verify(other.token) is not None
    if isinstance(sec_store, MemorySecurityStore):
        await sec_store.set_user_disabled("u-viewer", True)
    else:
        from mobius_rpc.security.sql_store import SqlSecurityStore
        db = sec_store.db  # type: ignore[attr-defined]
        await SqlSecurityStore(db).set_user_disabled("u-viewer", True)
    assert await auth.verify(other.token) is None


async def test_a_cached_token_stops_at_its_expiry(tmp_path: Path) -> None:
    now = [1000.0]
    async with open_security_store(f"sqlite:///{tmp_path / 's.db'}") as (_, store):
        await make_world(store)
        issued = await issue_token(store, user_id="u-member", org_id="A", ttl=30, now=now[0])
        auth = Authenticator(store, clock=lambda: now[0])
        assert await auth.verify(issued.token) is not None
        now[0] += 29.0
        assert await auth.verify(issued.token) is not None
        now[0] += 1.0
        assert await auth.verify(issued.token) is None


async def test_the_policy_uses_the_version_read_with_the_token(tmp_path: Path) -> None:
    async with open_security_store(f"sqlite:///{tmp_path / 's.db'}") as (_, store):
        await make_world(store)
        counting = Counting(store)
        engine = PolicyEngine(counting)  # type: ignore[arg-type]
        reads = 0
        real = store.get_organization

        async def get_organization(org_id: str) -> Any:
            nonlocal reads
            reads += 1
            return await real(org_id)

        counting.get_organization = get_organization  # type: ignore[attr-defined]
        first = await engine.rules_for("A")
        assert reads == 1
        engine.note_version("A", first.version)
        assert await engine.rules_for("A") is first and reads == 1
        engine.note_version("A", first.version + 1)  # a newer version: recompiled
        assert (await engine.rules_for("A")).version == first.version + 1


async def test_refusals_are_on_record_before_the_answer_and_uses_follow_it(
        sec_store: SecurityStore) -> None:
    people = await make_world(sec_store)
    server = build_server()
    log = AuditLog(sec_store)
    secured(server, sec_store, Caller(people["viewer"]), audit=log)
    before = len(await audit_rows(sec_store))
    async with anyio.create_task_group() as tg:
        tg.start_soon(log.run)
        while not log.writing_behind:
            await anyio.sleep(0)
        async with connect(server) as client:
            with pytest.raises(McpError):
                await client.call_tool("delete_all", {})
            # no flush: the refusal was written before the error reached us
            denied = await sec_store.list_audit(AuditQuery(outcome="denied"))
            assert [r.target for r in denied] == ["delete_all"]
            for i in range(20):
                await client.call_tool("lookup", {"key": str(i)})
        tg.cancel_scope.cancel()  # a clean shutdown writes what is queued
    rows = (await audit_rows(sec_store))[before:]
    assert [r.outcome for r in rows] == ["denied"] + ["ok"] * 20
    assert len({r.request_id for r in rows}) == 21
    assert (await AuditLog(sec_store).verify()).ok
    assert log.stats["records"] >= 21 and log.stats["max_wait_ms"] > 0


async def test_a_full_queue_makes_callers_write_themselves() -> None:
    store = MemorySecurityStore()
    log = AuditLog(store)
    log.max_behind = 3
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: log.run(interval=60.0))  # a writer that takes its time
        while not log.writing_behind:
            await anyio.sleep(0)
        for i in range(3):
            assert log.writing_behind
            log.append_later(method="tools/call", outcome="ok", target=str(i))
        assert not log.writing_behind  # full: the next caller writes (and takes the queue)
        await log.append(method="tools/call", outcome="ok", target="3")
        assert [r.target for r in store.audit_records] == ["0", "1", "2", "3"]
        tg.cancel_scope.cancel()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.sampled_from(
    ["note", "note-old", "note-none", "change", "tick", "expire", "read"]), max_size=25),
    staleness=st.sampled_from([0.0, 5.0]))
@example(steps=["read", "note", "change", "expire"], staleness=0.0)  # an outdated hint
@example(steps=["read", "note", "change", "note"], staleness=0.0)  # a newer version
def test_ready_is_rules_for_whenever_it_answers(steps: list[str], staleness: float) -> None:
    """``PolicyEngine.ready`` (the per-request check's path without a coroutine)
    answers only what ``rules_for`` would answer at the same moment: the same
    compiled set, never one a rule change or an expired hint has outdated."""
    async def run() -> None:
        store = MemorySecurityStore()
        await make_world(store)
        now = [100.0]
        engine = PolicyEngine(store, max_staleness=staleness, clock=lambda: now[0])
        for step in steps:
            org = await store.get_organization("A")
            assert org is not None
            if step == "note":
                engine.note_version("A", org.rules_version)
            elif step == "note-old":
                engine.note_version("A", org.rules_version - 1)
            elif step == "note-none":
                engine.note_version("A", None)
            elif step == "change":
                await store.add_rule(make_rule("A", "deny", "*", "tools", f"t{now[0]}"))
            elif step == "tick":
                now[0] += 0.4
            elif step == "expire":
                now[0] += PolicyEngine.HINT_TTL + staleness
            else:
                await engine.rules_for("A")
            quick = engine.ready("A")
            if quick is not None:
                assert await engine.rules_for("A") is quick
        # and it does answer once a fresh hint matches the compiled set
        org = await store.get_organization("A")
        assert org is not None
        engine.note_version("A", org.rules_version)
        compiled = await engine.rules_for("A")
        assert engine.ready("A") is compiled
    anyio.run(run)
