"""Legacy Streamable HTTP sessions kept in this process (the default, and fastest).

Split from :mod:`.streamable_http`, which frames HTTP for both eras: this is
the legacy half when no store is shared.  A session's runtime lives in the
transport's task group; its record (plain data) is in a :class:`SessionStore`,
its SSE events in the transport's :class:`~.event_store.StreamHub`, so a
client that loses a stream resumes it with GET and ``Last-Event-ID``.  Idle
sessions expire.  (Replicas sharing sessions through a store use
:mod:`.http_replicated` instead.)
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import orjson
from anyio.abc import TaskGroup
from sse_starlette.event import ServerSentEvent
from sse_starlette.sse import EventSourceResponse
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..core.errors import INVALID_REQUEST, McpError
from ..core.jsonrpc import REFUSAL_HEAD, Classified
from ..core.types import TransportContext
from ..framing.http import SESSION_HEADER, HttpRefusal, accepts, legacy_version_header
from .base import Serve
from .event_store import StreamHub, is_sequence_number, parse_event_id
from .http_replicated import ReplicatedSessions
from .http_session import HttpMessageStream, ResponseChannel, send_whole, status_for

__all__ = ("LocalSessions", "SessionRecord", "SessionStore", "MemorySessionStore")

log = logging.getLogger("mobius_rpc.http")

_JSON = b"application/json"


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


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """Response headers as ASGI wants them."""
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


class LocalSessions:
    """The in-process legacy sessions of :class:`~.streamable_http.StreamableHTTPTransport`
    (a base class of it: these methods use the transport's settings)."""

    serve: Serve
    legacy_revisions: tuple[str, ...]
    store: SessionStore
    hub: StreamHub
    retry_ms: int
    session_idle_timeout: float
    keepalive: float
    enable_get_stream: bool
    _live: dict[str, _Live]
    _tg: TaskGroup | None
    _replicated: ReplicatedSessions | None

    async def _expire_idle_sessions(self) -> None:
        while True:
            await anyio.sleep(min(60.0, self.session_idle_timeout / 4))
            for session_id in self.store.idle_since(time.time() - self.session_idle_timeout):
                log.info("session %s expired after inactivity", session_id)
                await self._end_session(session_id)


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
