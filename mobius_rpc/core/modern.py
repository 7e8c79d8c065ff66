"""Rules of the modern era (2026-07-28): per-request ``_meta`` and result decoration.

In the modern era there is no handshake: every request names its protocol
version and the client's capabilities in ``params._meta``, and every result
names its ``resultType``.  This module holds those rules as pure functions so
the connection applies them in one place:

* :func:`read_request_meta` - the required ``_meta`` keys (missing -> -32602),
  the version (unsupported -> -32022 with ``data.supported``/``requested``);
* :func:`decorate_result` - ``resultType`` (default ``"complete"``), the
  server's ``serverInfo`` in ``_meta``, and ``ttlMs``/``cacheScope`` on the
  cacheable results (discover, the lists, resources/read).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import INVALID_PARAMS, UNSUPPORTED_PROTOCOL_VERSION, RemoteProtocolError

__all__ = (
    "META_PROTOCOL_VERSION",
    "META_CLIENT_CAPABILITIES",
    "META_CLIENT_INFO",
    "META_LOG_LEVEL",
    "META_SERVER_INFO",
    "META_SUBSCRIPTION_ID",
    "META_RELATED_TASK",
    "CACHEABLE_METHODS",
    "CachePolicy",
    "RequestMeta",
    "read_request_meta",
    "decorate_result",
)

META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
META_SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
#: 2025-11-25 tasks: what a request sent on behalf of a task carries
META_RELATED_TASK = "io.modelcontextprotocol/related-task"

#: results that carry ``ttlMs`` and ``cacheScope`` (CacheableResult)
CACHEABLE_METHODS = frozenset(("server/discover", "tools/list", "prompts/list", "resources/list",
                               "resources/templates/list", "resources/read"))


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Cache hints a server attaches to cacheable results.

    Defaults are deliberately conservative: ``private`` (a shared cache must not
    serve one user's lists to another unless the server says so), one minute
    for discovery and lists, zero for resource contents, which change.
    """

    ttl_ms: int = 60_000
    scope: str = "private"
    per_method: Mapping[str, tuple[int, str]] = field(
        default_factory=lambda: {"resources/read": (0, "private")})

    def hints(self, method: str) -> tuple[int, str]:
        return self.per_method.get(method, (self.ttl_ms, self.scope))


@dataclass(slots=True)  # read-only by convention; frozen would triple its cost
class RequestMeta:
    version: str
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any] | None
    log_level: str | None


def read_request_meta(params: dict[str, Any], supported: tuple[str, ...]) -> RequestMeta:
    """The per-request ``_meta`` of a modern request, or the error to answer."""
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        raise RemoteProtocolError(INVALID_PARAMS, "Invalid params: params._meta is required")
    version = meta.get(META_PROTOCOL_VERSION)
    if not isinstance(version, str):
        raise RemoteProtocolError(
            INVALID_PARAMS, f"Invalid params: params._meta[{META_PROTOCOL_VERSION!r}] is required")
    if version not in supported:
        raise RemoteProtocolError(
            UNSUPPORTED_PROTOCOL_VERSION, f"Unsupported protocol version: {version}",
            {"supported": list(supported), "requested": version})
    caps = meta.get(META_CLIENT_CAPABILITIES)
    if not isinstance(caps, dict):
        raise RemoteProtocolError(
            INVALID_PARAMS,
            f"Invalid params: params._meta[{META_CLIENT_CAPABILITIES!r}] is required")
    info = meta.get(META_CLIENT_INFO)
    level = meta.get(META_LOG_LEVEL)
    return RequestMeta(version, caps, info if isinstance(info, dict) else None,
                       level if isinstance(level, str) else None)


def decorate_result(method: str, result: dict[str, Any], server_info: dict[str, Any],
                    policy: CachePolicy) -> dict[str, Any]:
    """A copy of ``result`` with the fields every modern result carries."""
    out = dict(result)
    out.setdefault("resultType", "complete")
    meta = out.get("_meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta.setdefault(META_SERVER_INFO, server_info)
    out["_meta"] = meta
    if method in CACHEABLE_METHODS and out["resultType"] == "complete":
        ttl, scope = policy.hints(method)
        out.setdefault("ttlMs", ttl)
        out.setdefault("cacheScope", scope)
    return out
