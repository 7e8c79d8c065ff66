"""The security epoch of a SQLite store, read from the database only after a commit.

Every authenticated request asks for the epoch (see :mod:`.epoch`), so on SQLite,
where no notices arrive, the row was read for each one: 4.8 us here for the
``SELECT`` on a connection of our own.  In WAL mode SQLite keeps the WAL index in
the ``-shm`` file every connection maps, and its header (two copies of 48 bytes
at its start) changes with every write transaction that commits, in any process
(its change counter, frame count and salts).  So :class:`SqliteEpoch` reads those
96 bytes and reads the row again only when they differ from what they were just
before its last read of the row: equal bytes mean no transaction committed
since, so the epoch read then still stands.  The bytes come from a read-only
``mmap`` of the file's first page (a slice: 0.06 us, no system call, the GIL
kept), or with one ``pread`` (0.55 us, a system call that lets the GIL go)
until the mapping is made.

Conservative by construction: a header caught mid-update differs, and so does
one after a checkpoint restarted the WAL; either way the row is read.  The header
is read *before* the row, so a commit landing between the two is seen next time.
Without a ``-shm`` file (not WAL mode) every call reads the row.  As a safety net
for what the header cannot tell (the ``-shm`` file replaced under an open
descriptor), the row is also read when the last read is older than
:data:`SAFETY_READ` seconds, and the file is reopened when its inode changed.

The ``-shm`` descriptors are never closed while the process lives (one per file,
shared by every :class:`SqliteEpoch`): closing any descriptor of a file drops
every POSIX lock the process holds on it, SQLite's own included.  Losing the lock
SQLite keeps on the ``-shm`` file for each open connection would let a process
that opens the database next believe it is the only one and reset the WAL index
under this process's connections.  The mappings follow the same rule: Python's
``mmap`` holds a duplicate of the descriptor and closes it when the mapping is
closed or collected, so each one is kept for the process's life too (one per
file, in :data:`_SHM_MAPS`).

A mapping is made only once this reader's own connection is in WAL mode and
the ``-shm`` file at the path is the one its descriptor reads (a row read alone
is not enough: a database switching to WAL during a first start is read without
the WAL index).  That connection then holds SQLite's shared lock on the file,
and SQLite shrinks a ``-shm`` file (to rebuild the WAL index) only under the
exclusive lock nobody gets while another connection holds the shared one; so
the mapped page stays inside the file (reading a mapped page past the end of a
file is a SIGBUS, not an error).
A file removed by hand stays mapped, readable, and stops being used when the
inode check sees the replacement.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import threading
import time
import weakref

__all__ = ("SqliteEpoch", "SAFETY_READ")

#: seconds after which the epoch row is read even when the WAL header stood still
SAFETY_READ = 1.0
_HEADER = 96
#: the process's read-only descriptor of each ``-shm`` file, by (device, inode):
#: opened once and kept (see the module docstring for why never closed)
_SHM_FDS: dict[tuple[int, int], int] = {}
_SHM_LOCK = threading.Lock()
#: descriptors opened for a file already kept (a replacement racing the stat)
_SPARE_FDS: list[int] = []
#: the process's read-only mapping of each ``-shm`` file's first page, by (device,
#: inode): made once and kept (an mmap closes its own duplicate descriptor)
_SHM_MAPS: dict[tuple[int, int], mmap.mmap] = {}


def _shm_descriptor(path: str) -> tuple[int, int] | None:
    """(descriptor, inode) of the ``-shm`` file at ``path``, opened at most once per
    file in this process; None when there is none."""
    try:
        known = os.stat(path)
    except OSError:
        return None
    with _SHM_LOCK:
        kept = _SHM_FDS.get((known.st_dev, known.st_ino))
        if kept is not None:
            return kept, known.st_ino
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        info = os.fstat(fd)  # the file may have been replaced since the stat
        key = (info.st_dev, info.st_ino)
        kept = _SHM_FDS.get(key)
        if kept is None:
            _SHM_FDS[key] = fd
            return fd, info.st_ino
        # A second descriptor of a kept file: closing it would drop the locks just
        # the same, so it is kept too (this takes a replacement racing the stat).
        _SPARE_FDS.append(fd)
        return kept, info.st_ino


def _shm_map(fd: int) -> mmap.mmap | None:
    """The kept read-only mapping of the header of the file open as ``fd``, made on
    first use; None when the file is too short to hold a header yet."""
    info = os.fstat(fd)
    key = (info.st_dev, info.st_ino)
    with _SHM_LOCK:
        kept = _SHM_MAPS.get(key)
        if kept is None:
            if info.st_size < _HEADER:
                return None
            try:
                kept = _SHM_MAPS[key] = mmap.mmap(fd, _HEADER, prot=mmap.PROT_READ)
            except (OSError, ValueError):
                return None
        return kept


class SqliteEpoch:
    """The epoch row of one SQLite database file, read as rarely as is exact."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA query_only = ON")
        weakref.finalize(self, self.conn.close)
        #: the process's descriptor of the -shm file (see _shm_descriptor), or None
        self._fd: int | None = None
        #: the process's mapping of its header, once safe to read (see _check_file)
        self._map: mmap.mmap | None = None
        self._shm_inode = -1
        self._header = b""
        self._epoch = 0
        self._read_at = float("-inf")
        #: reads of the row so far (for tests and the benchmark's account)
        self.row_reads = 0

    def current(self) -> int:
        shm = self._map
        header = shm[:_HEADER] if shm is not None else self._wal_header()
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
        if self._fd is None:
            opened = _shm_descriptor(self.path + "-shm")
            if opened is None:
                return b""
            self._fd, self._shm_inode = opened
        try:
            header = os.pread(self._fd, _HEADER, 0)
        except OSError:
            self._forget_shm()
            return b""
        return header if len(header) == _HEADER else b""

    def _check_file(self) -> None:
        """After a row read: use the ``-shm`` file at the path if it is another one."""
        if self._fd is None:
            return
        try:
            same = os.stat(self.path + "-shm").st_ino == self._shm_inode
        except OSError:
            same = False
        if not same:
            self._forget_shm()
            self._header = b""
        elif self._map is None and self._attached():
            # the connection reads through this -shm file: mapped now, it stays
            # inside the file while the connection is open (see the module docstring)
            self._map = _shm_map(self._fd)

    def _attached(self) -> bool:
        """Whether this reader's connection holds the ``-shm`` file at the path open,
        the one its descriptor reads.  Asking the journal mode reads the database
        header in a read transaction, which in WAL mode opens the WAL index (and takes
        SQLite's shared lock on the file) if the connection had not yet; the file at
        the path after that is then the one the connection holds: it cannot be
        replaced while any connection holds it."""
        try:
            mode = self.conn.execute("PRAGMA journal_mode").fetchone()
            same = os.stat(self.path + "-shm").st_ino == self._shm_inode
        except (sqlite3.Error, OSError):
            return False
        return same and mode is not None and str(mode[0]).lower() == "wal"

    def _forget_shm(self) -> None:
        """Stop using the descriptor and mapping (both kept for the process: see the
        module docstring)."""
        self._fd = None
        self._map = None

    def close(self) -> None:
        self._forget_shm()
        self.conn.close()
