"""Streamable HTTP rules as pure functions: headers, statuses, origins.

Nothing here does I/O; the ASGI transport asks these functions and answers
with what they return.  Statuses and codes follow the transport sections of
each revision (protocol-facts §3):

* ``Accept`` must list ``application/json`` and ``text/event-stream`` (406);
* ``Origin`` outside the allow-list -> 403; a ``Host`` that is not ours -> 421
  (DNS rebinding protection);
* legacy: ``MCP-Protocol-Version`` absent means 2025-03-26, any other value
  that is not the negotiated revision -> 400;
* 2026-07-28: ``MCP-Protocol-Version``, ``Mcp-Method`` and (for tools/call,
  prompts/get, resources/read) ``Mcp-Name`` must match the body, else 400
  with -32020 HeaderMismatch; values may be ``=?base64?...?=`` encoded.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from ..core.errors import HEADER_MISMATCH, McpError
from ..core.modern import META_PROTOCOL_VERSION

__all__ = (
    "SESSION_HEADER",
    "VERSION_HEADER",
    "METHOD_HEADER",
    "NAME_HEADER",
    "HttpRefusal",
    "OriginPolicy",
    "accepts",
    "decode_header_value",
    "check_modern_headers",
    "legacy_version_header",
    "mismatch",
)

SESSION_HEADER = "mcp-session-id"
VERSION_HEADER = "mcp-protocol-version"
METHOD_HEADER = "mcp-method"
NAME_HEADER = "mcp-name"
_NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_ENCODED = re.compile(r"=\?base64\?([A-Za-z0-9+/=]*)\?=")
_LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


@dataclass(frozen=True, slots=True)
class HttpRefusal(Exception):
    """An HTTP-level refusal: status, reason, and an optional JSON-RPC error body."""

    status: int
    reason: str
    error: McpError | None = None


@lru_cache(maxsize=256)
def accepts(accept_header: str, *media_types: str) -> bool:
    """Whether ``Accept`` lists every one of ``media_types`` (or a matching wildcard).

    Cached: a client sends the same ``Accept`` on every request.
    """
    offered = {part.split(";")[0].strip().lower() for part in accept_header.split(",")}
    if "*/*" in offered:
        return True
    for media in media_types:
        family = media.split("/")[0] + "/*"
        if media not in offered and family not in offered:
            return False
    return True


@dataclass(frozen=True)
class OriginPolicy:
    """Which browser origins and Host headers may reach the endpoint.

    By default only loopback origins and hosts are accepted, the safe choice
    for a server bound to 127.0.0.1: a web page elsewhere cannot drive it
    through the user's browser (DNS rebinding).  Requests without ``Origin``
    (non-browser clients) are accepted.
    """

    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    allow_any_host: bool = False

    def check(self, headers: Mapping[str, str]) -> None:
        host = headers.get("host", "")
        if not self.allow_any_host and not self._host_ok(host):
            raise HttpRefusal(421, f"Misdirected Request: host {host!r} is not served here")
        origin = headers.get("origin")
        if origin is not None and not self._origin_ok(origin):
            raise HttpRefusal(403, f"Forbidden: origin {origin!r} is not allowed")

    def _host_ok(self, host: str) -> bool:
        return _host_allowed(self.allowed_hosts, host)

    def _origin_ok(self, origin: str) -> bool:
        if origin in self.allowed_origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and (parts.hostname or "") in _LOOPBACK


@lru_cache(maxsize=256)
def _host_allowed(allowed_hosts: tuple[str, ...], host: str) -> bool:
    """Cached: the same few ``Host`` values come on every request, and parsing one
    costs more than the rest of the origin check."""
    name = urlsplit(f"//{host}").hostname or ""
    return name in _LOOPBACK or host in allowed_hosts or name in allowed_hosts


def decode_header_value(value: str) -> str:
    """A header value, decoding the ``=?base64?...?=`` form used for non-ASCII text."""
    value = value.strip()
    if not value.startswith("=?"):
        return value  # plain text, the usual case: no pattern to match
    found = _ENCODED.fullmatch(value)
    if not found:
        return value
    try:
        return base64.b64decode(found.group(1), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise HttpRefusal(400, "Bad Request: undecodable header value", McpError(
            HEADER_MISMATCH, "Header mismatch: a base64 header value does not decode")) from None


def mismatch(what: str) -> HttpRefusal:
    """A header that disagrees with the body: HTTP 400 with -32020 HeaderMismatch."""
    return HttpRefusal(400, f"Bad Request: {what}",
                       McpError(HEADER_MISMATCH, f"Header mismatch: {what}"))


def check_modern_headers(headers: Mapping[str, str], message: Any) -> None:
    """The 2026-07-28 request headers must agree with the request body."""
    if not isinstance(message, dict) or "method" not in message:
        return
    raw_params = message.get("params")
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    raw_meta = params.get("_meta")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    if META_PROTOCOL_VERSION not in meta:
        return  # the body itself is invalid: the core answers -32602 for it
    version = headers.get(VERSION_HEADER)
    if version is None or decode_header_value(version) != meta.get(META_PROTOCOL_VERSION):
        raise mismatch("MCP-Protocol-Version is missing or differs from _meta")
    method = headers.get(METHOD_HEADER)
    if method is None or decode_header_value(method) != message["method"]:
        raise mismatch("Mcp-Method is missing or differs from the body's method")
    field = _NAMED.get(message["method"])
    if field is not None:
        name = headers.get(NAME_HEADER)
        if name is None and not isinstance(params.get(field), str):
            return  # nothing to mirror: the body itself is invalid (-32602 from the core)
        if name is None or decode_header_value(name) != params.get(field):
            raise mismatch(f"Mcp-Name is missing or differs from params.{field}")


def legacy_version_header(headers: Mapping[str, str], negotiated: str | None,
                          supported: Iterable[str]) -> None:
    """Check ``MCP-Protocol-Version`` on a legacy request after initialization."""
    value = headers.get(VERSION_HEADER)
    if value is None:
        return  # absent: the client predates the header (2025-03-26)
    # Any revision we support is accepted; clients in the field send an older
    # one than they negotiated (the official test client sends 2025-03-26).
    if value not in supported:
        raise HttpRefusal(400, f"Bad Request: unsupported MCP-Protocol-Version {value!r}")
