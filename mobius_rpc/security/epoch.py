"""Knowing the security epoch without a database round trip on every request.

The store's *security epoch* moves with every change that can end or narrow
access (a revocation, a disabled user, a membership or a rule changed).  The
authenticator trusts a cached token only while the epoch stands still, so it
must know the current epoch for every request; reading it from the database
each time costs a round trip (on PostgreSQL a pool checkout and a network
hop: the largest part of security's latency at one client).

:class:`EpochWatch` knows it more cheaply, without ever being later than:

* **this process**: every access-narrowing write made here through a
  :class:`~.sql_store.SqlSecurityStore` or a :class:`~.store.MemorySecurityStore`
  counts in :func:`local_changes`; a count that moved since the last read forces
  a read, so a revocation made in this process fails the very next request;
* **other processes on PostgreSQL**: those writes publish on the store's
  notification channel (LISTEN/NOTIFY, :data:`EPOCH_CHANNEL`); while
  :meth:`EpochWatch.run` listens, a notice forces a read, and with no notice the
  epoch is read again at least every ``poll`` seconds anyway (a notice lost with
  a dropped LISTEN connection or a crash between commit and notify is caught
  by that poll: the worst-case window, see docs/security.md);
* **other processes on SQLite**: the store's own ``security_epoch`` is cheap
  there (a ``pread`` of the WAL index header, the row read only after a commit:
  see :mod:`.sqlite_epoch`), so it is asked every time and there is no window.

Without :meth:`run` (an embedder who never starts it) every request reads the
epoch, as before: slower, never staler.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio

from .store import SecurityStore

__all__ = ("EPOCH_CHANNEL", "EpochWatch", "local_changes", "note_local_change")

log = logging.getLogger("mobius_rpc.security")

#: the storage channel on which access-narrowing changes are announced
EPOCH_CHANNEL = "mobius.security.epoch"
#: seconds between safety reads while notices are being received
DEFAULT_POLL = 1.0

_local = [0]


def note_local_change() -> None:
    """Count one access-narrowing change made by this process (any store)."""
    _local[0] += 1


def local_changes() -> int:
    """How many access-narrowing changes this process has made so far."""
    return _local[0]


class EpochWatch:
    """The current security epoch of one store, read only when it may have moved."""

    def __init__(self, store: SecurityStore, *, poll: float = DEFAULT_POLL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.poll = poll
        self._clock = clock
        self._epoch = 0
        #: when the epoch was last read (clock time); -inf: read it next time
        self._read_at = float("-inf")
        #: local_changes() when it was read
        self._local_seen = -1
        #: moves with each notice, so a notice that lands during a read is not lost
        self._notices = 0
        #: whether notices are being received (only then is a stored epoch trusted)
        self.listening = False
        #: store reads of the epoch so far (for tests and the benchmark's account)
        self.reads = 0
        #: the store's synchronous epoch read, if it has one that is cheap and exact
        #: (SQLite: asked on every request without the coroutine layers)
        reader = getattr(store, "epoch_reader", None)
        self._read_now: Callable[[], int] | None = reader() if reader is not None else None

    def now(self) -> int | None:
        """:meth:`current` without awaiting, when no read must wait: the store can say
        it on the spot (SQLite), or the epoch read last still stands (notices are
        being received, none came, nothing changed here, the poll is not due);
        None: await :meth:`current`."""
        if self._read_now is not None:  # no notices to wait for: asked every time
            self.reads += 1
            return self._read_now()
        if self.listening and self._local_seen == _local[0] \
                and self._clock() - self._read_at < self.poll:
            return self._epoch
        return None

    async def current(self) -> int:
        """The store's security epoch (see the module docstring for how fresh)."""
        known = self.now()
        if known is not None:
            return known
        notices, local, at = self._notices, _local[0], self._clock()
        epoch = await self.store.security_epoch()
        self.reads += 1
        self._epoch = epoch
        if notices == self._notices:  # no notice arrived while reading: trust it
            self._read_at, self._local_seen = at, local
        else:
            self._read_at, self._local_seen = float("-inf"), -1
        return epoch

    def invalidate(self) -> None:
        """Read the epoch again on the next request."""
        self._notices += 1
        self._read_at = float("-inf")

    async def run(self) -> None:
        """Receive the store's change notices until cancelled (returns at once for a
        store that has none to give: its ``security_epoch`` is cheap already).
        A failed subscription is retried; meanwhile every request reads the epoch."""
        notices: Callable[[], AbstractAsyncContextManager[Any] | None] | None = \
            getattr(self.store, "epoch_notices", None)
        if notices is None:
            return
        subscription = notices()
        if subscription is None:
            return
        delay = 0.1
        while True:
            try:
                async with subscription as messages:
                    self.invalidate()  # what happened before we listened: read it
                    self.listening = True
                    delay = 0.1
                    async for _ in messages:
                        self.invalidate()
            except Exception as error:  # the channel failed: poll every request meanwhile
                log.warning("security epoch notices stopped (%s); retrying",
                            type(error).__name__)
            finally:
                self.listening = False
                self.invalidate()
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)
            subscription = notices()
            if subscription is None:
                return
