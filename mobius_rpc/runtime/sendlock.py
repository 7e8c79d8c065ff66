"""A mutex for a session's send path that costs nothing when nobody contends.

Every answer a session sends passes one lock, so that messages from
concurrent handlers reach the stream whole and in the order they were
queued.  Nearly always nobody else holds it.  ``anyio.Lock`` looks up the
current task on each acquire and release (it checks ownership), and on a
small request that lookup cost more than the JSON work; :class:`SendLock`
only flips a flag when it is free, and queues an :class:`anyio.Event` per
waiter otherwise, handing the lock over in arrival order.

Like ``anyio.Lock(fast_acquire=True)``, an uncontended acquire is not a
checkpoint: it never yields and never raises a pending cancellation.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType

import anyio

__all__ = ("SendLock",)


class SendLock:
    """An async context manager: one holder at a time, waiters served first come first."""

    __slots__ = ("_locked", "_waiters")

    def __init__(self) -> None:
        self._locked = False
        self._waiters: deque[anyio.Event] = deque()

    @property
    def locked(self) -> bool:
        return self._locked

    async def __aenter__(self) -> None:
        if not self._locked:
            self._locked = True
            return
        handed = anyio.Event()
        self._waiters.append(handed)
        try:
            await handed.wait()
        except BaseException:
            if handed.is_set():
                self._release()  # handed the lock as we were cancelled: pass it on
            else:
                self._waiters.remove(handed)
            raise
        # The releasing holder kept the lock taken and handed it to us.

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._release()

    def _release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()
        else:
            self._locked = False
