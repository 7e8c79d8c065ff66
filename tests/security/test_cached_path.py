"""The per-request path that answers without a coroutine, and that it decides as the
full path would.

* ``Authenticator.cached`` answers for a token ``verify`` resolved before, and
  only while ``verify`` would give the same answer without reading anything:
  never after a revocation, a disabled user or an expiry, never when the
  last-use write is due (that stays ``verify``'s, and is still made).
* ``AuthenticatingApp`` asks it only for a lone ``Bearer`` header and no query
  string: every other shape goes the whole way (real uvicorn, real SQLite).
* ``EpochWatch.now`` answers without awaiting while notices are being received
  and nothing says the epoch moved; otherwise it leaves the read to ``current``.
* ``AuditLog.queue_use`` queues only for a writer that runs with room, and what
  it queues is stored as the record ``append`` would store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobius_rpc.security.audit import AuditLog
from mobius_rpc.security.audit_wire import use_row
from mobius_rpc.security.epoch import EpochWatch, note_local_change
from mobius_rpc.security.open import open_security_store
from mobius_rpc.security.policy import PolicyEngine
from mobius_rpc.security.serving import Authenticator, secure
from mobius_rpc.security.store import AuditQuery, Membership, MemorySecurityStore, SecurityStore
from mobius_rpc.security.tokens import (
    TOUCH_INTERVAL,
    TokenError,
    issue_token,
    resolve_principal,
)
from tests.conftest import serve_asgi
from tests.security.support import build_server, make_world, principal
from tests.storage.conftest import FAST_SQLITE

pytestmark = pytest.mark.anyio

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json",
           "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call",
           "mcp-name": "lookup"}


def _call(request_id: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": "lookup", "arguments": {"key": "k"},
                       "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                 "io.modelcontextprotocol/clientInfo":
                                     {"name": "t", "version": "1"},
                                 "io.modelcontextprotocol/clientCapabilities": {}}}}


# ------------------------------------------------------------ Authenticator.cached


async def test_cached_answers_only_for_a_token_verify_resolved_and_that_still_holds(
        tmp_path: Path) -> None:
    now = [1000.0]
    async with open_security_store(f"sqlite:///{tmp_path / 's.db'}",
                                   sqlite=FAST_SQLITE) as (_, store):
        await make_world(store)
        issued = await issue_token(store, user_id="u-member", org_id="A", ttl=600, now=now[0])
        raw = issued.token.encode()
        auth = Authenticator(store, clock=lambda: now[0])
        assert auth.cached(raw) is None  # never resolved: verify's to answer
        first = await auth.verify(issued.token)
        assert first is not None and auth.cached(raw) == first
        assert auth.cached(raw + b" ") is None and auth.cached(raw[:-1]) is None
        # the last use is due: cached leaves the write to verify, which makes it
        now[0] += TOUCH_INTERVAL
        assert auth.cached(raw) is None
        assert await auth.verify(issued.token) == first
        [token] = await store.list_tokens(user_id="u-member")
        assert token.last_used_at == now[0]
        assert auth.cached(raw) == first
        # the expiry, with no change to the store
        now[0] += 600.0
        assert auth.cached(raw) is None and await auth.verify(issued.token) is None
        # a revocation moves the epoch: the next request does not take the cached answer
        other = await issue_token(store, user_id="u-viewer", org_id="A", now=now[0])
        assert await auth.verify(other.token) is not None
        assert auth.cached(other.token.encode()) is not None
        assert await store.revoke_token(other.record.id, now[0])
        assert auth.cached(other.token.encode()) is None
        assert await auth.verify(other.token) is None


async def test_cached_tells_the_policy_the_version_read_with_the_token(tmp_path: Path) -> None:
    async with open_security_store(f"sqlite:///{tmp_path / 's.db'}",
                                   sqlite=FAST_SQLITE) as (_, store):
        await make_world(store)
        issued = await issue_token(store, user_id="u-member", org_id="A")
        auth = Authenticator(store)
        auth.policy = PolicyEngine(store)
        await auth.verify(issued.token)
        rules = await auth.policy.rules_for("A")
        auth.policy._hints.clear()
        assert auth.policy.ready("A") is None
        assert auth.cached(issued.token.encode()) is not None
        assert auth.policy.ready("A") is rules


_STEPS = st.lists(st.sampled_from(["verify", "tick", "touch-due", "expire", "revoke",
                                   "disable", "enable", "demote", "reissue"]),
                  min_size=1, max_size=14)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_STEPS)
def test_whatever_cached_answers_is_what_the_store_says_now(tmp_path_factory: Any,
                                                            steps: list[str]) -> None:
    """After any sequence of uses and changes, each time ``cached`` answers, resolving
    the token from the store (nothing cached) gives the same principal."""
    path = tmp_path_factory.mktemp("cached") / "s.db"

    async def run() -> None:
        now = [1000.0]
        async with open_security_store(f"sqlite:///{path}", sqlite=FAST_SQLITE) as (_, store):
            await make_world(store)
            issued = await issue_token(store, user_id="u-member", org_id="A", ttl=120,
                                       now=now[0])
            auth = Authenticator(store, clock=lambda: now[0])
            for step in steps:
                if step == "verify":
                    await auth.verify(issued.token)
                elif step == "tick":
                    now[0] += 1.0
                elif step == "touch-due":
                    now[0] += TOUCH_INTERVAL
                elif step == "expire":
                    now[0] += 120.0
                elif step == "revoke":
                    await store.revoke_token(issued.record.id, now[0])
                elif step in ("disable", "enable"):
                    await store.set_user_disabled("u-member", step == "disable")
                elif step == "demote":
                    await store.put_membership(Membership("A", "u-member", "viewer", 0.0))
                else:
                    try:
                        issued = await issue_token(store, user_id="u-member", org_id="A",
                                                   ttl=120, now=now[0])
                    except TokenError:  # a disabled user gets none: keep the old one
                        pass
                answer = auth.cached(issued.token.encode())
                if answer is not None:
                    truth = await resolve_principal(store, issued.token, clock=lambda: now[0])
                    assert truth is not None and truth[0] == answer, step
    anyio.run(run)


# ------------------------------------------------------------ the app's fast path


@pytest.fixture
async def base(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    async with open_security_store(f"sqlite:///{tmp_path / 'sec.db'}") as (_, store):
        await make_world(store)
        server = build_server()
        secure(server, store)
        token = (await issue_token(store, user_id="u-member", org_id="A")).token
        async with serve_asgi(server.asgi_app().app) as where:
            yield f"http://{where}", token


async def test_every_other_header_shape_still_goes_the_whole_way(
        base: tuple[str, str]) -> None:
    url, token = base
    async with httpx.AsyncClient(timeout=10) as http:
        async def post(authorization: list[str], query: str = "") -> httpx.Response:
            headers = httpx.Headers([*HEADERS.items(),
                                     *(("authorization", a) for a in authorization)])
            return await http.post(f"{url}/mcp{query}", json=_call(1), headers=headers)

        assert (await post([f"Bearer {token}"])).status_code == 200  # cached from here on
        assert (await post([f"Bearer {token}"])).status_code == 200
        # a token in the query is refused even beside a header the cache knows
        in_query = await post([f"Bearer {token}"], f"?access_token={token}")
        assert in_query.status_code == 400 and token not in in_query.text
        assert (await post([f"Bearer {token}"], "?x=1")).status_code == 200
        assert (await post([f"Bearer {token}", f"Bearer {token}"])).status_code == 400
        # what the whole way accepts, it still accepts
        assert (await post([f"bearer {token}"])).status_code == 200
        assert (await post([f"Bearer   {token}"])).status_code == 200
        assert (await post([f"Bearer {token}x"])).status_code == 401
        assert (await post([f"Basic {token}"])).status_code == 401


# ------------------------------------------------------------ EpochWatch.now


class _Notices(MemorySecurityStore):
    """A store whose epoch is read with a round trip (no ``epoch_reader``)."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch_reads = 0

    async def security_epoch(self) -> int:
        self.epoch_reads += 1
        return await super().security_epoch()


async def test_now_answers_while_notices_come_and_nothing_moved() -> None:
    clock = [0.0]
    store = _Notices()
    watch = EpochWatch(store, poll=5.0, clock=lambda: clock[0])
    assert watch.now() is None  # not listening: every request reads
    watch.listening = True
    assert watch.now() is None  # listening, but nothing read yet
    first = await watch.current()
    assert store.epoch_reads == 1
    assert watch.now() == first and store.epoch_reads == 1
    note_local_change()  # a change in this process: read again
    assert watch.now() is None
    assert await watch.current() == first and store.epoch_reads == 2
    assert watch.now() == first
    watch.invalidate()  # a notice
    assert watch.now() is None
    await watch.current()
    clock[0] += 5.0  # the safety poll is due
    assert watch.now() is None
    watch.listening = False
    await watch.current()
    assert watch.now() is None


# ------------------------------------------------------------ AuditLog.queue_use


async def test_queue_use_queues_only_for_a_writer_with_room(sec_store: SecurityStore) -> None:
    who = principal("u-member", "A")
    log = AuditLog(sec_store)
    row = use_row(5.0, "tools/call", "ok", who, "s1", 1, "lookup", {"key": "k"})
    assert log.queue_use(row) is False and not log.has_pending  # no writer runs
    log.max_behind = 2
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: log.run(interval=60.0))
        while not log.writing_behind:
            await anyio.sleep(0)
        assert log.queue_use(use_row(5.0, "tools/call", "ok", who, "s1", 1, "lookup",
                                     {"key": "k"}, duration_ms=1.23456))
        assert log.queue_use(use_row(6.0, "tools/call", "tool-error", who, "s1", "r2",
                                     "lookup", None, "boom", -1, 2.0, {"why": "x"}))
        assert log.queue_use(use_row(7.0, "tools/call", "ok", who, "s1", 3, "x", None)) \
            is False  # full
        durable = await log.append(method="tools/call", outcome="ok", principal=who,
                                   target="lookup", arguments={"key": "k"}, session="s1",
                                   request_id=1, duration_ms=1.23456, at=5.0)
        tg.cancel_scope.cancel()
    queued, errored, again = (await _all(sec_store))[-3:]
    for field in ("time", "method", "outcome", "user", "organization", "auth_method",
                  "credential", "session", "request_id", "target", "arguments_digest",
                  "error", "error_code", "duration_ms", "detail"):
        assert getattr(queued, field) == getattr(durable, field), field
    assert again.seq == durable.seq and queued.seq < errored.seq < durable.seq
    assert (errored.outcome, errored.request_id, errored.error, errored.error_code,
            errored.detail) == ("tool-error", "r2", "boom", -1, {"why": "x"})
    assert (await AuditLog(sec_store).verify()).ok


async def _all(store: SecurityStore) -> list[Any]:
    return list(await store.list_audit(AuditQuery(limit=1000)))
