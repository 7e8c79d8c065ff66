"""The audit writer process: every record stored exactly once, in a chain that
verifies, whatever happens to the child or to the serving process.

Real child processes (``python -m mobius_rpc.security.audit_writer``) on SQLite
and a real PostgreSQL.  Each test fails without the part it names: records the
child did not acknowledge must come back (the SIGKILL test), the pipe's end must
make the child store what it read (the serving-process crash test), and the
wire format must carry every field (the Hypothesis property).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobius_rpc.security.audit import AuditLog, record_hash
from mobius_rpc.security.audit_chain import safe_digest, storable
from mobius_rpc.security.audit_process import (
    AuditWriterProcess,
    body_from_wire,
    decode_batch,
    encode_batch,
    to_wire,
)
from mobius_rpc.security.audit_wire import row_identity
from mobius_rpc.security.open import open_security_store
from mobius_rpc.security.principal import AuthMethod, Principal
from mobius_rpc.security.store import AuditQuery, AuditRecord
from tests.security.conftest import pg_cluster  # noqa: F401
from tests.storage.conftest import Target, make_target

pytestmark = pytest.mark.anyio

ALICE = Principal(user="alice", organization="acme", method=AuthMethod.API_TOKEN,
                  credential="tok1")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return make_target(request.param, tmp_path, request)


def _writer(db: Target, kind: type[AuditWriterProcess] = AuditWriterProcess,
            **options: Any) -> AuditWriterProcess:
    return kind(db.url, schema=db.schema if db.backend == "postgresql" else None, **options)


def _use(i: int, session: str = "s1") -> dict[str, Any]:
    return {"method": "tools/call", "outcome": "ok", "principal": ALICE, "target": "echo",
            "arguments": {"text": f"hello {i}"}, "session": session, "request_id": i,
            "duration_ms": 0.25, "detail": {}}


async def _records(security: Any) -> list[AuditRecord]:
    return list(await security.list_audit(AuditQuery()))


async def _until(condition: Any, timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)


async def test_records_and_durable_appends_share_one_chain(db: Target) -> None:
    async with open_security_store(db.url, schema=db.schema) as (_, security):
        log = AuditLog(security)
        writer = _writer(db)
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run, log)
            await _until(lambda: log.writing_behind)
            for i in range(300):
                log.append_later(**_use(i))
                if i % 50 == 0:  # a refusal, written here while the child writes too
                    await log.append(method="tools/call", outcome="denied", principal=ALICE,
                                     target="secret", session="s1", request_id=f"d{i}")
                    await anyio.sleep(0)
            await log.flush()  # returns once the child stored everything shipped
            stored = await _records(security)
            assert len(stored) == 306
            tg.cancel_scope.cancel()
        assert writer.child_stats["records"] == 300
        result = await log.verify()
        assert result.ok, result.problems
        stored = await _records(security)
        assert [r.seq for r in stored] == list(range(1, 307))
        uses = [r for r in stored if r.outcome == "ok"]
        assert [r.request_id for r in uses] == [str(i) for i in range(300)]  # in order
        assert all(r.user == "alice" and r.organization == "acme"
                   and r.auth_method == "api-token" and r.credential == "tok1" for r in uses)


async def test_a_clean_end_stores_what_was_queued_last(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    async with open_security_store(url) as (_, security):
        log = AuditLog(security)
        writer = AuditWriterProcess(url, ship_interval=5.0)  # nothing ships on its own
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run, log)
            await _until(lambda: log.writing_behind)
            for i in range(50):
                log.append_later(**_use(i))
            tg.cancel_scope.cancel()
        assert len(await _records(security)) == 50
        assert (await log.verify()).ok


async def test_the_request_path_queues_only_while_the_child_runs_with_room(
        tmp_path: Path) -> None:
    """``AuditLog.queue_use`` hands a row to the writer process in one call
    (``offer``): taken while the child runs and fewer than ``max_behind`` records
    wait (queued or unacknowledged), refused otherwise, so the caller appends
    it durably itself."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    async with open_security_store(url) as (_, security):
        log = AuditLog(security)
        writer = AuditWriterProcess(url, ship_interval=5.0, max_behind=3)
        rows = [to_wire({**_use(i), "at": 100.0 + i}) for i in range(4)]
        assert writer.offer(rows[0]) is False  # no child yet
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run, log)
            await _until(lambda: log.writing_behind)
            assert log.queue_use(rows[0]) and log.queue_use(rows[1])
            writer._unacked_count = 1  # one record shipped and not acknowledged yet
            assert log.queue_use(rows[2]) is False  # 2 queued + 1 unacknowledged: full
            writer._unacked_count = 0
            assert log.queue_use(rows[2])
            assert log.queue_use(rows[3]) is False
            tg.cancel_scope.cancel()
        stored = await _records(security)
        assert [r.request_id for r in stored] == ["0", "1", "2"]
        assert (await log.verify()).ok
        assert writer.offer(rows[3]) is False  # the child is gone


async def test_a_killed_child_loses_and_doubles_nothing(db: Target) -> None:
    async with open_security_store(db.url, schema=db.schema) as (_, security):
        log = AuditLog(security)
        pids: list[int] = []

        class Watched(AuditWriterProcess):
            async def _ship(self, stdin: Any) -> None:
                await super()._ship(stdin)
                if self._number == 3 and not pids and self.pid:  # batches 1-3 sent
                    pids.append(self.pid)
                    os.kill(self.pid, signal.SIGKILL)

        writer = _writer(db, Watched, commit_interval=0.05)

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run, log)
            await _until(lambda: log.writing_behind)
            for i in range(400):
                log.append_later(**_use(i))
                if i % 40 == 0:
                    await anyio.sleep(0.01)  # several batches
            await _until(lambda: pids and writer._gone is not None, 20)
            for i in range(400, 420):  # after the child: written here
                if log.writing_behind:
                    log.append_later(**_use(i))
                else:
                    await log.append(**_use(i))
            await log.flush()
            tg.cancel_scope.cancel()
        stored = await _records(security)
        assert sorted(int(r.request_id or -1) for r in stored) == list(range(420))
        assert (await log.verify()).ok


async def test_a_child_that_cannot_open_the_store_leaves_the_writing_here(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    async with open_security_store(url) as (_, security):
        log = AuditLog(security)
        # the child gets a store it cannot open (a directory where the file should be)
        (tmp_path / "dir.db").mkdir()
        writer = AuditWriterProcess(f"sqlite:///{tmp_path / 'dir.db'}")
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run, log)
            await _until(lambda: log.writing_behind)  # the in-process writer took over
            for i in range(20):
                log.append_later(**_use(i))
            await log.flush()
            tg.cancel_scope.cancel()
        assert len(await _records(security)) == 20


async def test_text_a_caller_chose_with_nul_characters_is_stored_and_verifies(
        db: Target) -> None:
    """PostgreSQL's text refuses NUL: a method, tool name, request id or error with one
    must not make the writer fail (and retry) for ever, in either writer."""
    nul = "a\x00b"
    async with open_security_store(db.url, schema=db.schema) as (_, security):
        log = AuditLog(security)
        await log.append(method=nul, outcome="denied", principal=ALICE, target=nul,
                         error=nul, request_id=nul, session="s1")  # written here
        writer = _writer(db)
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run, log)
            await _until(lambda: log.writing_behind)
            log.append_later(method="tools/call", outcome="error", principal=ALICE,
                             target=nul, error=nul, request_id=nul, session="s1")
            log.append_later(**_use(1))
            await log.flush()
            tg.cancel_scope.cancel()
        stored = await _records(security)
        assert len(stored) == 3
        assert stored[0].method == stored[0].target == stored[1].error == "a\ufffdb"
        assert (await log.verify()).ok


_CRASHING_SERVER = textwrap.dedent("""
    import os, signal, sys, anyio
    from mobius_rpc.security.audit import AuditLog
    from mobius_rpc.security.audit_process import AuditWriterProcess
    from mobius_rpc.security.open import open_security_store
    from mobius_rpc.security.principal import AuthMethod, Principal

    async def main():
        url = sys.argv[1]
        p = Principal(user="alice", organization="acme", method=AuthMethod.API_TOKEN)
        async with open_security_store(url) as (_, security):
            log = AuditLog(security)
            writer = AuditWriterProcess(url, commit_interval=0.5)
            async with anyio.create_task_group() as tg:
                tg.start_soon(writer.run, log)
                while not log.writing_behind:
                    await anyio.sleep(0.01)
                for i in range(500):
                    log.append_later(method="tools/call", outcome="ok", principal=p,
                                     session="s", request_id=i)
                while writer._queue:  # shipped: in the pipe, not yet stored
                    await anyio.sleep(0.001)
                os.kill(os.getpid(), signal.SIGKILL)
    anyio.run(main)
""")


async def test_records_shipped_before_the_server_crashed_are_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    async with open_security_store(url):
        pass  # migrated, so both processes start from the same schema
    proc = subprocess.run([sys.executable, "-c", _CRASHING_SERVER, url], timeout=60,
                          capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    async with open_security_store(url) as (_, security):
        stored: list[AuditRecord] = []
        with anyio.fail_after(30):  # the orphaned child stores what it read, then exits
            while len(stored) < 500:
                await anyio.sleep(0.05)
                stored = await _records(security)
        assert sorted(int(r.request_id or -1) for r in stored) == list(range(500))
        assert (await AuditLog(security).verify()).ok


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70)
                     | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(user=st.none() | st.text(max_size=6), org=st.text(max_size=6),
       target=st.none() | st.text(max_size=6),
       method=st.sampled_from(list(AuthMethod)), credential=st.none() | st.text(max_size=6),
       request_id=st.none() | st.integers() | st.text(max_size=6), arguments=_json,
       error=st.none() | st.text(max_size=10), code=st.none() | st.integers(-40000, 0),
       duration=st.none() | st.floats(0, 1e6), detail=st.dictionaries(
           st.text(max_size=4), st.integers(-2**63, 2**63 - 1) | st.text(max_size=4),
           max_size=2),
       outcome=st.sampled_from(["ok", "error", "tool-error", "cancelled"]))
def test_the_wire_carries_every_field(user: str | None, org: str, target: str | None,
                                      method: AuthMethod,
                                      credential: str | None, request_id: Any, arguments: Any,
                                      error: str | None, code: int | None,
                                      duration: float | None, detail: dict[str, Any],
                                      outcome: str) -> None:
    """A record built in the child from the wire is the record this process would
    have built from the same fields (same hash), arguments the JSON encoder refuses
    included (they are digested before they are shipped)."""
    principal = None if user is None else Principal(user=user, organization=org,
                                                    method=method, credential=credential)
    fields = {"method": "tools/call", "outcome": outcome, "principal": principal,
              "target": target, "arguments": arguments, "session": "s",
              "request_id": request_id,
              "error": error, "error_code": code, "duration_ms": duration, "detail": detail,
              "at": 1700000000.25}
    log = AuditLog(store=None)  # type: ignore[arg-type]  # only the record builder is used
    here = log._body(**fields)
    row = to_wire(fields)
    shipped = encode_batch(1, [row])
    number, rows = decode_batch(shipped[4:])
    assert number == 1
    # a batch the child did not acknowledge is taken back from these bytes: the row
    # read back is recognised as the one the child may have stored
    assert row_identity(rows[0]) == row_identity(row)
    there = body_from_wire(rows[0])
    assert there == here
    assert record_hash(AuditRecord(**there), "0" * 64) == \
        record_hash(AuditRecord(**here), "0" * 64)
    # and each field is where the record says it is (both sides share the row's
    # layout, so this is the check of the layout itself)
    clean = storable
    assert (here["time"], here["method"], here["outcome"], here["session"]) == \
        (1700000000.25, "tools/call", outcome, "s")
    assert (here["user"], here["organization"], here["auth_method"], here["credential"]) == (
        (None, None, None, None) if principal is None else
        (user, org or None, method.value, credential))
    assert here["request_id"] == (None if request_id is None else clean(str(request_id)))
    assert (here["target"], here["error"], here["error_code"]) == \
        (clean(target), clean(error), code)
    assert here["duration_ms"] == (None if duration is None else round(duration, 3))
    assert here["detail"] == detail
    assert here["arguments_digest"] == (None if arguments is None else safe_digest(arguments))
