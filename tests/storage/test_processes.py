"""Real processes on one SQLite file: a writer killed with SIGKILL, eight at once."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import orjson
import pytest

from mobius_rpc.storage import open_store

from .child_writer import BIG, record

CHILD = [sys.executable, str(Path(__file__).with_name("child_writer.py"))]


def test_a_writer_killed_midway_loses_nothing_it_reported(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    reported: list[tuple[int, int]] = []
    with subprocess.Popen([*CHILD, "crash", f"sqlite:///{path}", "1000"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None and child.stderr is not None
        for line in child.stdout:
            i, event_id = map(int, line.split())
            reported.append((i, event_id))
            if len(reported) == 300:
                child.send_signal(signal.SIGKILL)
                break
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL, child.stderr.read()
    assert len(reported) == 300  # killed midway, not after the 1,000 writes

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()

    async def check() -> None:
        async with open_store(f"sqlite:///{path}", retention=BIG) as store:
            replay = await store.events.replay("crash", "get")
            stored = {e.event_id: e.data for e in replay.events}
            for i, event_id in reported:
                assert stored[event_id] == b"event %d " % i * 20
                assert await store.sessions.get(f"s{i}") is not None
                assert await store.tasks.get("crash", f"t{i}") is not None
            assert sorted(stored) == list(range(1, len(stored) + 1))  # no holes either

    anyio.run(check)


def test_eight_processes_writing_one_file_see_no_lock_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    rounds = 40

    async def hub() -> None:  # the session every worker subscribes on at once
        async with open_store(url) as store:
            await store.sessions.put(record("hub", time.time()))

    anyio.run(hub)
    children = [subprocess.Popen([*CHILD, "load", url, str(k), str(rounds)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for k in range(8)]
    results = [child.communicate(timeout=300) for child in children]
    for child, (_, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
        assert "locked" not in err.lower() and "Traceback" not in err
    reports = [orjson.loads(out) for out, _ in results]
    assert sorted(r["worker"] for r in reports) == list(range(8))
    sys.stderr.write(f"busy retries per worker: {[r['retries'] for r in reports]}\n")

    async def check() -> None:
        async with open_store(url, retention=BIG) as store:
            ids = []
            for k in range(8):
                replay = await store.events.replay("shared", f"w{k}")
                assert [e.data for e in replay.events] == [b"%d:%d" % (k, i)
                                                           for i in range(rounds)]
                ids += [e.event_id for e in replay.events]
            assert sorted(ids) == list(range(1, 8 * rounds + 1))
            page = await store.tasks.list("shared", limit=1000)
            assert len(page.tasks) == 8 * rounds
            assert all(t.status == "completed" for t in page.tasks)
            shared = await store.sessions.get("hub")
            assert shared is not None  # every worker's subscriptions landed
            assert shared.subscriptions == {f"res://{k}/{i}" for k in range(8)
                                            for i in range(rounds)} | {"res://a"}

    anyio.run(check)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOBIUS_STORE", raising=False)
