"""The audit writer process: ``python -m mobius_rpc.security.audit_writer``.

Started by :class:`~.audit_process.AuditWriterProcess`, never by hand.  On
stdin it reads length-prefixed JSON frames: first ``{"store": URL, "interval":
seconds}`` (and ``"schema"``, a PostgreSQL schema other than the default),
then batches ``[number, [record, ...]]`` of
:mod:`.audit_wire` rows.  It opens the store, says
``[0, head_seq]`` on stdout when it is ready, gathers records for ``interval``
seconds, appends them to the hash chain in one store write, and then says
``[number, head_seq]``: every batch up to ``number`` is stored.  At the end of
stdin it stores what it holds, prints its account (``{"records": ...}``) and
exits 0.

It ignores SIGINT: a Ctrl-C in the terminal reaches the whole process group,
and the serving process, which stops on it, closes the pipe when it has
shipped its last records; the end of the pipe is what stops this process.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

import anyio
import orjson

from ..storage.sqlite_db import SqliteOptions
from .audit import AuditLog
from .audit_process import MAX_FRAME, decode_batch
from .audit_wire import body_from_wire
from .open import open_security_store

__all__ = ("main",)

log = logging.getLogger("mobius_rpc.security")


def _say(message: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
    sys.stdout.buffer.flush()


async def _frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next frame's payload; None at the end of the pipe."""
    try:
        head = await reader.readexactly(4)
        size = int.from_bytes(head, "big")
        if size > MAX_FRAME:
            raise ValueError(f"a frame of {size} bytes is beyond the limit")
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as error:
        if error.partial:
            log.error("audit writer: the pipe ended inside a frame")
        return None


async def _open_stdin() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_FRAME)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                 sys.stdin.buffer)
    return reader


async def serve() -> int:
    reader = await _open_stdin()
    first = await _frame(reader)
    if first is None:
        return 0
    config = orjson.loads(first)
    interval = float(config.get("interval", 0.025))
    try:
        url = config.get("store")
        options: dict[str, Any] = {"schema": str(config["schema"])} \
            if config.get("schema") else {}
        # this loop only writes: SQLite's writes run on it, not on a worker thread
        options["sqlite"] = SqliteOptions(inline_writes=True)
        opened = open_security_store(None if url is None else str(url), **options)
        store_cm = await opened.__aenter__()
    except Exception as error:
        print(f"audit writer: cannot open the store: {type(error).__name__}: {error}",
              file=sys.stderr)
        return 1
    try:
        _, store = store_cm
        audit = AuditLog(store)
        head = await audit.head()
        _say([0, head[0]])
        state = {"received": 0, "eof": False}
        wake = anyio.Event()

        async def read() -> None:
            nonlocal wake
            while True:
                data = await _frame(reader)
                if data is None:
                    state["eof"] = True
                    wake.set()
                    return
                number, rows = decode_batch(data)
                audit.append_bodies_later([body_from_wire(row) for row in rows])
                state["received"] = number
                wake.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            while True:
                await wake.wait()
                wake = anyio.Event()
                if not state["eof"]:
                    await anyio.sleep(interval)  # group commit
                upto = state["received"]
                if not await audit.flush_or_back_off():
                    wake.set()
                    continue
                appended = audit.last_appended
                _say([upto, appended[0] if appended else head[0]])
                if state["eof"] and not audit.has_pending:
                    break
        _say(audit.stats)
        return 0
    finally:
        await opened.__aexit__(None, None, None)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        code = anyio.run(serve)
    except Exception as error:  # one line, never a traceback
        print(f"audit writer: {type(error).__name__}: {error}", file=sys.stderr)
        code = 1
    raise SystemExit(code)


if __name__ == "__main__":
    main()
