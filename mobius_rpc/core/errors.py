"""Error codes and the exception types that become JSON-RPC error objects.

This module owns the mapping between Python exceptions and wire errors.  Every
exception that should reach the peer as a JSON-RPC error is an :class:`McpError`
(or subclass); anything else raised by a handler is turned into an internal
error (-32603) by the runtime's single exception boundary, so stack traces and
foreign exception types never leak onto the wire.

Two subclasses say *whose* fault a problem is, after h11's split:

* :class:`RemoteProtocolError` - the peer sent something we must reject; it
  carries the error object to send back and an HTTP status hint for transports
  that have one.
* :class:`LocalProtocolError` - our own side tried something the protocol does
  not allow (sending a request whose capability the peer did not declare,
  answering an unknown id).  It is a programming error in the caller.
"""

from __future__ import annotations

from typing import Any

__all__ = (
    "PARSE_ERROR",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "INVALID_PARAMS",
    "INTERNAL_ERROR",
    "RESOURCE_NOT_FOUND",
    "URL_ELICITATION_REQUIRED",
    "HEADER_MISMATCH",
    "MISSING_CLIENT_CAPABILITY",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "McpError",
    "ProtocolError",
    "RemoteProtocolError",
    "LocalProtocolError",
    "ConnectionClosedError",
    "RequestTimeoutError",
)

# JSON-RPC 2.0 section 5.1.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# MCP, legacy revisions (<= 2025-11-25): resources/read of an unknown URI.
RESOURCE_NOT_FOUND = -32002
# MCP 2025-11-25: URL-mode elicitation must complete before the request can go on.
URL_ELICITATION_REQUIRED = -32042
# MCP 2026-07-28 (reserved range -32020..-32099).
HEADER_MISMATCH = -32020
MISSING_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022

_HTTP_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    METHOD_NOT_FOUND: 404,
    INVALID_PARAMS: 400,
    INTERNAL_ERROR: 500,
    HEADER_MISMATCH: 400,
    MISSING_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
}


class McpError(Exception):
    """An error with a JSON-RPC code, a message and optional data.

    Handlers raise it to answer a request with a specific error; the client
    raises it when the peer answered one of our requests with an error.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_error_object(self) -> dict[str, Any]:
        """The ``error`` member of a JSON-RPC error response."""
        obj: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            obj["data"] = self.data
        return obj

    @classmethod
    def from_error_object(cls, error: Any) -> McpError:
        """Rebuild an error received from the peer (tolerant of odd shapes)."""
        if isinstance(error, dict):
            code = error.get("code")
            message = error.get("message")
            return cls(
                code if isinstance(code, int) and not isinstance(code, bool) else INTERNAL_ERROR,
                message if isinstance(message, str) else "error without a message",
                error.get("data"),
            )
        return cls(INTERNAL_ERROR, "malformed error object from peer")

    @property
    def http_status_hint(self) -> int:
        """The HTTP status a transport with statuses should use for this error."""
        return _HTTP_STATUS.get(self.code, 400 if self.code > -32100 else 500)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.message!r})"


class ProtocolError(McpError):
    """A violation of the protocol rules (as opposed to an application failure)."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; the error object is what we answer with."""


class LocalProtocolError(ProtocolError):
    """Our own side tried to do something the protocol forbids (a caller bug)."""


class ConnectionClosedError(McpError):
    """The connection ended while a request was outstanding or being sent."""

    def __init__(self, message: str = "connection closed") -> None:
        super().__init__(INTERNAL_ERROR, message)


class RequestTimeoutError(McpError):
    """A request we sent got no answer before its deadline (and was cancelled)."""

    def __init__(self, method: str, timeout: float) -> None:
        super().__init__(INTERNAL_ERROR, f"request {method!r} timed out after {timeout:g}s")
        self.method = method
        self.timeout = timeout
