"""POST, GET and DELETE of legacy Streamable HTTP sessions that replicas share.

The same exchanges as :mod:`.streamable_http`'s in-process sessions, with the
session's state in :class:`~.http_shared.SharedSessions`: a session this
process does not hold is taken up from its record, answers owed to another
replica are forwarded to it, and every SSE event is stored before it is sent
(read back through :meth:`SharedSessions.follow`), so any replica can resume
any stream.  Event ids are ``<stream>#<n>`` with ``n`` the store's session-wide
event id; streams are ``get`` (standalone) or ``<replica>.<k>`` (a POST's).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import anyio
import orjson
from anyio.abc import TaskGroup
from sse_starlette.event import ServerSentEvent
from sse_starlette.sse import EventSourceResponse
from starlette.types import Receive, Scope, Send

from ..core.jsonrpc import REFUSAL_HEAD, Classified, classify
from ..core.revisions import has_batches
from ..core.types import TransportContext
from ..framing.http import SESSION_HEADER, HttpRefusal, accepts, legacy_version_header
from ..storage.errors import StoreError
from .base import Serve
from .http_session import HttpMessageStream, ResponseChannel, send_whole, status_for
from .http_shared import GET_STREAM, Hosted, SharedSessions

__all__ = ("ReplicatedSessions",)

log = logging.getLogger("mobius_rpc.http")

_JSON = b"application/json"
_SSE_HEADERS = {"X-Accel-Buffering": "no"}


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


class ReplicatedSessions:
    """The legacy half of a Streamable HTTP transport whose sessions live in a store."""

    def __init__(self, shared: SharedSessions, serve: Serve, *,
                 legacy_revisions: tuple[str, ...], keepalive: float, retry_ms: int,
                 enable_get_stream: bool, task_group: Callable[[], TaskGroup | None]) -> None:
        self.shared = shared
        self.serve = serve
        self.legacy_revisions = legacy_revisions
        self.keepalive = keepalive
        self.retry_ms = retry_ms
        self.enable_get_stream = enable_get_stream
        self._task_group = task_group
        shared.end_local = self.end_here

    @property
    def _tg(self) -> TaskGroup:
        tg = self._task_group()
        if tg is None:
            raise HttpRefusal(503, "Service Unavailable: the transport's lifespan is not running")
        return tg

    # ------------------------------------------------------------ sessions

    def _host(self, session_id: str, record: Any, restored: bool) -> Hosted:
        shared = self.shared
        tg = self._tg  # 503 before anything is registered, without a lifespan
        stream = HttpMessageStream(unrouted_async=lambda message: self._standalone(
            session_id, message))
        stream.id_prefix = shared.id_prefix
        stream.session_id = session_id
        stream.restored = record if restored else None
        scope = anyio.CancelScope()
        now = time.time()
        hosted = Hosted(stream, scope, record, touched=now, active=now)
        shared.hosted[session_id] = hosted

        async def run() -> None:
            try:
                with scope:
                    await self.serve(stream)
            finally:
                if shared.hosted.get(session_id) is hosted:
                    del shared.hosted[session_id]

        tg.start_soon(run)
        return hosted

    async def _standalone(self, session_id: str, message: bytes) -> None:
        try:
            await self.shared.append(session_id, GET_STREAM, message)
        except StoreError as error:
            log.warning("session %s: a standalone message was lost: %s", session_id, error)

    async def _take_up(self, session_id: str) -> Hosted:
        lock = self.shared.lock(session_id)
        try:
            async with lock:
                hosted = self.shared.hosted.get(session_id)
                if hosted is not None:
                    return hosted
                record = await self.shared.load(session_id)
                if record is None:
                    raise HttpRefusal(404, "Not Found: unknown or expired session")
                log.info("session %s taken up from the store", session_id)
                return self._host(session_id, record, restored=True)
        finally:
            self.shared.unlock(session_id, lock)

    async def end_here(self, session_id: str) -> None:
        hosted = self.shared.hosted.pop(session_id, None)
        if hosted is not None:
            await hosted.stream.aclose()
            hosted.scope.cancel()

    async def close_all(self) -> None:
        for session_id in list(self.shared.hosted):
            await self.end_here(session_id)

    # ---------------------------------------------------------------- POST

    async def post(self, request_headers: Mapping[str, str], session_id: str | None,
                   body: bytes, decoded: Classified, ids: set[str | int], methods: list[str],
                   context: TransportContext, scope: Scope, receive: Receive,
                   send: Send) -> None:
        shared = self.shared
        headers: dict[str, str] = {}
        initializing = "initialize" in methods
        if session_id is None:
            if not initializing:
                raise HttpRefusal(400, "Bad Request: Mcp-Session-Id header is required")
            session_id = secrets.token_urlsafe(24)
            message = decoded.message
            params = message.get("params") if isinstance(message, dict) else None
            hosted = self._host(session_id, shared.new_record(session_id, params), False)
            headers[SESSION_HEADER] = session_id
            context = context.with_session(session_id)
        else:
            found = shared.hosted.get(session_id)
            hosted = found if found is not None else await self._take_up(session_id)
            if not initializing:
                legacy_version_header(request_headers, hosted.record.protocol_version,
                                      self.legacy_revisions)
            shared.seen(hosted)
        # a batch is refused whole where the revision has none: nothing to route then
        routable = not isinstance(decoded.message, list) or (
            hosted.record.protocol_version is not None
            and has_batches(hosted.record.protocol_version))
        owed: list[Any] = []
        if routable:
            here, owed = shared.split(session_id, decoded)
        if owed:
            await shared.forward(session_id, owed)
            if not here:
                await send_whole(send, b"", 202, None)
                return
            message = here if isinstance(decoded.message, list) else here[0]
            body = orjson.dumps(message)
            decoded = Classified(message, [classify(item) for item in here])
        stream = hosted.stream
        if not ids:
            await stream.deliver(body, decoded, context=context)
            await send_whole(send, b"", 202, None)
            return
        channel = stream.open_channel(ids)
        respond = (channel, hosted, initializing, scope, receive, send, headers)
        # As in http_local: the request is served in this task and answered
        # below, unless something must be written before its answer, when the
        # response is written from another task.
        elsewhere: anyio.Event | None = None

        def respond_elsewhere() -> None:
            nonlocal elsewhere
            elsewhere = anyio.Event()
            self._tg.start_soon(self._respond_then_set, elsewhere, respond)

        channel.on_early = respond_elsewhere
        try:
            await stream.deliver(body, decoded, inline=True, context=context)
        finally:
            channel.on_early = None
        if elsewhere is not None:
            await elsewhere.wait()
        else:
            await self._respond(*respond)
        if initializing and hosted.record.protocol_version is None:
            await self.end_here(session_id)  # initialize was refused: no session

    async def _respond_then_set(self, done: anyio.Event, respond: tuple[Any, ...]) -> None:
        try:
            await self._respond(*respond)
        except Exception:  # the task group is shared: never let one response end it
            log.exception("a Streamable HTTP response failed")
        finally:
            done.set()

    async def _respond(self, channel: ResponseChannel, hosted: Hosted, initializing: bool,
                       scope: Scope, receive: Receive, send: Send,
                       headers: dict[str, str]) -> None:
        """JSON when the first message is the whole answer, else a stored SSE stream."""
        stream = hosted.stream
        record = hosted.record
        polling = record.protocol_version == "2025-11-25"
        try:
            first = await channel.first(or_detached=polling)
        except anyio.EndOfStream:
            await send_whole(send, b"", 200, b"text/event-stream", _raw(headers))
            return
        if first is not None and initializing and record.protocol_version is None:
            version = _negotiated_version(first)
            if version is not None:
                await self.shared.initialized(hosted, version)
        if first is not None and not channel.pending and not channel.buffered:
            # legacy errors answer with 200, except a body refused as a whole (4xx)
            status = status_for(first) if first.startswith(REFUSAL_HEAD) else 200
            await send_whole(send, first, status, _JSON, _raw(headers))
            stream.close_channel(channel)
            return
        session_id = record.session_id
        name = self.shared.stream_name(hosted)
        marker = 0
        if first is None or hosted.record.protocol_version == "2025-11-25":
            # a priming event names the stream before its first message
            marker = await self.shared.append(session_id, name, b"")
        if first is not None:
            await self.shared.append(session_id, name, first)
        # the pump stores the rest even if this client goes away
        self._tg.start_soon(self._pump, channel, stream, session_id, name)
        events = self._events(session_id, name, 0, priming=marker or None,
                              stop=channel.detached)
        await EventSourceResponse(events, headers={**headers, **_SSE_HEADERS},
                                  ping=self.keepalive)(scope, receive, send)

    async def _pump(self, channel: ResponseChannel, stream: HttpMessageStream,
                    session_id: str, name: str) -> None:
        try:
            async for message in channel:
                await self.shared.append(session_id, name, message)
        except StoreError as error:
            log.warning("session %s: stream %s could not be stored: %s", session_id, name,
                        error)
        finally:
            stream.close_channel(channel)
            try:
                await self.shared.finish(session_id, name)
            except StoreError:
                pass

    async def _events(self, session_id: str, name: str, after: int, *,
                      priming: int | None = None, hosted: Hosted | None = None,
                      stop: anyio.Event | None = None) -> AsyncIterator[ServerSentEvent]:
        if priming is not None:
            yield ServerSentEvent("", id=f"{name}#{priming}", retry=self.retry_ms)
        async for event_id, data in self.shared.follow(session_id, name, after, stop=stop):
            if hosted is not None:
                hosted.get_position = event_id
            yield ServerSentEvent(data.decode(), id=f"{name}#{event_id}", event="message")

    # ---------------------------------------------------------- GET, DELETE

    async def get(self, headers: Mapping[str, str], scope: Scope, receive: Receive,
                  send: Send) -> None:
        session_id = headers.get(SESSION_HEADER)
        if session_id is None:
            raise HttpRefusal(405, "Method Not Allowed: GET needs an Mcp-Session-Id")
        found = self.shared.hosted.get(session_id)
        hosted = found if found is not None else await self._take_up(session_id)
        if not self.enable_get_stream:
            raise HttpRefusal(405, "Method Not Allowed: no standalone stream")
        if not accepts(headers.get("accept", ""), "text/event-stream"):
            raise HttpRefusal(406, "Not Acceptable: Accept must list text/event-stream")
        self.shared.seen(hosted)
        last_event = headers.get("last-event-id")
        if last_event is not None:
            name, after = await self.shared.resumable(session_id, last_event)
            events = self._events(session_id, name, after,
                                  hosted=hosted if name == GET_STREAM else None)
        else:
            if hosted.get_open:
                raise HttpRefusal(409, "Conflict: a standalone stream is already open")
            hosted.get_open = True
            # where the last standalone stream stopped, on whichever replica held it
            start = max(hosted.get_position, await self.shared.get_position(session_id))
            events = self._events(session_id, GET_STREAM, start, hosted=hosted)

        async def guarded() -> AsyncIterator[ServerSentEvent]:
            try:
                async for event in events:
                    yield event
            finally:
                if last_event is None:
                    hosted.get_open = False
                if hosted.get_position:
                    with anyio.CancelScope(shield=True):
                        await self.shared.save_get_position(session_id, hosted.get_position)

        await EventSourceResponse(guarded(), headers=_SSE_HEADERS,
                                  ping=self.keepalive)(scope, receive, send)

    async def delete(self, headers: Mapping[str, str], scope: Scope, receive: Receive,
                     send: Send) -> None:
        session_id = headers.get(SESSION_HEADER)
        if session_id is None:
            raise HttpRefusal(405, "Method Not Allowed: DELETE needs an Mcp-Session-Id")
        hosted = session_id in self.shared.hosted
        if not await self.shared.delete(session_id) and not hosted:
            raise HttpRefusal(404, "Not Found: unknown or expired session")
        await self.end_here(session_id)
        await send_whole(send, b"", 200, None)


def _negotiated_version(message: bytes) -> str | None:
    try:
        decoded = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(decoded, dict) or message.startswith(REFUSAL_HEAD):
        return None
    result = decoded.get("result")
    version = result.get("protocolVersion") if isinstance(result, dict) else None
    return version if isinstance(version, str) else None

