"""Where a :class:`~.session.Session` runs the work beside its handlers.

A session does not care whose task group starts its work: a long-lived one
owns a group for the length of :meth:`~.session.Session.run`
(:class:`OwnTasks`), a stateless exchange borrows the transport's
(``runtime.exchange.LentTasks``).  :class:`TaskRunner` is what both offer;
it lives apart from the session so that either kind of runner can be read
(and replaced) without the session's message handling in the way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from anyio.abc import TaskGroup

from ..core.errors import ConnectionClosedError

__all__ = ("TaskRunner", "OwnTasks")

log = logging.getLogger("mobius_rpc.runtime")


class TaskRunner(Protocol):
    """Where a session runs work beside its handlers (a request's task, a
    notification's, ``start_soon``), and how that work is stopped.

    A long-lived session owns a task group (:class:`OwnTasks`); a stateless
    exchange borrows the transport's (``runtime.exchange.LentTasks``).
    """

    @property
    def running(self) -> bool:
        """Whether :meth:`start_soon` can start work now."""
        ...

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Start ``func``; raises :class:`ConnectionClosedError` when not running."""
        ...

    def cancel(self) -> None:
        """Stop everything started here (and, for a session's own group, its loop)."""
        ...


class OwnTasks:
    """The task group of a session's :meth:`Session.run`: work ends with the session.

    On asyncio the requests' tasks are plain loop tasks the session keeps
    itself (:meth:`start_request`): a task group's ``start_soon`` costs about
    a tenth of a forwarded call's CPU.  Each such task serves its request
    under the request's own cancel scope, which is how it is cancelled (by
    ``notifications/cancelled``, by :meth:`Session.close` and at the end of
    :meth:`Session.run`, which waits for them), so handlers keep anyio's
    semantics, shields included.
    """

    __slots__ = ("group", "loop", "requests")

    def __init__(self) -> None:
        self.group: TaskGroup | None = None
        #: the asyncio loop :meth:`Session.run` runs in (None on another backend)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.requests: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return self.group is not None

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        if self.group is None:
            raise ConnectionClosedError()
        self.group.start_soon(func, *args)

    def cancel(self) -> None:
        if self.group is not None:
            self.group.cancel_scope.cancel()

    def start_request(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run one request's ``coro`` in a loop task of its own (``loop`` is set)."""
        if self.group is None or self.loop is None:
            coro.close()
            raise ConnectionClosedError()
        task = self.loop.create_task(coro)
        self.requests.add(task)
        task.add_done_callback(self._request_done)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self.requests.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # a task group would end the session on such a failure: so do we
            log.error("a request's task failed", exc_info=task.exception())
            self.cancel()

