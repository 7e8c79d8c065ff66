"""SQLite specifics: files that are not ours, locks held by others, the WAL, locations."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

from mobius_rpc.storage import (
    NotOurDatabase,
    Retention,
    SqliteOptions,
    StoreBusy,
    StoreConfigError,
    StoreCorrupt,
    data_dir,
    inspect_store,
    open_store,
    parse_store_url,
)
from mobius_rpc.storage.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sidecars(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


async def refused(path: Path, error: type[Exception], match: str) -> None:
    """Opening (with and without migrating) and inspecting all refuse, touching nothing."""
    before, around = digest(path), sidecars(path)
    for attempt in (lambda: open_store(f"sqlite:///{path}").__aenter__(),
                    lambda: open_store(f"sqlite:///{path}", migrate=False).__aenter__(),
                    lambda: inspect_store(f"sqlite:///{path}")):
        with pytest.raises(error, match=match) as caught:
            await attempt()
        assert "\n" not in str(caught.value)
    assert digest(path) == before and sidecars(path) == around


async def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are my notes, not a database\n" * 50)
    await refused(path, NotOurDatabase, "is not a SQLite database")


async def test_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.commit()
    conn.close()
    await refused(path, NotOurDatabase, "another application .* tables: notes")
    marked = tmp_path / "marked.db"
    conn = sqlite3.connect(marked)
    conn.execute("PRAGMA application_id = 1234")
    conn.close()
    await refused(marked, NotOurDatabase, r"application_id 0x4d2")


async def our_file_with_data(path: Path) -> None:
    async with open_store(f"sqlite:///{path}",
                          retention=Retention(max_bytes=10**9, max_events=10**6)) as store:
        for i in range(300):
            await store.events.append("s", "get", bytes([i % 256]) * 2000)


async def test_a_damaged_schema_page_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "mobius.db"
    await our_file_with_data(path)
    with open(path, "r+b") as file:
        file.seek(100)
        file.write(b"\xa5" * 3000)
    await refused(path, StoreCorrupt, "damaged")


async def test_damaged_data_is_reported_by_status_and_by_the_read(tmp_path: Path) -> None:
    path = tmp_path / "mobius.db"
    await our_file_with_data(path)
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.seek(size // 2)
        file.write(b"\xa5" * 40_000)
    before = digest(path)
    with pytest.raises(StoreCorrupt, match="damaged"):
        await inspect_store(f"sqlite:///{path}")
    with pytest.raises(StoreCorrupt, match="damaged"):
        async with open_store(f"sqlite:///{path}", migrate=False) as store:
            await store.events.replay("s", "get")
    assert digest(path) == before


async def test_a_new_store_is_private_to_its_user(tmp_path: Path) -> None:
    path = tmp_path / "home" / "deep" / "mobius.db"
    async with open_store(f"sqlite:///{path}") as store:
        assert store.backend == "sqlite"
        await store.sessions.delete("nothing")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_every_connection_is_set_up_for_several_processes(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path / 'x.db'}") as store:
        assert isinstance(store, SqliteStore)
        db = store.db
        writer = db._writer
        assert writer is not None
        assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert writer.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert writer.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert writer.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        await store.sessions.get("warm-a-reader")
        reader = db._readers[0]
        assert reader.execute("PRAGMA query_only").fetchone()[0] == 1
        assert reader.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def hold_write_lock(path: Path, seconds: float, started: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    started.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


async def test_a_lock_held_past_busy_timeout_is_waited_out(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    options = SqliteOptions(busy_timeout_ms=10, retry_deadline=30)
    async with open_store(f"sqlite:///{path}", sqlite=options) as store:
        assert isinstance(store, SqliteStore)
        started = threading.Event()
        holder = threading.Thread(target=hold_write_lock, args=(path, 0.4, started))
        holder.start()
        started.wait()
        assert await store.events.append("s", "get", b"waited") == 1
        holder.join()
        assert store.db.busy_retries > 0


async def test_a_lock_held_past_the_deadline_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    options = SqliteOptions(busy_timeout_ms=10, retry_deadline=0.2)
    async with open_store(f"sqlite:///{path}", sqlite=options) as store:
        started = threading.Event()
        holder = threading.Thread(target=hold_write_lock, args=(path, 1.5, started))
        holder.start()
        started.wait()
        with pytest.raises(StoreBusy, match="stayed locked by other processes") as caught:
            await store.events.append("s", "get", b"x")
        assert "database is locked" not in str(caught.value)
        holder.join()
        assert await store.events.append("s", "get", b"x") == 1


async def test_the_wal_stays_bounded_under_writes(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    limit = 512 * 1024
    options = SqliteOptions(wal_limit=limit, checkpoint_every=16)
    largest = 0
    async with open_store(f"sqlite:///{path}", sqlite=options,
                          retention=Retention(max_events=200)) as store:
        for i in range(2000):
            await store.events.append(f"s{i % 7}", "get", b"x" * 3000)
            if i % 10 == 0:
                largest = max(largest, os.stat(f"{path}-wal").st_size)
    # default settings let this WAL reach several megabytes
    assert 0 < largest <= 2 * limit


async def test_messages_cross_processes_through_the_outbox(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code = ("import anyio, sys\nfrom mobius_rpc.storage import open_store\n"
            "async def main():\n    async with open_store(sys.argv[1]) as s:\n"
            "        for i in range(5):\n            await s.channel.publish('news', b'%d' % i)\n"
            "anyio.run(main)\n")
    async with open_store(url, sqlite=SqliteOptions(poll_interval=0.02)) as store:
        async with store.channel.subscribe("news") as sub:
            done = subprocess.run([sys.executable, "-c", code, url], timeout=60,
                                  capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            got = []
            with anyio.fail_after(10):
                async for message in sub:
                    got.append(message.payload)
                    if len(got) == 5:
                        break
        assert got == [b"0", b"1", b"2", b"3", b"4"]
        assert (await store.sweep(time.time() + 10**6)).messages == 5


def test_the_data_directory_follows_the_environment(tmp_path: Path) -> None:
    if sys.platform != "linux":
        pytest.skip("the XDG rules apply on Linux")
    assert data_dir({"MOBIUS_HOME": str(tmp_path)}) == tmp_path
    assert data_dir({"XDG_DATA_HOME": "/data"}) == Path("/data/mobius")
    assert data_dir({"XDG_DATA_HOME": "relative"}) == Path.home() / ".local/share/mobius"
    assert data_dir({}) == Path.home() / ".local/share/mobius"
    assert parse_store_url(None, {"MOBIUS_HOME": str(tmp_path)}).target == \
        str(tmp_path / "mobius.db")


@pytest.mark.parametrize(("url", "backend", "target"), [
    ("sqlite:///var/x.db", "sqlite", "/var/x.db"),
    ("sqlite:////var/x.db", "sqlite", "/var/x.db"),
    ("sqlite:rel/x.db", "sqlite", "rel/x.db"),
    ("memory:", "memory", ""),
    ("memory:shared-1", "memory", "shared-1"),
    ("postgres://u:pw@h:5432/db", "postgresql", "postgres://u:pw@h:5432/db"),
])
def test_store_urls_name_their_backend(url: str, backend: str, target: str) -> None:
    parsed = parse_store_url(url)
    assert (parsed.backend, parsed.target) == (backend, target)
    assert "pw" not in parsed.display


@pytest.mark.parametrize(("url", "match"), [
    ("sqlite://host/x.db", "no host"),
    ("sqlite:", "expected sqlite"),
    ("memory:bad name", "memory store name"),
    ("mysql://u@h/db", "unknown store 'mysql'"),
    ("/just/a/path", "unknown store"),
    ("postgresql://u:secret@h:port/db", "port is not a number"),
    ("postgresql://u:secret@h:99999/db", "port is not a number"),
    ("postgresql://u:secret@h/db?nonsense=1", "nonsense"),
    ("postgresql://u:se%zzcret@h/db", "percent-encoded"),  # libpq would quote the password
    ("postgresql://u@h/db?password=sec%zzret", "percent-encoded"),
    ("postgresql://u:secret@[::1/db", "malformed"),
])
def test_malformed_store_urls_are_one_line_errors(url: str, match: str) -> None:
    with pytest.raises(StoreConfigError, match=match) as caught:
        parse_store_url(url)
    assert "secret" not in str(caught.value) and "zz" not in str(caught.value)
    assert "\n" not in str(caught.value)
