"""A context operation's time limit stops an SQLite query in its worker thread, not
only the wait for it: the limit error comes while the query is still far from done,
the worker is free at once, and the connection answers the next query."""

from __future__ import annotations

import types
from pathlib import Path

import anyio
import pytest

from mobius_rpc.context.engine import ContextEngine, EngineLimits
from mobius_rpc.context.model import FileIndex, FileState, Symbol
from mobius_rpc.context.sql_index import SqlIndex
from mobius_rpc.context.status import bounded
from mobius_rpc.server.tools import ToolError
from mobius_rpc.storage.sqlite_db import SqliteDatabase, SqliteOptions

FILES, PER_FILE = 150, 1000


def _files() -> list[FileIndex]:
    out = []
    for f in range(FILES):
        symbols = [Symbol(f"handler_{f}_{k}", f"Module{f}.handler_{f}_{k}", "function", k + 1,
                          k + 1) for k in range(PER_FILE)]
        out.append(FileIndex(FileState(f"pkg/mod{f}.py", 1, 10, f"{f:064x}"), "python",
                             PER_FILE, "", symbols, [], [], [], []))
    return out


def test_a_timed_out_query_stops_in_its_worker_thread(tmp_path: Path) -> None:
    async def run() -> None:
        db = SqliteDatabase(tmp_path / "index.db", SqliteOptions(readers=1))
        await db.open()
        try:
            index = SqlIndex(db)
            files = _files()
            for start in range(0, len(files), 50):
                await index.write("big", files[start:start + 50], [], [])
            assert await index.file("big", "pkg/mod0.py") is not None  # the one reader exists
            # the probe: SQLite's virtual machine steps on the pool's one reader connection
            conn = db._readers[0]
            steps = [0]

            def count() -> int:
                steps[0] += 1
                return 0  # go on
            conn.set_progress_handler(count, 1000)
            # the whole scan: no name contains this, so every row is looked at
            assert await index.names_containing("big", "nothing-has-this", 10) == []
            whole, steps[0] = steps[0], 0
            assert whole > 1000, whole
            engine = ContextEngine([tmp_path], store=types.SimpleNamespace(),
                                   limits=EngineLimits(operation_seconds=0.002))
            with pytest.raises(ToolError, match="stopped after its limit"):
                await bounded(engine, "search", lambda: index.names_containing(
                    "big", "nothing-has-this", 10))
            cut = steps[0]
            # the worker thread gave its slot back and the connection is back in the pool
            assert db._read_limiter.borrowed_tokens == 0
            assert db._readers == [conn]
            assert cut < whole / 2, (cut, whole)  # the query stopped, not only the wait
            await anyio.sleep(0.2)
            assert steps[0] == cut  # and nothing runs on in the background
            # the same connection answers the next query, whole
            found = await index.names_containing("big", "handler_7_99", 5)
            assert [r.name for r in found][:1] == ["handler_7_99"]
            assert db._readers == [conn]
        finally:
            await db.close()

    anyio.run(run)
