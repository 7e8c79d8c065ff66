"""The audit log's background writer in a process of its own.

Why: on a loaded server the records of allowed uses (:meth:`AuditLog.append_later`)
cost more than their own work when they are written inside the serving
process.  The store's worker thread and the event loop's thread fight over the
interpreter lock for every statement, and the database client (psycopg's
parameter adaptation, SQLite's bindings) runs on the serving interpreter.  Here
the serving process only turns each record's fields into a list of plain values
and writes batches of them to a pipe.  A child process (``python -m
mobius_rpc.security.audit_writer``) digests the arguments, builds, chains and
stores the records, and acknowledges each batch once it is committed.

The child is one more writer of the same hash chain, like a replica: the store's
seq check makes it and the serving process's own durable appends (refusals,
admin changes) queue one after the other, never fork the chain.

Failure handling:

* the serving process dies: the child reads what is already in the pipe to
  the end, stores it, and exits (the pipe's end is its signal).  What is lost is
  what had not been shipped yet, at most :attr:`AuditWriterProcess.ship_interval`
  of records (10 ms by default);
* the child dies or cannot start: the records it had not acknowledged and those
  not shipped yet go back to the in-process writer, minus any the child stored
  before it died (matched by session, request id and time), and the log goes on
  writing in-process with a logged error; no record is lost or doubled;
* a clean shutdown ships what is queued, closes the pipe and waits for the
  child to finish (it stores everything before it exits).

The store's URL (which may hold a PostgreSQL password) goes to the child over
the pipe, never on its command line.
"""

from __future__ import annotations

import json
import logging
import struct
import sys
from typing import Any

import anyio
import anyio.abc
import orjson

from .audit import AuditLog
from .audit_chain import safe_digest
from .audit_wire import ARGUMENTS, DIGESTED, body_from_wire, row_identity, to_wire

__all__ = ("AuditWriterProcess", "to_wire", "body_from_wire", "encode_batch",
           "decode_batch", "frame", "WRITER_MODULE")

log = logging.getLogger("mobius_rpc.security")

WRITER_MODULE = "mobius_rpc.security.audit_writer"
_LENGTH = struct.Struct(">I")
#: a frame larger than this is refused by the child (a batch is far smaller)
MAX_FRAME = 64 * 1024 * 1024


def frame(payload: bytes) -> bytes:
    """A length-prefixed frame of the pipe protocol."""
    return _LENGTH.pack(len(payload)) + payload


def encode_batch(number: int, rows: list[list[Any]]) -> bytes:
    """One batch frame of :mod:`.audit_wire` rows; arguments the encoder refuses
    are digested here instead."""
    try:
        return frame(orjson.dumps([number, rows]))
    except TypeError:
        for row in rows:
            try:
                orjson.dumps(row[ARGUMENTS])
            except TypeError:
                row[ARGUMENTS], row[DIGESTED] = None, safe_digest(row[ARGUMENTS])
        try:
            return frame(orjson.dumps([number, rows], default=str))
        except TypeError:  # integers beyond 64 bits elsewhere (the child reads these too)
            return frame(json.dumps([number, rows], default=str).encode())


def decode_batch(payload: bytes | memoryview) -> tuple[int, list[list[Any]]]:
    """The number and rows of a batch frame's payload (the child's reading, and the
    taking back of a batch it did not acknowledge)."""
    try:
        number, rows = orjson.loads(payload)
    except orjson.JSONDecodeError:  # integers beyond 64 bits
        number, rows = json.loads(bytes(payload))
    return int(number), rows


class AuditWriterProcess:
    """Runs :class:`AuditLog`'s background writing in a child process.

    ``async with anyio.create_task_group() as tg: tg.start_soon(writer.run, log)``
    in place of ``log.run()``; ``url`` is the store the log writes to (SQLite
    or PostgreSQL: the child opens it itself; None: the default store, which the
    child resolves from the same environment)."""

    def __init__(self, url: str | None, *, ship_interval: float = 0.01,
                 commit_interval: float = 0.1, max_behind: int = 4096,
                 command: list[str] | None = None, stop_timeout: float = 30.0,
                 schema: str | None = None) -> None:
        self.url = url
        #: the PostgreSQL schema, when not the default one
        self.schema = schema
        #: how long records gather before they are shipped (the loss window if this
        #: process crashes).  Each shipment costs a wake-up and a write on both sides:
        #: at 2,000 records a second, 2 ms cost the child 78 us a record and 10 ms 45
        self.ship_interval = ship_interval
        #: how long the child gathers records for one commit (what a crash of the whole
        #: machine can lose on top; a crash of either process loses nothing shipped):
        #: 100 ms took the child from 45 to 32 us a record at 2,000 a second
        self.commit_interval = commit_interval
        #: the most records queued or unacknowledged before callers write themselves
        self.max_behind = max_behind
        self.command = command or [sys.executable, "-m", WRITER_MODULE]
        self.stop_timeout = stop_timeout
        #: rows (.audit_wire) not shipped yet; never empty while no shipment is due
        #: (see offer)
        self._queue: list[list[Any]] = []
        #: batches shipped and not acknowledged yet, by number, in order: each as its
        #: row count and the frame that went (bytes, which the garbage collector never
        #: scans: the rows themselves are freed once shipped, not an ack later; the
        #: frame is read back only if the child stops before acknowledging it)
        self._unacked: dict[int, tuple[int, bytes]] = {}
        self._unacked_count = 0
        self._number = 0
        self._acked_seq = 0
        self._wake = anyio.Event()
        self._acked = anyio.Event()
        self._alive = False
        self._reader_done = anyio.Event()
        self._stopping = False
        #: why the child is no longer used (None while it is)
        self._gone: str | None = None
        #: the child's process id, once started
        self.pid: int | None = None
        #: what the child reported when it stopped (records, writes, longest wait)
        self.child_stats: dict[str, float] = {}

    # ------------------------------------------------------------ the log's side

    @property
    def accepting(self) -> bool:
        return self._alive and len(self._queue) + self._unacked_count < self.max_behind

    def offer(self, row: list[Any]) -> bool:
        """Queue the row for shipping if :attr:`accepting`; whether it did."""
        if not self.accepting:
            return False
        queued = self._queue
        if not queued:
            # the first since the last shipment wakes the ship loop; the rest ride
            # with it (the loop takes the queue only after its wake-up)
            self._wake.set()
        queued.append(row)
        return True

    async def flush(self) -> None:
        """Return once everything queued so far is stored (or taken back in-process)."""
        if not self._alive:
            return
        target = self._number + (1 if self._queue else 0)
        self._wake.set()
        while self._alive and (self._queue or any(n <= target for n in self._unacked)):
            event = self._acked
            await event.wait()

    # ------------------------------------------------------------ running

    async def run(self, audit: AuditLog) -> None:
        """Ship ``audit``'s background records to the child until cancelled; then
        ship the rest and wait for the child to store it.  Without a working child
        the log writes in-process (:meth:`AuditLog.run`)."""
        try:
            process = await anyio.open_process(self.command, stdin=-1, stdout=-1, stderr=None)
        except OSError as error:
            log.error("the audit writer process did not start (%s); writing in-process",
                      error)
            await audit.run()
            return
        assert process.stdin is not None and process.stdout is not None
        self.pid = process.pid
        self._gone = None
        try:
            try:
                config = {"store": self.url, "interval": self.commit_interval}
                if self.schema is not None:
                    config["schema"] = self.schema
                await process.stdin.send(frame(orjson.dumps(config)))
                acks = _Lines(process.stdout)
                ready = await acks.next()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                ready = None
            if not isinstance(ready, list) or len(ready) != 2:
                self._gone = "it could not open the store"
            else:
                self._acked_seq = int(ready[1])
                self._alive = True
                audit.use_sink(self)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._read_acks, acks, tg.cancel_scope)
                    try:
                        await self._ship_loop(process.stdin)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        self._gone = "the pipe to it broke"
                        tg.cancel_scope.cancel()
                    finally:
                        if self._gone is None:
                            with anyio.CancelScope(shield=True):
                                await self._stop(process, acks, tg)
        finally:
            self._alive = False
            self._acked.set()
            audit.use_sink(None)
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                await process.aclose()
                await self._take_back(audit)
                if self._gone is not None:
                    log.error("the audit writer process stopped (%s); writing in-process",
                              self._gone)
                if audit._pending and self._gone is None:  # a clean end: nothing left over
                    await audit.flush()
        if self._gone is not None:
            await audit.run()

    async def _ship_loop(self, stdin: anyio.abc.ByteSendStream) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await anyio.sleep(self.ship_interval)
            await self._ship(stdin)

    async def _ship(self, stdin: anyio.abc.ByteSendStream) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            payload = encode_batch(self._number + 1, batch)
        except BaseException:  # not shipped: the rows stay queued (taken back at the end)
            self._queue[:0] = batch
            raise
        self._number += 1
        self._unacked[self._number] = (len(batch), payload)
        self._unacked_count += len(batch)
        await stdin.send(payload)

    async def _read_acks(self, acks: _Lines, scope: anyio.CancelScope) -> None:
        try:
            while True:
                message = await acks.next()
                if message is None:
                    if not self._stopping:
                        self._gone = "it exited"
                        scope.cancel()
                    return
                self._handle(message)
        finally:
            self._reader_done.set()

    def _handle(self, message: Any) -> None:
        if isinstance(message, dict):  # the child's account, as it stops
            self.child_stats = {k: float(v) for k, v in message.items()
                                if isinstance(v, int | float)}
            return
        number, seq = int(message[0]), int(message[1])
        for done in [n for n in self._unacked if n <= number]:
            self._unacked_count -= self._unacked.pop(done)[0]
        self._acked_seq = max(self._acked_seq, seq)
        self._acked.set()
        self._acked = anyio.Event()

    async def _stop(self, process: anyio.abc.Process, acks: _Lines,
                    tg: anyio.abc.TaskGroup) -> None:
        """A clean end: the last records shipped, the pipe closed, the child's last
        acknowledgements read and its exit waited for.  Runs once the ship loop was
        cancelled, which cancelled the acknowledgement reader too."""
        assert process.stdin is not None
        self._stopping = True
        try:
            await self._ship(process.stdin)
            await process.stdin.aclose()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        tg.cancel_scope.cancel()
        await self._reader_done.wait()
        with anyio.move_on_after(self.stop_timeout):
            while (message := await acks.next()) is not None:
                self._handle(message)
            await process.wait()

    async def _take_back(self, audit: AuditLog) -> None:
        """Records the child did not acknowledge (or never got) go back to ``audit``,
        without those it stored before it stopped."""
        left = [row for _, payload in self._unacked.values()
                for row in decode_batch(memoryview(payload)[_LENGTH.size:])[1]
                ] + self._queue
        self._unacked.clear()
        self._unacked_count = 0
        self._queue = []
        if not left:
            return
        try:
            stored = await audit.identities_after(self._acked_seq)
        except Exception as error:  # the store is down: keep them all (a record
            # written twice can be told apart by its request; one lost cannot be found)
            log.error("audit: cannot check what the writer process stored (%s)",
                      type(error).__name__)
            stored = set()
        audit.requeue([row for row in left if row_identity(row) not in stored])


class _Lines:
    """JSON lines from the child's stdout."""

    def __init__(self, stream: anyio.abc.ByteReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> Any:
        while b"\n" not in self._buffer:
            try:
                chunk = await self._stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
