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
