"""The SQLite epoch read from the WAL index header: always the committed value, read
from the row only after a commit.

A writer connection (as another process's would be: the header lives in the
shared ``-shm`` file) commits epoch bumps, unrelated writes and checkpoints that
restart the WAL, in random orders; after each step :class:`SqliteEpoch` must
return exactly what a fresh ``SELECT`` returns.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobius_rpc.security.sqlite_epoch import SqliteEpoch

_STEPS = st.lists(st.sampled_from(["bump", "other", "checkpoint", "read", "read"]),
                  min_size=1, max_size=40)


def _database(path: Path) -> sqlite3.Connection:
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("CREATE TABLE security_state (id INTEGER PRIMARY KEY, epoch INTEGER)")
    writer.execute("CREATE TABLE other (x INTEGER)")
    writer.execute("INSERT INTO security_state VALUES (1, 0)")
    return writer


@settings(max_examples=60, deadline=None)
@given(steps=_STEPS)
def test_the_epoch_is_always_the_committed_one(steps: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "s.db")
        writer = _database(path)
        epoch = SqliteEpoch(str(path))
        try:
            for step in steps:
                if step == "bump":
                    writer.execute("UPDATE security_state SET epoch = epoch + 1 WHERE id = 1")
                elif step == "other":
                    writer.execute("INSERT INTO other VALUES (1)")
                elif step == "checkpoint":
                    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                truth = writer.execute("SELECT epoch FROM security_state").fetchone()[0]
                assert epoch.current() == truth, steps
        finally:
            epoch.close()
            writer.close()


def test_the_row_is_read_only_after_a_commit(tmp_path: Path) -> None:
    writer = _database(tmp_path / "s.db")
    epoch = SqliteEpoch(str(tmp_path / "s.db"))
    for _ in range(100):
        assert epoch.current() == 0
    assert epoch.row_reads == 1  # the header stood still: one read of the row
    writer.execute("UPDATE security_state SET epoch = 7 WHERE id = 1")
    assert [epoch.current() for _ in range(10)] == [7] * 10
    assert epoch.row_reads == 2
    writer.execute("BEGIN")
    writer.execute("UPDATE security_state SET epoch = 8 WHERE id = 1")
    assert epoch.current() == 7  # not committed yet
    writer.execute("COMMIT")
    assert epoch.current() == 8
    epoch.close()
    writer.close()


def test_without_wal_every_call_reads_the_row(tmp_path: Path) -> None:
    writer = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    writer.execute("CREATE TABLE security_state (id INTEGER PRIMARY KEY, epoch INTEGER)")
    writer.execute("INSERT INTO security_state VALUES (1, 3)")
    epoch = SqliteEpoch(str(tmp_path / "s.db"))
    assert [epoch.current() for _ in range(5)] == [3] * 5
    assert epoch.row_reads == 5
    writer.execute("UPDATE security_state SET epoch = 4 WHERE id = 1")
    assert epoch.current() == 4
    epoch.close()
    writer.close()


def _locks_on(path: Path) -> list[str]:
    """This process's POSIX locks on ``path`` (Linux /proc/locks)."""
    import os
    inode = os.stat(path).st_ino
    return [line for line in Path("/proc/locks").read_text().splitlines()
            if f":{inode} " in line and f" {os.getpid()} " in line]


def test_closing_or_dropping_a_reader_keeps_sqlites_locks_on_the_shm_file(
        tmp_path: Path) -> None:
    """Closing any descriptor of a file drops every POSIX lock this process holds on
    it; SQLite's lock on the -shm file (held while a connection is open) must
    survive readers that close or are collected."""
    import gc
    import os
    path = tmp_path / "s.db"
    writer = _database(path)
    writer.execute("SELECT epoch FROM security_state").fetchall()
    shm = Path(str(path) + "-shm")
    held = _locks_on(shm)
    assert held  # SQLite's own, for the writer connection

    def readers(count: int) -> int:
        for _ in range(count):
            reader = SqliteEpoch(str(path))
            assert reader.current() == 0
            reader.close()
            dropped = SqliteEpoch(str(path))
            assert dropped.current() == 0
            del dropped
            gc.collect()
        return len(os.listdir("/proc/self/fd"))
    settled = readers(2)
    assert readers(10) == settled  # one kept descriptor per -shm file, not one per reader
    assert _locks_on(shm) == held
    writer.close()


def test_after_the_first_row_read_the_header_comes_from_the_mapping(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No system call per request: once this reader's connection has read the row,
    the header is read from the kept mapping of the -shm file, and still tells
    every commit (another connection's here, as another process's would)."""
    import os
    writer = _database(tmp_path / "s.db")
    epoch = SqliteEpoch(str(tmp_path / "s.db"))
    assert epoch.current() == 0
    preads = [0]
    real = os.pread

    def counted(fd: int, n: int, offset: int) -> bytes:
        preads[0] += 1
        return real(fd, n, offset)
    monkeypatch.setattr(os, "pread", counted)
    for value in range(1, 30):
        writer.execute("UPDATE security_state SET epoch = ? WHERE id = 1", (value,))
        assert [epoch.current() for _ in range(3)] == [value] * 3
    assert preads[0] == 0
    assert epoch.row_reads == 30  # one per commit, none more
    epoch.close()
    writer.close()
