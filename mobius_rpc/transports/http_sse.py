"""The HTTP+SSE transport of 2024-11-05 (deprecated since 2025-03-26, still in use).

A client opens ``GET /sse``; the first event, ``endpoint``, names the URI to
POST its messages to (``/messages?session_id=...``); every server message then
arrives as an SSE ``message`` event on that GET stream, and each POST is
answered ``202 Accepted``.  The session lives as long as the GET stream.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import AsyncIterator

import anyio
import orjson
from sse_starlette.event import ServerSentEvent
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..core.errors import INVALID_REQUEST, PARSE_ERROR, McpError
from ..core.jsonrpc import error_response
from ..core.types import TransportContext, TransportKind
from ..framing.http import HttpRefusal, OriginPolicy, accepts
from .asgi_context import asgi_context, headers_of
from .base import Serve, TransportCapabilities
from .memory import receive_or_end

__all__ = ("HttpSseTransport",)


class _SseSessionStream:
    """One HTTP+SSE session: POST bodies in, SSE events out.

    Each body travels with the context of the POST that carried it.
    """

    capabilities = TransportCapabilities()

    def __init__(self, context: TransportContext) -> None:
        self.in_send, self.in_receive = anyio.create_memory_object_stream[
            tuple[bytes, TransportContext]](math.inf)
        self.out_send, self.out_receive = anyio.create_memory_object_stream[bytes](math.inf)
        #: the context of the body receive() returned last (the GET's until then)
        self.transport_context = context

    async def receive(self) -> bytes:
        body, self.transport_context = await receive_or_end(self.in_receive)
        return body

    async def send(self, message: bytes) -> None:
        try:
            self.out_send.send_nowait(message)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise anyio.BrokenResourceError from None

    async def aclose(self) -> None:
        for stream in (self.in_send, self.in_receive, self.out_send, self.out_receive):
            stream.close()


class HttpSseTransport:
    """An ASGI app with the two endpoints of HTTP+SSE (``sse_path``, ``messages_path``)."""

    def __init__(self, serve: Serve, *, sse_path: str = "/sse",
                 messages_path: str = "/messages", origin_policy: OriginPolicy | None = None,
                 max_body_bytes: int = 4 * 1024 * 1024, keepalive: float = 15.0) -> None:
        self.serve = serve
        self.sse_path = sse_path
        self.messages_path = messages_path
        self.origin_policy = origin_policy or OriginPolicy()
        self.max_body_bytes = max_body_bytes
        self.keepalive = keepalive
        self._sessions: dict[str, _SseSessionStream] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            self.origin_policy.check(request.headers)
            if request.method == "GET" and scope["path"].endswith(self.sse_path):
                await self._stream(request, scope, receive, send)
            elif request.method == "POST" and scope["path"].endswith(self.messages_path):
                await self._post(request, scope, receive, send)
            else:
                raise HttpRefusal(405, "Method Not Allowed")
        except HttpRefusal as refusal:
            error = refusal.error or McpError(INVALID_REQUEST, refusal.reason)
            await Response(orjson.dumps(error_response(None, error)), refusal.status,
                           media_type="application/json")(scope, receive, send)

    async def _stream(self, request: Request, scope: Scope, receive: Receive,
                      send: Send) -> None:
        if not accepts(request.headers.get("accept", "text/event-stream"), "text/event-stream"):
            raise HttpRefusal(406, "Not Acceptable: Accept must list text/event-stream")
        session_id = secrets.token_urlsafe(24)
        stream = _SseSessionStream(asgi_context(TransportKind.HTTP_SSE, scope, headers_of(scope),
                                                session_id=session_id))
        self._sessions[session_id] = stream
        prefix = scope.get("root_path", "") + scope["path"][:-len(self.sse_path)]
        endpoint = f"{prefix}{self.messages_path}?session_id={session_id}"

        async def events() -> AsyncIterator[ServerSentEvent]:
            yield ServerSentEvent(endpoint, event="endpoint")
            async for message in stream.out_receive:
                yield ServerSentEvent(message.decode(), event="message")

        try:
            async with anyio.create_task_group() as tg:
                async def run() -> None:
                    await self.serve(stream)
                    tg.cancel_scope.cancel()

                tg.start_soon(run)
                await EventSourceResponse(events(), ping=self.keepalive)(scope, receive, send)
                tg.cancel_scope.cancel()
        finally:
            self._sessions.pop(session_id, None)
            await stream.aclose()

    async def _post(self, request: Request, scope: Scope, receive: Receive, send: Send) -> None:
        session_id = request.query_params.get("session_id", "")
        stream = self._sessions.get(session_id)
        if stream is None:
            raise HttpRefusal(404, "Not Found: unknown session")
        body = await request.body()
        if len(body) > self.max_body_bytes:
            raise HttpRefusal(413, "Content Too Large")
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            raise HttpRefusal(400, "Bad Request: not JSON",
                              McpError(PARSE_ERROR, "Parse error")) from None
        await stream.in_send.send((body, asgi_context(
            TransportKind.HTTP_SSE, scope, headers_of(scope), session_id=session_id)))
        await Response("Accepted", 202)(scope, receive, send)
