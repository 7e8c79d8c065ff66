"""Start a task that belongs to no caller's task group.

A client may be opened in one task and closed in another (a pool, a web
request handler, a test fixture).  Structured concurrency forbids entering a
cancel scope in one task and leaving it in another, which is what breaks
clients that borrow the caller's task group.  So each connection runs in a
task of its own, started here, that enters and leaves all of its scopes
itself; the caller only sets events and waits on them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ("spawn_background",)

# Strong references: the event loop keeps only weak ones to its tasks.
_running: set[Any] = set()


def spawn_background(func: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``func()`` in a new task of the current event loop (asyncio or trio)."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio is the other loop anyio runs on
        import trio  # type: ignore[import-not-found, unused-ignore]

        trio.lowlevel.spawn_system_task(func)
        return
    task = loop.create_task(func())
    _running.add(task)
    task.add_done_callback(_running.discard)
