"""What a server tells the replicas it shares its legacy sessions with.

Behind a load balancer, several processes serve one Streamable HTTP session:
each request may reach any of them, and each rebuilds the session from a
shared record (:meth:`restore`).  The state the server keeps per session
(log level, resource subscriptions) must then be written where the others
read it, and a resource update produced in one process must reach the
subscribers every process serves.  A :class:`SessionRelay` (the transport's
shared-session host implements it) does both; without one, as in a single
process, the server keeps that state in ``session.state`` only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..core.events import SessionInitialized
from ..runtime.session import Session
from ..storage.base import Store

__all__ = ("SessionRelay", "take_up", "apply_state")


class SessionRelay(Protocol):
    #: the store the replicas share (tasks are records in it), and this replica's name
    store: Store
    replica: str

    async def set_log_level(self, session_id: str, level: str) -> None:
        """Persist the session's log level; replicas serving it take it up."""
        ...

    async def set_subscribed(self, session_id: str, uri: str, subscribed: bool) -> None:
        """Persist one resource subscription of the session (atomically)."""
        ...

    async def resource_updated(self, uri: str, notification: bytes) -> None:
        """Send ``notification`` to every session subscribed to ``uri`` (on any replica),
        and have every replica call its ``on_resource_updated`` hook for its
        ``subscriptions/listen`` streams."""
        ...

    async def task_cancelled(self, task_id: str) -> None:
        """Tell every replica that a task was cancelled (the one running it stops it)."""
        ...

    def on_task_cancelled(self, hook: Callable[[str], None]) -> None:
        """Register what to call, in this process, when a task is cancelled anywhere."""
        ...

    def on_resource_updated(self, hook: Callable[[str], None]) -> None:
        """Register what to call, in this process, when any replica updates a resource."""
        ...


def take_up(session: Session, record: Any,
            initialized: Callable[[Session, SessionInitialized], None]) -> None:
    """Prepare a legacy session that replicas share, before it runs.

    ``record`` (a storage ``SessionRecord``, or None for a session that is
    about to be initialized here) is the session as another replica left it:
    the connection becomes ready at its revision and the server's per-session
    state is the record's.  Either way the stream learns how to refresh that
    state when another replica changes it (``stream.on_state``).
    """
    if record is not None:
        session.connection.restore_legacy(record.protocol_version, record.client_info,
                                          record.capabilities)
        initialized(session, SessionInitialized(record.protocol_version,
                                                session.connection.peer_info,
                                                session.connection.peer_capabilities))
        apply_state(session, record)

    def refresh(changed: Any) -> None:
        apply_state(session, changed)

    session.stream.on_state = refresh  # type: ignore[attr-defined]


def apply_state(session: Session, record: Any) -> None:
    """Copy the record's log level and subscriptions into ``session.state``."""
    if record.log_level is not None:
        session.state["log_level"] = record.log_level
    session.state["subscriptions"] = set(record.subscriptions)
