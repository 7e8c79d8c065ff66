"""JSON-RPC 2.0 envelopes: parse, classify, build, serialize.

This layer knows JSON-RPC, not MCP: it turns bytes into dicts, checks the
envelope rules every message must follow whatever its method, and builds
replies.  Schema checks by method happen one layer up (``connection``).

Envelope rules enforced here (JSON-RPC 2.0 §4-§6, MCP "Messages"):

* ``jsonrpc`` is exactly ``"2.0"``;
* a request has a string or integer ``id`` (never null, never a float or a
  boolean) and a string ``method``; a notification has no ``id``;
* ``params``, when present, is an object (MCP never uses positional params);
* a response has an ``id`` and exactly one of ``result`` / ``error``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .errors import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR, McpError, RemoteProtocolError
from .types import RequestId

__all__ = (
    "Incoming",
    "IncomingRequest",
    "IncomingNotification",
    "IncomingResponse",
    "IncomingError",
    "Classified",
    "REFUSAL_HEAD",
    "parse",
    "classify",
    "dumps",
    "response",
    "error_response",
    "request",
    "notification",
    "valid_id",
)


def valid_id(value: object) -> bool:
    """A request id is a string or an integer; bool is an int in Python, so exclude it."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


# The envelope types are read-only by convention, not frozen: a frozen
# dataclass sets each field through object.__setattr__, which made building
# one cost three times as much, and every message builds one.
@dataclass(slots=True)
class IncomingRequest:
    id: RequestId
    method: str
    params: dict[str, Any]
    raw: dict[str, Any]


@dataclass(slots=True)
class IncomingNotification:
    method: str
    params: dict[str, Any]
    raw: dict[str, Any]


@dataclass(slots=True)
class IncomingResponse:
    id: RequestId
    result: Any
    raw: dict[str, Any]


@dataclass(slots=True)
class IncomingError:
    id: RequestId | None
    error: Any
    raw: dict[str, Any]


Incoming = IncomingRequest | IncomingNotification | IncomingResponse | IncomingError


@dataclass(slots=True)  # read-only by convention, like the envelope types
class Classified:
    """A body its transport already parsed and envelope-checked.

    ``message`` is the decoded JSON (one message or a batch) and ``items``
    what :func:`classify` made of each message in it, in order.  A transport
    that must look at the envelopes anyway (Streamable HTTP answers a bad one
    with HTTP 400 before any session is involved) hands this on so that the
    connection does not check every envelope a second time.
    """

    message: Any
    items: list[Incoming]


def parse(data: bytes | str) -> Any:
    """Decode one JSON text; raises ``RemoteProtocolError(-32700)`` when it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RemoteProtocolError(PARSE_ERROR, f"Parse error: {exc}") from None


class EnvelopeError(RemoteProtocolError):
    """An envelope violation; ``request_id`` is the id to answer with, when usable."""

    def __init__(self, code: int, message: str, request_id: RequestId | None) -> None:
        super().__init__(code, message)
        self.request_id = request_id


def classify(msg: Any) -> Incoming:
    """Check the JSON-RPC envelope of one decoded message and say what it is.

    Raises :class:`EnvelopeError` (-32600, or -32602 for non-object params)
    carrying the id to answer with when one can be recovered.
    """
    if not isinstance(msg, dict):
        raise EnvelopeError(INVALID_REQUEST, "Invalid Request: a message must be a JSON object",
                            None)
    raw_id = msg.get("id")
    # valid_id, with the exact int/str types (every id JSON decodes to) first
    kind = type(raw_id)
    usable_id = raw_id if kind is int or kind is str or valid_id(raw_id) else None
    if msg.get("jsonrpc") != "2.0":
        raise EnvelopeError(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"', usable_id)
    if "method" in msg:
        method = msg["method"]
        if not isinstance(method, str):
            raise EnvelopeError(INVALID_REQUEST, 'Invalid Request: "method" must be a string',
                                usable_id)
        params = msg.get("params")
        if params is None:
            if "params" in msg:
                raise EnvelopeError(INVALID_PARAMS, 'Invalid params: "params" must be an object',
                                    usable_id)
            params = {}
        elif not isinstance(params, dict):
            raise EnvelopeError(INVALID_PARAMS, 'Invalid params: "params" must be an object',
                                usable_id)
        if "id" not in msg:
            return IncomingNotification(method, params, msg)
        if usable_id is None:
            raise EnvelopeError(
                INVALID_REQUEST, 'Invalid Request: "id" must be a string or an integer', None)
        return IncomingRequest(usable_id, method, params, msg)
    has_result = "result" in msg
    has_error = "error" in msg
    if has_result == has_error:
        raise EnvelopeError(
            INVALID_REQUEST,
            'Invalid Request: a message needs "method", or exactly one of "result" and "error"',
            usable_id)
    if has_error:
        return IncomingError(usable_id, msg["error"], msg)
    if usable_id is None:
        raise EnvelopeError(INVALID_REQUEST, 'Invalid Request: a response needs a valid "id"',
                            None)
    return IncomingResponse(usable_id, msg["result"], msg)


def dumps(message: Any) -> bytes:
    """Serialize to compact UTF-8 JSON (no newlines: safe for line framing)."""
    return orjson.dumps(message)


def response(request_id: RequestId, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


#: how :func:`error_response` with a null id starts once serialized: the reply
#: to a message refused as a whole (no id could be read, or none applies)
REFUSAL_HEAD = b'{"jsonrpc":"2.0","id":null,"error":'


def error_response(request_id: RequestId | None, error: McpError) -> dict[str, Any]:
    # JSON-RPC 2.0 §5: when the id could not be determined it is null.
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_error_object()}


def request(request_id: RequestId, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def notification(method: str, params: dict[str, Any] | None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg
