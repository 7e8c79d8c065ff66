"""Every network transport in one ASGI application.

``/mcp`` Streamable HTTP (2025-03-26 .. 2026-07-28), ``/sse`` + ``/messages``
HTTP+SSE (2024-11-05), ``/ws`` WebSocket (subprotocol ``mcp``, either era).
Mount it in an existing Starlette/FastAPI application, or run it directly; its
lifespan owns the task group the Streamable HTTP sessions live in (a parent
application that mounts it must enter :meth:`McpTransports.lifespan`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from ..core.limits import Limits
from ..framing.http import OriginPolicy
from .base import Serve
from .http_sse import HttpSseTransport
from .streamable_http import Exchange, StreamableHTTPTransport
from .websocket import WebSocketTransport

__all__ = ("McpTransports",)

PATHS = {"streamable_http": "/mcp", "sse": "/sse", "websocket": "/ws"}


class McpTransports:
    """The transports of one server and the Starlette app that routes to them."""

    def __init__(self, serve: Serve, *, serve_modern: Serve | None = None,
                 exchange: Exchange | None = None,
                 legacy_revisions: tuple[str, ...], modern_revisions: tuple[str, ...],
                 origin_policy: OriginPolicy | None = None, limits: Limits | None = None,
                 **http_options: Any) -> None:
        policy = origin_policy or OriginPolicy()
        limits = limits or Limits()
        self.streamable_http = StreamableHTTPTransport(
            serve, serve_modern=serve_modern, exchange=exchange,
            legacy_revisions=legacy_revisions,
            modern_revisions=modern_revisions, origin_policy=policy,
            max_body_bytes=limits.max_message_bytes, **http_options)
        self.sse = HttpSseTransport(serve, origin_policy=policy,
                                    max_body_bytes=limits.max_message_bytes)
        self.websocket = WebSocketTransport(serve, origin_policy=policy, limits=limits)
        #: the routing application for everything but Streamable HTTP (and the lifespan)
        self.starlette = Starlette(routes=[
            Route(PATHS["streamable_http"], self.streamable_http,
                  methods=["GET", "POST", "DELETE", "PUT", "PATCH"]),
            Route("/sse", self.sse, methods=["GET"]),
            Route("/messages", self.sse, methods=["POST"]),
            WebSocketRoute(PATHS["websocket"], self.websocket),
        ], lifespan=self._lifespan)
        #: the ASGI application to run or mount: ``/mcp`` straight to the transport
        self.app = _McpFirst(PATHS["streamable_http"], self.streamable_http, self.starlette)

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        async with self.streamable_http.lifespan():
            yield

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with self.lifespan():
            yield


class _McpFirst:
    """An ASGI app that sends HTTP requests for the MCP endpoint straight to its transport.

    Every Streamable HTTP POST would otherwise pass Starlette's error and
    exception middleware and its router (about a tenth of the CPU a small
    request costs in our code); the transport answers every method and
    error itself, so they add nothing there.  Everything else (the other
    transports, the lifespan, 404s) goes to the Starlette application.
    """

    def __init__(self, path: str, endpoint: StreamableHTTPTransport, rest: Starlette) -> None:
        self.path = path
        self.endpoint = endpoint
        self.rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _route_path(scope) == self.path:
            await self.endpoint(scope, receive, send)
        else:
            await self.rest(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The request path below the mount point (``root_path``), as routers match it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] in ("/", ""):
        return path[len(root):]
    return path
