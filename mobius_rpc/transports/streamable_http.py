"""Streamable HTTP as one ASGI application, legacy sessions and 2026-07-28 alike.

:class:`StreamableHTTPTransport` frames HTTP: it checks headers and statuses
(rules in :mod:`mobius_rpc.framing.http`), turns POST bodies into messages
for the runtime and the runtime's messages into JSON or SSE responses.  It
never interprets MCP beyond the JSON-RPC envelope (which ids a POST carries,
which method a modern request names for its header checks).

* Legacy (2025-03-26 .. 2025-11-25): ``initialize`` creates a session whose
  runtime lives in the transport's task group; later POSTs carry
  ``Mcp-Session-Id`` (missing -> 400, unknown -> 404); GET opens the
  standalone stream; DELETE ends the session; idle sessions expire.
* 2026-07-28: every POST is self-contained; the request runs in a runtime
  made for it and answered with JSON, or with a request-scoped SSE stream
  when progress or log notifications precede the result; GET/DELETE -> 405.
  Given an ``exchange`` callable, the runtime is awaited in the POST's own
  task and writes its answer directly (:mod:`.http_exchange`); without one,
  ``serve_modern`` runs on a message stream like a session.

Legacy sessions live in this process (:mod:`.http_local`, the default), or,
given ``shared`` (a :class:`~.http_shared.SharedSessions`), in a store that
replicas share (:mod:`.http_replicated`).  Run it directly
under an ASGI server (its lifespan opens the task group), or enter
:meth:`StreamableHTTPTransport.lifespan` from the parent application.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
from anyio.abc import TaskGroup
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..core.errors import INVALID_REQUEST, PARSE_ERROR, McpError
from ..core.jsonrpc import (
    Classified,
    EnvelopeError,
    Incoming,
    IncomingRequest,
    classify,
    error_response,
)
from ..core.revisions import LEGACY_REVISIONS, MODERN_REVISIONS, is_modern_request
from ..core.types import TransportContext, TransportKind
from ..framing.http import (
    SESSION_HEADER,
    VERSION_HEADER,
    HttpRefusal,
    OriginPolicy,
    accepts,
    check_modern_headers,
)
from ..framing.param_headers import check_param_headers
from .asgi_context import asgi_context, headers_of
from .base import Serve, cancel_scope_type
from .event_store import (
    EventStore,
    MemoryEventStore,
    StreamHub,
)
from .http_exchange import ExchangeResponse
from .http_local import LocalSessions, MemorySessionStore, SessionRecord, SessionStore, _Live
from .http_replicated import ReplicatedSessions
from .http_session import HttpMessageStream
from .http_shared import SharedSessions

__all__ = ("StreamableHTTPTransport", "SessionRecord", "SessionStore", "MemorySessionStore")

log = logging.getLogger("mobius_rpc.http")

#: serves one stateless POST: (body, the body parsed and envelope-checked as a
#: jsonrpc.Classified, the stream to answer on, a task group for work beside
#: the handler, and keywords ``scope``: a cancel scope, not entered, that the
#: transport cancels when the client leaves a streamed answer (the exchange
#: enters it around what that must stop), and ``transport``: the POST's
#: TransportContext); returns when it is answered
Exchange = Callable[..., Coroutine[Any, Any, None]]



def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _refusal_response(refusal: HttpRefusal, request_id: Any = None) -> Response:
    error = refusal.error or McpError(INVALID_REQUEST, refusal.reason)
    return _json(error_response(request_id, error), refusal.status)


class StreamableHTTPTransport(LocalSessions):
    """An ASGI app serving MCP at one endpoint; ``serve`` runs a runtime on a stream."""

    def __init__(self, serve: Serve, *, serve_modern: Serve | None = None,
                 exchange: Exchange | None = None,
                 legacy_revisions: tuple[str, ...] = LEGACY_REVISIONS,
                 modern_revisions: tuple[str, ...] = MODERN_REVISIONS,
                 origin_policy: OriginPolicy | None = None,
                 store: SessionStore | None = None, event_store: EventStore | None = None,
                 max_body_bytes: int = 4 * 1024 * 1024, session_idle_timeout: float = 1800.0,
                 keepalive: float = 15.0, retry_ms: int = 1000,
                 enable_get_stream: bool = True,
                 header_parameters: Callable[[str], Mapping[str, str]] | None = None,
                 shared: SharedSessions | None = None) -> None:
        self.serve = serve
        #: runs one stateless request; it must not fall back to the legacy era
        self.serve_modern = serve_modern or serve
        #: the cheaper way to run one stateless request, when the server offers it
        self.exchange = exchange
        self.legacy_revisions = legacy_revisions
        self.modern_revisions = modern_revisions
        self.origin_policy = origin_policy or OriginPolicy()
        self.store: SessionStore = store or MemorySessionStore()
        self.hub = StreamHub(event_store or MemoryEventStore())
        self.retry_ms = retry_ms
        self.max_body_bytes = max_body_bytes
        self.session_idle_timeout = session_idle_timeout
        self.keepalive = keepalive
        self.enable_get_stream = enable_get_stream
        #: tool name -> {argument: Mcp-Param suffix}, for the 2026-07-28 header check
        self.header_parameters = header_parameters
        self._live: dict[str, _Live] = {}
        self._tg: TaskGroup | None = None
        #: legacy sessions kept in a store that other replicas share (None: in this process)
        self.shared = shared
        self._replicated = None if shared is None else ReplicatedSessions(
            shared, serve, legacy_revisions=legacy_revisions, keepalive=keepalive,
            retry_ms=retry_ms, enable_get_stream=enable_get_stream,
            task_group=lambda: self._tg)
        #: the cancel scope class of the loop the lifespan runs in (see cancel_scope_type)
        self._scope_type: type[anyio.CancelScope] = anyio.CancelScope

    # ------------------------------------------------------------- lifecycle

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Own the task group that legacy sessions run in; end them all on exit."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self._scope_type = cancel_scope_type()
            if self.shared is not None:
                await self.shared.start(tg)
            else:
                tg.start_soon(self._expire_idle_sessions)
            try:
                yield
            finally:
                if self._replicated is not None:
                    await self._replicated.close_all()
                self._tg = None
                self._scope_type = anyio.CancelScope
                for live in self._live.values():
                    await live.stream.aclose()
                    live.scope.cancel()
                tg.cancel_scope.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._run_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = headers_of(scope)
        try:
            self.origin_policy.check(headers)
            method = scope["method"]
            if method == "POST":
                await self._post(headers, scope, receive, send)
            elif method == "GET":
                await self._get(headers, scope, receive, send)
            elif method == "DELETE":
                await self._delete(headers, scope, receive, send)
            else:
                raise HttpRefusal(405, "Method Not Allowed")
        except HttpRefusal as refusal:
            response = _refusal_response(refusal)
            if refusal.status == 405:
                response.headers["Allow"] = "GET, POST, DELETE"
            await response(scope, receive, send)

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        async with self.lifespan():
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
        await send({"type": "lifespan.shutdown.complete"})

    # ---------------------------------------------------------------- POST

    async def _read_body(self, headers: Mapping[str, str], receive: Receive) -> bytes:
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            raise HttpRefusal(413, "Content Too Large")
        message = await receive()
        if not message.get("more_body", False) and message["type"] == "http.request":
            body: bytes = message.get("body", b"")  # the whole body at once: the usual case
            if len(body) > self.max_body_bytes:
                raise HttpRefusal(413, "Content Too Large")
            return body
        chunks: list[bytes] = []
        size = 0
        while True:
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise HttpRefusal(413, "Content Too Large")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
            message = await receive()

    async def _post(self, headers: Mapping[str, str], scope: Scope, receive: Receive,
                    send: Send) -> None:
        if not accepts(headers.get("accept", ""), "application/json", "text/event-stream"):
            raise HttpRefusal(406, "Not Acceptable: Accept must list application/json and "
                                   "text/event-stream")
        content_type = headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise HttpRefusal(415, "Unsupported Media Type: send application/json")
        body = await self._read_body(headers, receive)
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            await _json(error_response(None, McpError(PARSE_ERROR, "Parse error")), 400)(
                scope, receive, send)
            return
        items = decoded if isinstance(decoded, list) else [decoded]
        ids: set[str | int] = set()
        methods: list[str] = []
        classified: list[Incoming] = []
        for item in items:
            try:
                incoming = classify(item)
            except EnvelopeError as exc:
                await _json(error_response(exc.request_id, exc), 400)(scope, receive, send)
                return
            classified.append(incoming)
            if type(incoming) is IncomingRequest:
                ids.add(incoming.id)
                methods.append(incoming.method)
        session_id = headers.get(SESSION_HEADER)
        context = asgi_context(TransportKind.STREAMABLE_HTTP, scope, headers,
                               session_id=session_id)
        if session_id is None and self._is_modern(headers, decoded):
            try:
                check_modern_headers(headers, decoded)
                self._check_param_headers(headers, decoded)
            except HttpRefusal as refusal:  # answer it with the request's id
                await _refusal_response(refusal, next(iter(ids), None))(scope, receive, send)
                return
            await self._post_modern(body, Classified(decoded, classified), ids, context, scope,
                                    receive, send)
            return
        await self._post_legacy(headers, session_id, body, Classified(decoded, classified), ids,
                                methods, context, scope, receive, send)

    def _check_param_headers(self, headers: Mapping[str, str], message: Any) -> None:
        if self.header_parameters is None or not isinstance(message, dict) \
                or message.get("method") != "tools/call":
            return
        params = message.get("params")
        if not isinstance(params, dict) or not isinstance(params.get("name"), str):
            return
        check_param_headers(headers, params.get("arguments"),
                            self.header_parameters(params["name"]))

    def _is_modern(self, headers: Mapping[str, str], message: Any) -> bool:
        """Whether a POST without a session is a stateless 2026-07-28 request
        (the era rule is ``revisions.is_modern_request``'s; a batch is legacy)."""
        declared = headers.get(VERSION_HEADER)
        if not isinstance(message, dict):
            return bool(self.modern_revisions) and declared in self.modern_revisions
        return is_modern_request(message.get("method"), message.get("params"),
                                 legacy=self.legacy_revisions, modern=self.modern_revisions,
                                 declared=declared)

    async def _post_modern(self, body: bytes, decoded: Any, ids: set[str | int],
                           context: TransportContext, scope: Scope, receive: Receive,
                           send: Send) -> None:
        if self.exchange is not None:
            if self._tg is not None:
                await self._exchange(self._tg, body, decoded, ids, context, scope, receive,
                                     send)
                return
            async with anyio.create_task_group() as tg:  # no lifespan: lend one of our own
                await self._exchange(tg, body, decoded, ids, context, scope, receive, send)
            return
        stream = HttpMessageStream()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.serve_modern, stream)
            if not ids:
                await stream.deliver(body, decoded, context=context)
                await Response(status_code=202)(scope, receive, send)
            else:
                channel = stream.open_channel(ids)
                await stream.deliver(body, decoded, context=context)
                await self._respond(channel, stream, scope, receive, send, {}, record=None,
                                    live=None)
            await stream.aclose()
            tg.cancel_scope.cancel()

    async def _exchange(self, spawner: TaskGroup, body: bytes, decoded: Any,
                        ids: set[str | int], context: TransportContext, scope: Scope,
                        receive: Receive, send: Send) -> None:
        """Run one stateless request in this task; answer as :class:`ExchangeResponse` says."""
        assert self.exchange is not None
        host = self._scope_type()
        response = ExchangeResponse(ids, scope, receive, send, spawner=spawner, host=host,
                                    keepalive=self.keepalive)
        if not ids:
            await response.finish()  # notifications only: 202 before they are handled
        try:  # the exchange enters ``host`` itself, if its request may need cancelling
            await self.exchange(body, decoded, response, spawner, scope=host,
                                transport=context)
        except BaseException:
            response.abandon()
            raise
        await response.finish()

