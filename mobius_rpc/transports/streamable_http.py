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

Session records are plain data in a :class:`SessionStore`; only the live
stream of a session is kept in the process that serves it.  Run it directly
under an ASGI server (its lifespan opens the task group), or enter
:meth:`StreamableHTTPTransport.lifespan` from the parent application.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import orjson
from anyio.abc import TaskGroup
from sse_starlette.event import ServerSentEvent
from sse_starlette.sse import EventSourceResponse
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..core.errors import INVALID_REQUEST, PARSE_ERROR, McpError
from ..core.jsonrpc import (
    REFUSAL_HEAD,
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
    legacy_version_header,
)
from ..framing.param_headers import check_param_headers
from .asgi_context import asgi_context, headers_of
from .base import Serve, cancel_scope_type
from .event_store import (
    EventStore,
    MemoryEventStore,
    StreamHub,
    is_sequence_number,
    parse_event_id,
)
from .http_exchange import ExchangeResponse
from .http_replicated import ReplicatedSessions
from .http_session import HttpMessageStream, ResponseChannel, send_whole, status_for
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


@dataclass(slots=True)
class SessionRecord:
    """What is known about a legacy HTTP session, as plain data."""

    session_id: str
    created: float
    last_seen: float
    protocol_version: str | None = None


class SessionStore(Protocol):
    def get(self, session_id: str) -> SessionRecord | None: ...
    def put(self, record: SessionRecord) -> None: ...
    def delete(self, session_id: str) -> None: ...
    def idle_since(self, cutoff: float) -> list[str]: ...


@dataclass
class MemorySessionStore:
    records: dict[str, SessionRecord] = field(default_factory=dict)

    def get(self, session_id: str) -> SessionRecord | None:
        return self.records.get(session_id)

    def put(self, record: SessionRecord) -> None:
        self.records[record.session_id] = record

    def delete(self, session_id: str) -> None:
        self.records.pop(session_id, None)

    def idle_since(self, cutoff: float) -> list[str]:
        return [sid for sid, r in self.records.items() if r.last_seen < cutoff]


@dataclass(eq=False)
class _Live:
    stream: HttpMessageStream
    scope: anyio.CancelScope
    streams_opened: int = 0
    get_open: bool = False
    get_position: int = 0  # the last standalone event a GET delivered


_JSON = b"application/json"


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """Response headers as ASGI wants them."""
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _refusal_response(refusal: HttpRefusal, request_id: Any = None) -> Response:
    error = refusal.error or McpError(INVALID_REQUEST, refusal.reason)
    return _json(error_response(request_id, error), refusal.status)


class StreamableHTTPTransport:
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

    async def _expire_idle_sessions(self) -> None:
        while True:
            await anyio.sleep(min(60.0, self.session_idle_timeout / 4))
            for session_id in self.store.idle_since(time.time() - self.session_idle_timeout):
                log.info("session %s expired after inactivity", session_id)
                await self._end_session(session_id)

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

    async def _post_legacy(self, request_headers: Mapping[str, str], session_id: str | None,
                           body: bytes, decoded: Classified, ids: set[str | int],
                           methods: list[str], context: TransportContext,
                           scope: Scope, receive: Receive, send: Send) -> None:
        if self._replicated is not None:
            await self._replicated.post(request_headers, session_id, body, decoded, ids,
                                        methods, context, scope, receive, send)
            return
        headers: dict[str, str] = {}
        if session_id is None:
            if "initialize" not in methods:
                raise HttpRefusal(400, "Bad Request: Mcp-Session-Id header is required")
            session_id = await self._start_session()
            headers[SESSION_HEADER] = session_id
            context = context.with_session(session_id)
        record = self.store.get(session_id)
        live = self._live.get(session_id)
        if record is None or live is None:
            raise HttpRefusal(404, "Not Found: unknown or expired session")
        if "initialize" not in methods:
            legacy_version_header(request_headers, record.protocol_version,
                                  self.legacy_revisions)
        record.last_seen = time.time()
        self.store.put(record)
        if not ids:
            await live.stream.deliver(body, decoded, context=context)
            await Response(status_code=202)(scope, receive, send)
            return
        channel = live.stream.open_channel(ids)
        respond = (channel, live.stream, scope, receive, send, headers)
        # The request is served in this task (saving a task and two switches)
        # and the answer written below; should anything have to be written
        # before it is answered, the response is written from another task.
        elsewhere: anyio.Event | None = None

        def respond_elsewhere() -> None:
            nonlocal elsewhere
            elsewhere = anyio.Event()
            assert self._tg is not None
            self._tg.start_soon(self._respond_then_set, elsewhere, respond, record, live)

        channel.on_early = respond_elsewhere
        try:
            await live.stream.deliver(body, decoded, inline=True, context=context)
        finally:
            channel.on_early = None
        if elsewhere is not None:
            await elsewhere.wait()
        else:
            await self._respond(*respond, record=record, live=live)
        if "initialize" in methods and record.protocol_version is None:
            await self._end_session(session_id)  # initialize was refused: no session

    async def _start_session(self) -> str:
        if self._tg is None:
            raise HttpRefusal(503, "Service Unavailable: the transport's lifespan is not running")
        session_id = secrets.token_urlsafe(24)
        standalone = f"{session_id}.get"

        def to_standalone(message: bytes) -> None:
            self.hub.append(session_id, standalone, message)

        stream = HttpMessageStream(to_standalone)
        self.hub.open(session_id, standalone)
        scope = anyio.CancelScope()
        self._live[session_id] = _Live(stream, scope)
        now = time.time()
        self.store.put(SessionRecord(session_id, now, now))

        async def run() -> None:
            with scope:
                await self.serve(stream)
            self._live.pop(session_id, None)
            self.store.delete(session_id)
            self.hub.drop(session_id)

        self._tg.start_soon(run)
        return session_id

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

    async def _respond_then_set(self, done: anyio.Event, respond: tuple[Any, ...],
                                record: SessionRecord, live: _Live) -> None:
        try:
            await self._respond(*respond, record=record, live=live)
        except Exception:  # the task group is shared: never let one response end it
            log.exception("a Streamable HTTP response failed")
        finally:
            done.set()

    async def _respond(self, channel: ResponseChannel, stream: HttpMessageStream,
                       scope: Scope, receive: Receive, send: Send,
                       headers: dict[str, str], *, record: SessionRecord | None,
                       live: _Live | None) -> None:
        """Answer a POST: JSON when the first message settles it, else an SSE stream.

        A legacy session's SSE stream is stored as it is produced (``live`` is
        its session), so a client that loses it can resume it with GET and
        ``Last-Event-ID``; a stateless request's stream is not resumable.
        """
        modern = live is None
        polling = record is not None and record.protocol_version == "2025-11-25"
        try:
            first = await channel.first(or_detached=polling)
        except anyio.EndOfStream:
            # No answer will come (the request was cancelled, or the session
            # ended): an event stream with no events says so.
            await send_whole(send, b"", 200, b"text/event-stream",
                             _raw(headers))
            return
        if first is None and live is not None and record is not None:
            # Closed by the server before anything was sent: a priming event
            # only, and the client picks everything up with GET.
            live.streams_opened += 1
            session_id = record.session_id
            name = f"{session_id}.{live.streams_opened}"
            self.hub.open(session_id, name)
            assert self._tg is not None
            self._tg.start_soon(self._pump, channel, stream, session_id, name)
            await EventSourceResponse(self._follow(session_id, name, 0, priming=True,
                                                   stop=channel.detached),
                                      headers={**headers, "X-Accel-Buffering": "no"},
                                      ping=self.keepalive)(scope, receive, send)
            return
        assert first is not None
        if record is not None and record.protocol_version is None:
            record.protocol_version = _negotiated_version(first)
            self.store.put(record)
        if not channel.pending and not channel.buffered:
            # the first message was the (whole) answer: nothing else is waiting.
            # Legacy errors answer with 200, except a body refused as a whole (4xx).
            status = status_for(first) if modern or first.startswith(REFUSAL_HEAD) else 200
            await send_whole(send, first, status, _JSON,
                             _raw(headers))
            stream.close_channel(channel)
            return

        if live is not None and record is not None:
            live.streams_opened += 1
            session_id = record.session_id
            name = f"{session_id}.{live.streams_opened}"
            self.hub.append(session_id, name, first)
            assert self._tg is not None
            # The pump stores the rest even if this client goes away.
            self._tg.start_soon(self._pump, channel, stream, session_id, name)
            priming = record.protocol_version == "2025-11-25"
            await EventSourceResponse(self._follow(session_id, name, 0, priming=priming,
                                                   stop=channel.detached),
                                      headers={**headers, "X-Accel-Buffering": "no"},
                                      ping=self.keepalive)(scope, receive, send)
            return

        async def events() -> AsyncIterator[ServerSentEvent]:
            try:
                yield ServerSentEvent(first.decode(), event="message")
                async for message in channel:
                    yield ServerSentEvent(message.decode(), event="message")
            finally:
                stream.close_channel(channel)

        await EventSourceResponse(events(), headers={**headers, "X-Accel-Buffering": "no"},
                                  ping=self.keepalive)(scope, receive, send)

    async def _pump(self, channel: ResponseChannel, stream: HttpMessageStream,
                    session_id: str, name: str) -> None:
        try:
            async for message in channel:
                self.hub.append(session_id, name, message)
        finally:
            stream.close_channel(channel)
            self.hub.finish(session_id, name)

    async def _follow(self, session_id: str, name: str, after: int, *, priming: bool = False,
                      live: _Live | None = None,
                      stop: anyio.Event | None = None) -> AsyncIterator[ServerSentEvent]:
        """SSE events of a stored stream after ``after``, live until it finishes."""
        if priming:
            # 2025-11-25: an id (and no data) first, so the client can always
            # resume, and how long to wait before reconnecting.
            yield ServerSentEvent("", id=f"{name}#{after}", retry=self.retry_ms)
        async for event_id, data in self.hub.follow(session_id, name, after, stop=stop):
            if live is not None:
                parsed = parse_event_id(event_id)
                live.get_position = parsed[1] if parsed else live.get_position
            yield ServerSentEvent(data.decode(), id=event_id, event="message")

    # ---------------------------------------------------------- GET, DELETE

    async def _get(self, headers: Mapping[str, str], scope: Scope, receive: Receive,
                   send: Send) -> None:
        if self._replicated is not None:
            await self._replicated.get(headers, scope, receive, send)
            return
        session_id = headers.get(SESSION_HEADER)
        if session_id is None:
            # No session: nothing to stream (and 2026-07-28 has no GET at all).
            raise HttpRefusal(405, "Method Not Allowed: GET needs an Mcp-Session-Id")
        live = self._live.get(session_id)
        if live is None:
            raise HttpRefusal(404, "Not Found: unknown or expired session")
        if not self.enable_get_stream:
            raise HttpRefusal(405, "Method Not Allowed: no standalone stream")
        if not accepts(headers.get("accept", ""), "text/event-stream"):
            raise HttpRefusal(406, "Not Acceptable: Accept must list text/event-stream")
        last_event = headers.get("last-event-id")
        if last_event is not None:
            # Resume the stream that event belongs to, and only that stream.
            name, after = self._resumable(session_id, live, last_event)
            events = self._follow(session_id, name, after,
                                  live=live if name.endswith(".get") else None)
        else:
            if live.get_open:
                raise HttpRefusal(409, "Conflict: a standalone stream is already open")
            events = self._follow(session_id, f"{session_id}.get", live.get_position,
                                  live=live)
            live.get_open = True

        async def guarded() -> AsyncIterator[ServerSentEvent]:
            try:
                async for event in events:
                    yield event
            finally:
                if last_event is None:
                    live.get_open = False

        await EventSourceResponse(guarded(), headers={"X-Accel-Buffering": "no"},
                                  ping=self.keepalive)(scope, receive, send)

    def _resumable(self, session_id: str, live: _Live, last_event: str) -> tuple[str, int]:
        """(stream, seq) to resume after ``Last-Event-ID``, or why it cannot be.

        An id this session never issued is a bad request (400).  One whose
        stream the event store no longer holds from there on (its retention
        bounds evicted it) is 410 Gone, with a JSON-RPC error saying so; not
        404, which tells a client its session is gone and that it must start
        a new one, while this session lives on and its other streams resume.
        """
        parsed = parse_event_id(last_event)
        suffix = parsed[0].removeprefix(f"{session_id}.") if parsed is not None else ""
        issued = parsed is not None and suffix != parsed[0] and (suffix == "get" or (
            is_sequence_number(suffix) and 1 <= int(suffix) <= live.streams_opened))
        if parsed is None or not issued:
            raise HttpRefusal(400, "Bad Request: unknown Last-Event-ID")
        name, after = parsed
        store = self.hub.store
        if store.after(session_id, name, after) is not None:
            return name, after
        span = store.span(session_id, name)
        if span is not None and after > span[1]:
            raise HttpRefusal(400, "Bad Request: Last-Event-ID names an event never sent")
        bounds = store.retention
        reason = (f"Gone: the stream of Last-Event-ID {last_event} is no longer retained "
                  f"(each session keeps its last {bounds.max_events} events, "
                  f"{bounds.max_bytes} bytes, {bounds.max_age:g} s); it cannot be replayed")
        raise HttpRefusal(410, reason, McpError(INVALID_REQUEST, reason, {
            "lastEventId": last_event, "retained": False}))

    async def _delete(self, headers: Mapping[str, str], scope: Scope, receive: Receive,
                      send: Send) -> None:
        if self._replicated is not None:
            await self._replicated.delete(headers, scope, receive, send)
            return
        session_id = headers.get(SESSION_HEADER)
        if session_id is None:
            raise HttpRefusal(405, "Method Not Allowed: DELETE needs an Mcp-Session-Id")
        if session_id not in self._live:
            raise HttpRefusal(404, "Not Found: unknown or expired session")
        await self._end_session(session_id)
        await Response(status_code=200)(scope, receive, send)

    async def _end_session(self, session_id: str) -> None:
        live = self._live.pop(session_id, None)
        self.store.delete(session_id)
        self.hub.drop(session_id)
        if live is not None:
            await live.stream.aclose()
            live.scope.cancel()


def _negotiated_version(message: bytes) -> str | None:
    try:
        decoded = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    result = decoded.get("result") if isinstance(decoded, dict) else None
    version = result.get("protocolVersion") if isinstance(result, dict) else None
    return version if isinstance(version, str) else None
