"""Closing a SQLite store never closes the writer connection under a running write.

A write runs its transaction on a worker thread while its task awaits it, holding
the write limiter.  When asyncio itself cancels that task (``Task.cancel``: a
session does it to a request stuck past its cancellation, ``asyncio.run`` to the
tasks left at its end), anyio's shield does not stop it: the task leaves, the
limiter is free, and the thread is still in the transaction.  A close then used
to close the connection under it, and a stdio server ended with SIGSEGV
(``sqlite3_last_insert_rowid`` on the closed handle).  Now the close waits for
the transaction, which commits.

The scenario runs in a child process, so that a crash fails this test instead
of ending the suite.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCENARIO = textwrap.dedent("""
    import asyncio, sys, time
    from pathlib import Path
    import anyio
    from mobius_rpc.storage.sqlite_db import SqliteDatabase

    def slow_insert():
        yield "CREATE TABLE IF NOT EXISTS probe (n INTEGER)", ()
        yield "INSERT INTO probe (n) VALUES (1)", ()
        time.sleep(0.4)  # in the worker thread, inside the transaction
        yield "INSERT INTO probe (n) VALUES (2)", ()

    def count():
        rows = yield "SELECT COUNT(*) FROM probe", ()
        return rows.rows[0][0]

    async def main():
        db = SqliteDatabase(Path(sys.argv[1]))
        await db.open()
        task = asyncio.ensure_future(db.write(slow_insert))
        await asyncio.sleep(0.1)
        task.cancel()  # asyncio's own cancellation, past anyio's shield
        try:
            await task
        except asyncio.CancelledError:
            pass
        started = time.monotonic()
        await db.close()
        waited = time.monotonic() - started
        again = SqliteDatabase(Path(sys.argv[1]))
        await again.open()
        print(await again.read(count), f"{waited:.2f}")
        await again.close()

    anyio.run(main)
""")


def test_a_close_waits_for_the_write_whose_task_asyncio_cancelled(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SCENARIO, str(tmp_path / "store.db")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows, waited = done.stdout.split()
    assert rows == "2"  # the transaction ran to its end and committed
    assert float(waited) >= 0.2  # the close waited for it
