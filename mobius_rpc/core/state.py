"""The session state machine of the legacy era, as one table.

Rule: everything that moves a session between states lives here.  The
connection asks :func:`transition` and gets the next state or a
:class:`~mobius_rpc.core.errors.ProtocolError` that names the event, the role
and the state, so a violation is reported the same way everywhere.

    UNINITIALIZED --initialize--> INITIALIZING --initialized--> READY
          any --close--> CLOSED

Legacy lifecycle (2024-11-05 .. 2025-11-25 "Lifecycle"): the client's first
request is ``initialize``; only ``ping`` may precede its answer; the client then
sends ``notifications/initialized``.  We accept ordinary requests in
INITIALIZING because widely used clients send them right after the initialize
response without waiting for their own notification to be read.
"""

from __future__ import annotations

from enum import Enum

from .errors import INVALID_REQUEST, LocalProtocolError, RemoteProtocolError

__all__ = ("SessionState", "Trigger", "transition", "accepts_requests")


class SessionState(Enum):
    #: nothing exchanged yet; only ``initialize`` and ``ping`` are accepted
    UNINITIALIZED = "uninitialized"
    #: initialize answered, ``notifications/initialized`` not yet seen
    INITIALIZING = "initializing"
    #: normal operation
    READY = "ready"
    #: closed; nothing is accepted or sent
    CLOSED = "closed"


class Trigger(Enum):
    INITIALIZE = "initialize"
    INITIALIZED = "notifications/initialized"
    CLOSE = "close"


_TRANSITIONS: dict[tuple[SessionState, Trigger], SessionState] = {
    (SessionState.UNINITIALIZED, Trigger.INITIALIZE): SessionState.INITIALIZING,
    (SessionState.INITIALIZING, Trigger.INITIALIZED): SessionState.READY,
    # A repeated `initialized` notification is harmless; stay ready.
    (SessionState.READY, Trigger.INITIALIZED): SessionState.READY,
    (SessionState.UNINITIALIZED, Trigger.CLOSE): SessionState.CLOSED,
    (SessionState.INITIALIZING, Trigger.CLOSE): SessionState.CLOSED,
    (SessionState.READY, Trigger.CLOSE): SessionState.CLOSED,
    (SessionState.CLOSED, Trigger.CLOSE): SessionState.CLOSED,
}

_REASONS: dict[tuple[SessionState, Trigger], str] = {
    (SessionState.INITIALIZING, Trigger.INITIALIZE): "session is already initialized",
    (SessionState.READY, Trigger.INITIALIZE): "session is already initialized",
    (SessionState.UNINITIALIZED, Trigger.INITIALIZED):
        "notifications/initialized before initialize",
}


def transition(state: SessionState, trigger: Trigger, *, role: str, remote: bool = True
               ) -> SessionState:
    """The state after ``trigger``; raises a protocol error naming the illegal move."""
    nxt = _TRANSITIONS.get((state, trigger))
    if nxt is not None:
        return nxt
    reason = _REASONS.get((state, trigger), "not allowed")
    message = f"{reason} (event {trigger.value} when role={role} and state={state.value})"
    if remote:
        raise RemoteProtocolError(INVALID_REQUEST, message)
    raise LocalProtocolError(INVALID_REQUEST, message)


def accepts_requests(state: SessionState) -> bool:
    """Whether ordinary (non-lifecycle) requests are served in this state."""
    return state is SessionState.INITIALIZING or state is SessionState.READY
