"""Plain values and aliases every layer shares: one place, like starlette's ``types``.

The core is sans-I/O, but it carries one value it never looks into: the
:class:`TransportContext` of each incoming message, which the transport
builds (who is on the other end, through what, with which headers) and the
core attaches to the events it produces, so that a handler, a policy or an
audit record learns it from the request itself and never from a transport
object.  Everything here is immutable plain data a store could persist.
(The one shared alias that names a transport type, ``Serve``, lives beside
``MessageStream`` in ``transports.base``: the core does not know transports.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any, NamedTuple

__all__ = (
    "RequestId",
    "JSONObject",
    "TransportKind",
    "ProcessIdentity",
    "TransportContext",
    "NO_HEADERS",
    "memory_context",
)

#: a JSON-RPC id exactly as it appeared on the wire
RequestId = str | int

#: a decoded JSON object (params, results, capabilities)
JSONObject = dict[str, Any]

#: an empty, read-only header map (transports without headers)
NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class TransportKind(Enum):
    """Which transport a message came through."""

    STDIO = "stdio"
    STREAMABLE_HTTP = "streamable-http"
    HTTP_SSE = "http+sse"
    WEBSOCKET = "websocket"
    MEMORY = "memory"
    PROCESS = "process"  # the client side of stdio: a child process we started


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """The OS identity behind a stdio connection (the process serving it)."""

    pid: int
    uid: int | None
    user: str | None


class TransportContext(NamedTuple):
    """Where one incoming message came from; built by its transport.

    ``headers`` are the HTTP request's (names lower-case, the first value of a
    repeated header) for HTTP transports, the upgrade request's for
    WebSocket, empty otherwise; treat the mapping as read-only.
    ``remote`` is the peer's address when there is one; ``process`` the OS
    identity a stdio server runs as.  ``principal`` is the authenticated
    caller, filled by an authenticator above the transport (None until
    then): its type belongs to the security layer, so it is opaque here.

    A named tuple, so immutable: HTTP builds one per POST, and a tuple costs a
    quarter of a frozen dataclass's construction (callgrind: about 3k
    instructions against 10k).
    """

    kind: TransportKind
    remote: tuple[str, int] | None = None
    headers: Mapping[str, str] = NO_HEADERS
    process: ProcessIdentity | None = None
    session_id: str | None = None
    principal: Any = None

    def header(self, name: str) -> str | None:
        """One header's value (``name`` in any case), or None."""
        return self.headers.get(name.lower())

    def with_principal(self, principal: Any) -> TransportContext:
        """A copy naming the authenticated caller."""
        return self._replace(principal=principal)

    def with_session(self, session_id: str) -> TransportContext:
        """A copy naming the session the message belongs to."""
        return self._replace(session_id=session_id)


def memory_context() -> TransportContext:
    """The context of messages from an in-process peer (tests, embedding)."""
    return _MEMORY


_MEMORY = TransportContext(TransportKind.MEMORY)
