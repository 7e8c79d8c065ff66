"""The security epoch of a SQLite store, read from the database only after a commit.

Every authenticated request asks for the epoch (see :mod:`.epoch`), so on SQLite,
where no notices arrive, the row was read for each one: 4.8 us here for the
``SELECT`` on a connection of our own.  In WAL mode SQLite keeps the WAL index in
the ``-shm`` file every connection maps, and its header (two copies of 48 bytes
at its start) changes with every write transaction that commits, in any process
(its change counter, frame count and salts).  So :class:`SqliteEpoch` reads those
96 bytes (one ``pread``, 0.5 us) and reads the row again only when they differ
from what they were just before its last read of the row: equal bytes mean no
transaction committed since, so the epoch read then still stands.

Conservative by construction: a header caught mid-update differs, and so does
one after a checkpoint restarted the WAL; either way the row is read.  The header
is read *before* the row, so a commit landing between the two is seen next time.
Without a ``-shm`` file (not WAL mode) every call reads the row.  As a safety net
for what the header cannot tell (the ``-shm`` file replaced under an open
descriptor), the row is also read when the last read is older than
:data:`SAFETY_READ` seconds, and the file is reopened when its inode changed.
"""

from __future__ import annotations

import os
import sqlite3
import time
import weakref

__all__ = ("SqliteEpoch", "SAFETY_READ")

#: seconds after which the epoch row is read even when the WAL header stood still
SAFETY_READ = 1.0
_HEADER = 96


class SqliteEpoch:
    """The epoch row of one SQLite database file, read as rarely as is exact."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA query_only = ON")
        weakref.finalize(self, self.conn.close)
        #: the open descriptor of the -shm file, in a list the finalizer also holds
        self._fd: list[int] = []
        weakref.finalize(self, _close_all, self._fd)
        self._shm_inode = -1
        self._header = b""
        self._epoch = 0
        self._read_at = float("-inf")
        #: reads of the row so far (for tests and the benchmark's account)
        self.row_reads = 0

    def current(self) -> int:
        header = self._wal_header()
        if header and header == self._header \
                and time.monotonic() - self._read_at < SAFETY_READ:
            return self._epoch
        at = time.monotonic()
        row = self.conn.execute("SELECT epoch FROM security_state WHERE id = 1").fetchone()
        self.row_reads += 1
        self._epoch = int(row[0]) if row else 0
        self._header, self._read_at = header, at
        self._check_file()
        return self._epoch

    def _wal_header(self) -> bytes:
        """The WAL index header as it is now; empty: none to trust (read the row)."""
        if not self._fd:
            self._open_shm()
            if not self._fd:
                return b""
        try:
            header = os.pread(self._fd[0], _HEADER, 0)
        except OSError:
            self._close_shm()
            return b""
        return header if len(header) == _HEADER else b""

    def _open_shm(self) -> None:
        try:
            fd = os.open(self.path + "-shm", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        self._fd.append(fd)
        self._shm_inode = os.fstat(fd).st_ino

    def _check_file(self) -> None:
        """After a row read: reopen the ``-shm`` file if the one at the path is another."""
        if not self._fd:
            return
        try:
            same = os.stat(self.path + "-shm").st_ino == self._shm_inode
        except OSError:
            same = False
        if not same:
            self._close_shm()
            self._header = b""

    def _close_shm(self) -> None:
        _close_all(self._fd)

    def close(self) -> None:
        self._close_shm()
        self.conn.close()


def _close_all(fds: list[int]) -> None:
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass
