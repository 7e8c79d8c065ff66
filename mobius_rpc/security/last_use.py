"""Token last-use writes behind the request that finds one due.

A token records its last use at most once a minute (:data:`~.tokens.TOUCH_INTERVAL`).
The request that finds the minute over used to await that write: a store round
trip on PostgreSQL, and on SQLite a write that may wait for the lock while the
audit writer commits.  The answer does not depend on it, so while
:meth:`LastUseWriter.run` runs beside the server the request only notes the
token and the time, and the write happens here, after the answer.

What a user can rely on: ``last_used_at`` lags the real last use by at most a
minute plus the time the write waits here.  A clean stop (the runner cancelled)
writes what is noted before it returns; a crash loses at most those not written
yet (one value per token, overwritten a minute later by the next use).  A write
the store refuses is kept and tried again after a pause (a newer use of the same
token replaces it), and logged once per outage.  Without a runner, or with more
than :attr:`LastUseWriter.max_noted` tokens noted, the caller writes the value
itself, as before.
"""

from __future__ import annotations

import logging

import anyio

from .store import SecurityStore

__all__ = ("LastUseWriter",)

log = logging.getLogger("mobius_rpc.security")


class LastUseWriter:
    """Writes noted token uses (``token id -> time``) in the background."""

    def __init__(self, store: SecurityStore, *, max_noted: int = 10_000,
                 retry_delay: float = 1.0) -> None:
        self.store = store
        #: the most tokens noted and not written before callers write themselves
        self.max_noted = max_noted
        #: the first pause after a refused write (doubles, up to 30 s)
        self.retry_delay = retry_delay
        #: token id -> the latest use not written yet
        self._noted: dict[str, float] = {}
        self._wake = anyio.Event()
        self._running = False
        self._failing = False
        #: writes made so far (for tests and accounts)
        self.writes = 0

    @property
    def running(self) -> bool:
        return self._running

    def note(self, token_id: str, at: float) -> bool:
        """Note a use to write later; False (nothing noted) when nothing runs to
        write it or too much is noted: write it with :meth:`record` then."""
        noted = self._noted
        if not self._running or (len(noted) >= self.max_noted and token_id not in noted):
            return False
        if at > noted.get(token_id, float("-inf")):
            noted[token_id] = at
        self._wake.set()
        return True

    async def record(self, token_id: str, at: float) -> None:
        """Note the use, or write it now when it cannot be noted."""
        if not self.note(token_id, at):
            await self.store.touch_token(token_id, at)
            self.writes += 1

    async def run(self) -> None:
        """Write noted uses until cancelled; then write what is left."""
        self._running = True
        delay = self.retry_delay
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                if await self._write_noted():
                    delay = self.retry_delay
                else:
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    self._wake.set()  # try again what was kept
        finally:
            self._running = False
            with anyio.CancelScope(shield=True), anyio.move_on_after(10.0):
                await self._write_noted(last=True)

    async def _write_noted(self, *, last: bool = False) -> bool:
        """Write every noted use; False when the store refused one.  A use leaves
        the table only once written (a cancelled or refused write keeps it, and a
        newer use noted during the write stays for the next)."""
        noted = self._noted
        while noted:
            token_id, at = next(iter(noted.items()))
            try:
                await self.store.touch_token(token_id, at)
            except Exception as error:
                if last:
                    log.warning("token last use: %d not written at the stop (%s)",
                                len(noted), type(error).__name__)
                elif not self._failing:
                    self._failing = True
                    log.warning("token last use: the store refused a write (%s); "
                                "trying again", type(error).__name__)
                return False
            if noted.get(token_id) == at:
                del noted[token_id]
            else:  # used again meanwhile: that use goes last
                noted[token_id] = noted.pop(token_id)
            self.writes += 1
        self._failing = False
        return True
