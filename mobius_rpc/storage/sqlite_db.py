"""SQLite: connections, the worker threads, busy retries, checkpoints, migrations.

Threading (why not one dedicated writer thread with a queue): SQLite admits
one writer per file whatever we do, so one writer connection per process,
entered by one worker thread at a time (``anyio.to_thread`` with a capacity
limiter of 1), removes contention inside the process without a queue and a
second thread's life cycle to manage; reads go to a small pool of separate
``query_only`` connections (WAL lets them run beside the writer), so a read
never waits behind a write that waits for another process.  Each program runs
whole in one thread hop.

Several processes on one file is the normal case.  Writes start with ``BEGIN
IMMEDIATE``, so the write lock is taken up front and SQLite's busy handler
(``busy_timeout``) applies; a read transaction upgrading to a write, which
fails at once without calling that handler, never happens.  When another
process holds the lock beyond ``busy_timeout`` the whole transaction is retried
with jittered exponential backoff until ``retry_deadline``; only then does the
caller see :class:`~.errors.StoreBusy` (a one-line error, never "database is
locked").

The WAL is kept bounded: ``wal_autocheckpoint`` checkpoints passively, and
every ``checkpoint_every`` commits the writer checks the ``-wal`` file and runs
a ``TRUNCATE`` checkpoint when it outgrew ``wal_limit`` (passive checkpoints
cannot shrink it while other processes keep reading).
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from .errors import (
    NotOurDatabase,
    SchemaOutdated,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
)
from .migrate import LATEST, apply_program, check_not_newer
from .records import SchemaStatus
from .sql.program import Program, Result, run_sync

__all__ = ("SqliteDatabase", "SqliteOptions", "APPLICATION_ID")

log = logging.getLogger("mobius_rpc.storage")
T = TypeVar("T")

#: ``PRAGMA application_id`` of our files ("Mob1"): how we recognise a file as ours
APPLICATION_ID = 0x4D6F6231
_HEADER = b"SQLite format 3\x00"
#: (device, inode) of every database file this process has open, with how many times.
#: Closing *any* descriptor of a file drops every POSIX lock this process holds on it
#: (SQLite's locks included, which SQLite only guards for descriptors it opened
#: itself), so the header check must never open and close a file already open here:
#: another process would then take this one's connections for gone, delete the WAL
#: under them on its own close, and their later commits would overwrite its own.
_open_here: dict[tuple[int, int], int] = {}
_open_lock = threading.Lock()
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_DAMAGED = ("malformed", "not a database", "encrypted", "corrupt")


@dataclass(frozen=True, slots=True)
class SqliteOptions:
    busy_timeout_ms: int = 5000
    retry_deadline: float = 60.0
    readers: int = 2
    checkpoint_every: int = 256
    wal_limit: int = 16 * 1024 * 1024
    poll_interval: float = 0.2
    #: run write programs on the event loop's own thread instead of a worker thread:
    #: for a process whose loop does nothing but write (the audit writer process),
    #: where the hop and the two threads trading the interpreter lock on every
    #: statement cost more than the write; a busy lock then blocks the loop too
    inline_writes: bool = False


def _is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BUSY
    return "locked" in str(error) or "busy" in str(error)


def _execute_on(conn: sqlite3.Connection) -> Callable[[str, tuple[Any, ...]], Result]:
    def execute(sql: str, params: tuple[Any, ...]) -> Result:
        cursor = conn.execute(sql, params)
        rows = cursor.fetchall() if cursor.description is not None else []
        return Result(rows, cursor.rowcount)
    return execute


class _Running:
    """The connection one interruptible read runs on, while it runs (see
    :meth:`SqliteDatabase.read_interruptible`); the lock keeps an interrupt from
    reaching a connection after the read gave it back to the pool."""

    __slots__ = ("lock", "conn", "stopped", "started", "done")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: sqlite3.Connection | None = None
        self.stopped = False
        self.started = False
        #: set by the worker thread once it gave the connection back
        self.done = threading.Event()

    def interrupt(self) -> bool:
        """Stop the read; whether its thread had started (and so must be waited for)."""
        with self.lock:
            self.stopped = True
            if self.conn is not None:
                self.conn.interrupt()
            return self.started


def _file_key(path: Path) -> tuple[int, int]:
    found = os.stat(path)
    return found.st_dev, found.st_ino


class SqliteDatabase:
    """One database file; implements ``sql.program.Runner``."""

    dialect = "sqlite"

    def __init__(self, path: Path, options: SqliteOptions | None = None) -> None:
        self.path = path
        self.location = str(path)
        self.options = options or SqliteOptions()
        #: how many times a transaction was retried because another writer held the file
        self.busy_retries = 0
        self._writer: sqlite3.Connection | None = None
        self._readers: list[sqlite3.Connection] = []
        self._write_limiter = anyio.CapacityLimiter(1)
        #: held while the writer connection runs a transaction and while it is closed.
        #: The write limiter alone does not keep them apart: a write whose awaiting task
        #: is cancelled by asyncio itself (``Task.cancel``, as a session does to a request
        #: stuck past its cancellation, or ``asyncio.run`` to the tasks left at its end),
        #: which anyio's shield does not stop, hands the limiter back while its thread
        #: still runs the transaction.  Closing the connection under that thread crashed
        #: the process (SIGSEGV in ``sqlite3_last_insert_rowid``).
        self._writer_lock = threading.Lock()
        self._read_limiter = anyio.CapacityLimiter(self.options.readers)
        self._commits = 0
        #: this file's entry in ``_open_here`` while open
        self._key: tuple[int, int] | None = None

    # -- errors and retries ------------------------------------------------------------

    def translate(self, error: sqlite3.Error) -> StoreError:
        text = str(error)
        if any(word in text for word in _DAMAGED):
            return StoreCorrupt(f"the SQLite file {self.location} is damaged ({text}); "
                                "it was left untouched")
        if _is_busy(error):
            return StoreBusy(f"the SQLite file {self.location} stayed locked by other "
                             f"processes for over {self.options.retry_deadline:g} s")
        return StoreUnavailable(f"SQLite file {self.location}: {text}")

    async def _retrying(self, call: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + self.options.retry_deadline
        delay = 0.002
        while True:
            try:
                return await call()
            except sqlite3.Error as error:
                if not _is_busy(error) or time.monotonic() > deadline:
                    raise self.translate(error) from None
            except OSError as error:
                raise StoreUnavailable(f"SQLite file {self.location}: {error}") from None
            self.busy_retries += 1
            await anyio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.25)

    # -- connections ---------------------------------------------------------------------

    def _connect(self, *, reader: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.options.busy_timeout_ms / 1000,
                               isolation_level=None, check_same_thread=False,
                               cached_statements=256)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.options.busy_timeout_ms)}")
            conn.execute("PRAGMA foreign_keys = ON")
            if reader:
                conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_file(self) -> bool:
        """False when there is no database yet; NotOurDatabase when the file is not SQLite."""
        try:
            with _open_lock:
                if _file_key(self.path) in _open_here:  # checked when first opened here
                    return True
        except FileNotFoundError:
            return False
        try:
            with open(self.path, "rb") as file:
                header = file.read(len(_HEADER))
        except FileNotFoundError:
            return False
        if header and header != _HEADER:
            raise NotOurDatabase(f"{self.location} is not a SQLite database; "
                                 "it was left untouched")
        return bool(header)

    def _version(self, conn: sqlite3.Connection) -> int:
        """The schema version of a file that is ours or empty; refuses anything else."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = sorted(row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"))
        if app_id == APPLICATION_ID:
            if "mobius_schema" not in tables:
                raise StoreCorrupt(f"{self.location} is marked as ours but has no schema "
                                   "ledger; it was left untouched")
            version: int = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM mobius_schema").fetchone()[0]
            return version
        if app_id == 0 and not tables:
            return 0
        shown = ", ".join(tables[:4]) + (", ..." if len(tables) > 4 else "")
        raise NotOurDatabase(f"{self.location} is a SQLite database of another application "
                             f"(application_id {app_id:#x}, tables: {shown or 'none'}); "
                             "it was left untouched")

    def _create_file(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            pass  # another process created it first

    def _open_sync(self, migrate: bool, target: int | None) -> None:
        self._close_sync()
        if not self._check_file():
            self._create_file()
        conn = self._connect()
        try:
            version = self._version(conn)
            check_not_newer(version, self.location)
            goal = LATEST if target is None else target
            if version < goal and not migrate:
                raise SchemaOutdated(f"{self.location} has schema version {version}, this code "
                                     f"needs {goal}: run `mobius db upgrade`")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal" and \
                    conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                log.warning("%s: WAL is not available here; using a rollback journal",
                            self.location)
            limit = self.options.wal_limit
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA journal_size_limit = {int(limit)}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {max(16, limit // page // 2)}")
            conn.execute("PRAGMA synchronous = NORMAL")
            if version < goal:
                self._migrate_sync(conn, goal)
        except BaseException:
            conn.close()
            raise
        with self._writer_lock:
            self._writer = conn
        self._key = _file_key(self.path)
        with _open_lock:
            _open_here[self._key] = _open_here.get(self._key, 0) + 1

    def _migrate_sync(self, conn: sqlite3.Connection, goal: int) -> None:
        conn.execute("BEGIN IMMEDIATE")  # the migration lock: one process at a time
        try:
            version = self._version(conn)  # re-read under the lock: another may have won
            check_not_newer(version, self.location)
            if version < goal:
                if version == 0:
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                run_sync(apply_program(self.dialect, version, time.time(), goal),
                         _execute_on(conn))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def open(self, *, migrate: bool = True, target: int | None = None) -> None:
        """Check the file is ours (or new), set it up and migrate it; refuses otherwise."""
        await self._retrying(lambda: anyio.to_thread.run_sync(self._open_sync, migrate, target))

    def _inspect_sync(self) -> SchemaStatus:
        if not self._check_file():
            return SchemaStatus("sqlite", self.location, 0, LATEST, exists=False,
                                pending=tuple(f"{m:04d}" for m in range(1, LATEST + 1)))
        conn = self._connect(reader=True)
        try:
            version = self._version(conn)
            check_not_newer(version, self.location)
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreCorrupt(f"the SQLite file {self.location} is damaged ({check}); "
                                   "it was left untouched")
        finally:
            conn.close()
        return SchemaStatus("sqlite", self.location, version, LATEST,
                            pending=tuple(f"{m:04d}" for m in range(version + 1, LATEST + 1)))

    async def inspect(self) -> SchemaStatus:
        """The schema status without writing anything (``PRAGMA quick_check`` included)."""
        result: SchemaStatus = await self._retrying(
            lambda: anyio.to_thread.run_sync(self._inspect_sync))
        return result

    # -- running programs ----------------------------------------------------------------

    def _write_sync(self, make: Callable[[], Program[T]]) -> T:
        with self._writer_lock:
            conn = self._writer
            if conn is None:
                raise StoreUnavailable(f"the SQLite store {self.location} is closed")
            conn.execute("BEGIN IMMEDIATE")
            try:
                value = run_sync(make(), _execute_on(conn))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._commits += 1
            if self._commits % self.options.checkpoint_every == 0:
                self._checkpoint(conn)
            return value

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            size = os.stat(f"{self.path}-wal").st_size
        except OSError:
            return
        if size <= self.options.wal_limit:
            return
        conn.execute("PRAGMA busy_timeout = 50")
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.OperationalError:
            pass  # readers in other processes: the next check tries again
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.options.busy_timeout_ms)}")

    def read_now(self, make: Callable[[], Program[T]]) -> T:
        """Run a small read program on the calling thread, without the hop to a worker
        thread :meth:`read` takes.  Only for reads of a few indexed rows: in WAL mode
        a reader never waits for a writer, so this does not block the event loop on
        the write lock (SQLITE_BUSY here is raised, not retried)."""
        try:
            return self._read_sync(make)
        except sqlite3.Error as error:
            raise self.translate(error) from None

    def _read_sync(self, make: Callable[[], Program[T]]) -> T:
        if self._writer is None:
            raise StoreUnavailable(f"the SQLite store {self.location} is closed")
        conn = self._readers.pop() if self._readers else self._connect(reader=True)
        try:
            return run_sync(make(), _execute_on(conn))
        finally:
            if self._writer is None:
                conn.close()  # the store closed meanwhile
            else:
                self._readers.append(conn)

    def _read_tracked(self, make: Callable[[], Program[T]], running: _Running) -> T:
        """:meth:`_read_sync`, with the connection known to ``running`` while it runs."""
        try:
            with running.lock:
                if running.stopped:  # cancelled before this thread got to it
                    raise sqlite3.OperationalError("interrupted")
                running.started = True
            if self._writer is None:
                raise StoreUnavailable(f"the SQLite store {self.location} is closed")
            conn = self._readers.pop() if self._readers else self._connect(reader=True)
            plain = _execute_on(conn)

            def execute(sql: str, params: tuple[Any, ...]) -> Result:
                if running.stopped:  # stopped between two statements of the program
                    raise sqlite3.OperationalError("interrupted")
                return plain(sql, params)
            try:
                with running.lock:
                    running.conn = conn
                try:
                    return run_sync(make(), execute)
                finally:
                    with running.lock:
                        running.conn = None
            finally:
                if self._writer is None:
                    conn.close()
                else:
                    self._readers.append(conn)
        finally:
            running.done.set()

    async def read_interruptible(self, make: Callable[[], Program[T]]) -> T:
        """:meth:`read`, but a cancellation (a time limit, a cancelled request) stops the
        query itself: ``Connection.interrupt()`` on the connection running it, then the
        worker thread is waited for, so it is free (and the connection back in the pool,
        usable) when the cancellation reaches the caller.  Plain :meth:`read` cannot be
        cancelled mid-query: its thread runs the query to the end.  Costs nothing more
        than :meth:`read` until a cancellation comes (no extra task per read)."""
        async def once() -> T:
            running = _Running()
            # our own slot, held until the thread has really finished (an abandoned
            # run_sync would hand its slot back while the query still runs)
            async with self._read_limiter:
                try:
                    value: T = await anyio.to_thread.run_sync(
                        self._read_tracked, make, running, abandon_on_cancel=True)
                except anyio.get_cancelled_exc_class():
                    if running.interrupt():  # the thread runs: wait until it has stopped
                        with anyio.CancelScope(shield=True):
                            while not running.done.is_set():
                                await anyio.sleep(0.001)
                    raise
            return value
        result: T = await self._retrying(once)
        return result

    async def write(self, make: Callable[[], Program[T]]) -> T:
        if self.options.inline_writes:
            async def here() -> T:
                return self._write_sync(make)
            inline: T = await self._retrying(here)
            return inline
        value: T = await self._retrying(lambda: anyio.to_thread.run_sync(
            self._write_sync, make, limiter=self._write_limiter))
        return value

    async def read(self, make: Callable[[], Program[T]]) -> T:
        value: T = await self._retrying(lambda: anyio.to_thread.run_sync(
            self._read_sync, make, limiter=self._read_limiter))
        return value

    def _close_sync(self) -> None:
        readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        with self._writer_lock:  # after any transaction still running on it
            writer, self._writer = self._writer, None
            if writer is not None:
                try:
                    writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass
                writer.close()
        key, self._key = self._key, None
        if key is not None:
            with _open_lock:
                left = _open_here.pop(key, 1) - 1
                if left:
                    _open_here[key] = left

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close_sync, limiter=self._write_limiter)
