"""What the sans-I/O connection reports after it digests incoming bytes.

Events are frozen, slotted dataclasses named for what happened.  Dispatch on
them with ``match``; do not subclass them.  Every event that refers to a
request carries its JSON-RPC id exactly as it appeared on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import McpError
from .modern import RequestMeta
from .types import RequestId, TransportContext

__all__ = (
    "RequestId",
    "Event",
    "RequestReceived",
    "NotificationReceived",
    "ResponseReceived",
    "ErrorReceived",
    "CancelRequested",
    "ProgressReceived",
    "RequestTimedOut",
    "SessionInitialized",
    "MessageRejected",
)


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """The peer asked us something; answer with ``Connection.respond``.

    ``meta`` is the request's 2026-07-28 ``_meta``, parsed and checked once by
    the connection (None for a legacy request: its session holds the same
    facts); ``transport`` is what the transport said about where the message
    came from (None when the caller gave nothing).
    """

    id: RequestId
    method: str
    params: dict[str, Any]
    meta: RequestMeta | None = None
    transport: TransportContext | None = None


@dataclass(frozen=True, slots=True)
class NotificationReceived:
    """A notification that passed validation and gating."""

    method: str
    params: dict[str, Any]
    transport: TransportContext | None = None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """The result of a request we sent (already validated against its result type)."""

    id: RequestId
    method: str
    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    """A request we sent failed: an error response, or a result that broke the schema."""

    id: RequestId
    method: str
    error: McpError


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """The peer cancelled a request it had sent us; no response will be sent."""

    id: RequestId
    reason: str | None


@dataclass(frozen=True, slots=True)
class ProgressReceived:
    """Progress for one of our outstanding requests (we sent its progress token)."""

    id: RequestId
    progress: float
    total: float | None
    message: str | None


@dataclass(frozen=True, slots=True)
class RequestTimedOut:
    """A request we sent passed its deadline; ``notifications/cancelled`` was queued."""

    id: RequestId
    method: str


@dataclass(frozen=True, slots=True)
class SessionInitialized:
    """The initialize exchange completed (server: we answered; client: we got the answer)."""

    revision: str
    peer_info: dict[str, Any]
    peer_capabilities: dict[str, Any]
    instructions: str | None = None


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """An incoming message was refused; an error reply was queued when one is possible."""

    error: McpError
    replied: bool


Event = (
    RequestReceived
    | NotificationReceived
    | ResponseReceived
    | ErrorReceived
    | CancelRequested
    | ProgressReceived
    | RequestTimedOut
    | SessionInitialized
    | MessageRejected
)
