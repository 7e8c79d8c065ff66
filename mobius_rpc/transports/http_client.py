"""Client-side message streams for the network transports (Streamable HTTP, HTTP+SSE).

They let the same client runtime that speaks stdio speak HTTP: ``send`` turns
each message into a POST, and everything the server answers (a JSON body, an
SSE stream, the standalone GET stream) comes out of ``receive`` in arrival
order.  Each POST runs in its own task of the task group the stream is given,
so a long SSE answer never blocks the next request.

Streamable HTTP speaks through the lean keep-alive client of :mod:`.http11`
unless it is given an httpx client (OAuth flows bring their own), the
environment names a proxy for the URL, or ``MOBIUS_HTTP_CLIENT=httpx`` asks
for httpx; HTTP+SSE keeps httpx (it is not a hot path).
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import orjson
from anyio.abc import TaskGroup

from ..core.errors import INTERNAL_ERROR, McpError
from ..core.jsonrpc import error_response
from ..core.modern import META_PROTOCOL_VERSION
from ..framing.http import METHOD_HEADER, NAME_HEADER, SESSION_HEADER, VERSION_HEADER
from ..framing.param_headers import (
    InvalidHeaderAnnotation,
    encode_param_value,
    header_parameters,
)
from .http11 import Http11Client, Http11Error, ReadError, proxied
from .memory import receive_or_end

__all__ = ("StreamableHTTPClientStream", "HttpSseClientStream", "sse_events")

#: what a failed exchange raises, with either client
_HTTP_ERRORS = (httpx.HTTPError, Http11Error)
#: a connection lost mid-stream (resumable when the stream had event ids)
_DROPPED = (httpx.ReadError, httpx.RemoteProtocolError, ReadError)

_NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
#: server requests remembered with the request they serve (see related_requests)
_MAX_RELATED = 1024


@dataclass(slots=True)
class SseEvent:
    """One server-sent event; ``data`` may be empty (a priming event)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry_ms: int | None = None


async def sse_events(response: Any) -> AsyncIterator[SseEvent]:
    """Each SSE event of a streaming response, the empty ones included.

    Callers deliver only events with data, but every ``id`` counts: it is the
    position a dropped stream resumes from (``Last-Event-ID``).
    """
    current = SseEvent()
    data: list[str] = []
    seen = False
    async for line in response.aiter_lines():
        if line == "":
            if seen:
                current.data = "\n".join(data)
                yield current
            current, data, seen = SseEvent(), [], False
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            current.event, seen = value, True
        elif field == "data":
            data.append(value)
            seen = True
        elif field == "id":
            current.id, seen = value, True
        elif field == "retry" and value.isdigit():
            current.retry_ms, seen = int(value), True


@dataclass(slots=True)
class _StreamPosition:
    """How far one request's SSE stream got: the resumption point and whether it is done."""

    request_id: Any
    last_id: str | None = None
    retry_ms: int = 1000
    answered: bool = False

    def seen(self, event: SseEvent) -> None:
        if event.id is not None:
            self.last_id = event.id
        if event.retry_ms is not None:
            self.retry_ms = event.retry_ms

    def answers(self, data: str) -> bool:
        """Whether ``data`` is the response to our request (which ends the stream)."""
        if self.request_id is None or '"method"' in data:
            return False
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        return isinstance(decoded, dict) and decoded.get("id") == self.request_id


@contextmanager
def _dropped_stream_is_resumable(position: _StreamPosition) -> Iterator[None]:
    """A connection lost mid-stream is not an error while we can resume it."""
    try:
        yield
    except _DROPPED:
        if position.last_id is None:
            raise


class StreamableHTTPClientStream:
    """A client MessageStream over Streamable HTTP, legacy session or 2026-07-28."""

    def __init__(self, url: str, tg: TaskGroup, *, headers: dict[str, str] | None = None,
                 client: httpx.AsyncClient | Http11Client | None = None,
                 max_body_bytes: int = 4 * 1024 * 1024) -> None:
        self.url = url
        self.tg = tg
        self.headers = dict(headers or {})
        if client is None:
            client = lean_or_httpx(url, max_body_bytes)
        self.client: httpx.AsyncClient | Http11Client = client
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        #: the 2026-07-28 revision our requests declared (stateless use)
        self.modern_version: str | None = None
        self._send, self._receive = anyio.create_memory_object_stream[bytes](math.inf)
        self._get_started = False
        #: set when the server answers 404 for our session (it expired or restarted)
        self.session_expired = False
        #: how many times one request's dropped stream is reopened
        self.max_resumes = 5
        # tool name -> {argument: Mcp-Param suffix}, learnt from tools/list
        # results, so tools/call can mirror annotated arguments (2026-07-28).
        self._tool_headers: dict[str, dict[str, str]] = {}
        #: id of a server request -> id of our request on whose response stream it
        #: came (it serves that call); the session takes each entry once (bounded)
        self.related_requests: dict[Any, Any] = {}
        # Every POST and the GET run in their own task; closing cancels them
        # and waits, so no connection outlives the stream.
        self._tasks: set[anyio.CancelScope] = set()
        self._idle = anyio.Event()
        self._idle.set()

    def _spawn(self, func: Any, *args: Any) -> None:
        async def tracked() -> None:
            with anyio.CancelScope() as scope:
                self._tasks.add(scope)
                self._idle = anyio.Event() if self._idle.is_set() else self._idle
                try:
                    await func(*args)
                finally:
                    self._tasks.discard(scope)
                    if not self._tasks:
                        self._idle.set()

        self.tg.start_soon(tracked)

    async def receive(self) -> bytes:
        return await receive_or_end(self._receive)

    async def send(self, message: bytes) -> None:
        self._spawn(self._post, message)

    def send_nowait(self, message: bytes) -> bool:
        """:meth:`send` from synchronous code: every message is its own POST's task."""
        self._spawn(self._post, message)
        return True

    def headers_for(self, message: Any) -> dict[str, str]:
        """The headers this stream sends with ``message`` (the checker reuses them)."""
        headers = {"Accept": "application/json, text/event-stream",
                   "Content-Type": "application/json", **self.headers}
        if self.session_id:
            headers[SESSION_HEADER] = self.session_id
        raw = message.get("params") if isinstance(message, dict) else None
        params: dict[str, Any] = raw if isinstance(raw, dict) else {}
        meta = params.get("_meta")
        if isinstance(meta, dict) and META_PROTOCOL_VERSION in meta:
            # 2026-07-28: the headers restate what the body says.
            self.modern_version = str(meta[META_PROTOCOL_VERSION])
            headers[VERSION_HEADER] = self.modern_version
            headers[METHOD_HEADER] = str(message["method"])
            field = _NAMED.get(message["method"])
            if field and isinstance(params.get(field), str):
                headers[NAME_HEADER] = encode_param_value(params[field]) or ""
            if message["method"] == "tools/call":
                arguments = params.get("arguments")
                given = arguments if isinstance(arguments, dict) else {}
                for argument, suffix in self._tool_headers.get(str(params.get("name")), {}).items():
                    value = encode_param_value(given.get(argument))
                    if value is not None:
                        headers[f"Mcp-Param-{suffix}"] = value
        elif self.protocol_version:
            headers[VERSION_HEADER] = self.protocol_version
        elif self.modern_version:
            # a 2026-07-28 notification or response: no _meta of its own, but the
            # version header still tells the server which era it belongs to
            headers[VERSION_HEADER] = self.modern_version
            if isinstance(message, dict) and isinstance(message.get("method"), str):
                headers[METHOD_HEADER] = message["method"]
        return headers

    async def _delete_session(self, session_id: str) -> None:
        headers = {SESSION_HEADER: session_id, **self.headers}
        if isinstance(self.client, Http11Client):
            await self.client.request("DELETE", self.url, headers=headers)
        else:
            await self.client.delete(self.url, headers=headers)

    async def _post(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            message = None  # sent as is: the server's parse error comes back
        request_id = message.get("id") if isinstance(message, dict) and "method" in message \
            else None
        try:
            async with self.client.stream("POST", self.url, content=data,
                                          headers=self.headers_for(message)) as response:
                if SESSION_HEADER in response.headers and self.session_id is None:
                    self.session_id = response.headers[SESSION_HEADER]
                if response.status_code == 202:
                    return
                kind = response.headers.get("content-type", "")
                if response.status_code < 300 and kind.startswith("text/event-stream"):
                    position = _StreamPosition(request_id)
                    with _dropped_stream_is_resumable(position):
                        await self._read_stream(response, position)
                    if position.answered or request_id is None:
                        return
                    if position.last_id is None:
                        raise McpError(INTERNAL_ERROR, "the server ended the response stream "
                                                       "without an answer")
                    await self._resume(position)
                    return
                body = await response.aread()
                self._answer_body(request_id, response.status_code, kind, body)
        except (*_HTTP_ERRORS, McpError, ValueError) as exc:
            if request_id is not None:  # fail that request instead of hanging it
                error = exc if isinstance(exc, McpError) else McpError(
                    INTERNAL_ERROR, f"HTTP transport error: {type(exc).__name__}: {exc}")
                self._deliver(orjson.dumps(error_response(request_id, error)))

    def _answer_body(self, request_id: Any, status: int, kind: str, body: bytes) -> None:
        """A JSON answer; an error status becomes an error for ``request_id``."""
        decoded: Any = None
        if body and kind.startswith("application/json"):
            try:
                decoded = orjson.loads(body)
            except orjson.JSONDecodeError:
                decoded = None
        if status < 300 and decoded is not None:
            self._deliver(body)
            return
        if status == 404 and self.session_id is not None:
            self.session_expired = True  # the owner re-initializes (a new session)
        error = decoded.get("error") if isinstance(decoded, dict) else None
        if request_id is None:
            if isinstance(error, dict):  # e.g. a parse error: it answers no request
                self._deliver(body)
            return
        if isinstance(error, dict) and isinstance(error.get("code"), int):
            # The server's own JSON-RPC error, possibly without an id (HTTP
            # refusals are sent before the body is read): it answers this request.
            self._deliver(orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}))
            return
        raise McpError(INTERNAL_ERROR, f"HTTP {status} from the server",
                       {"httpStatus": status})

    async def _read_stream(self, response: Any, position: _StreamPosition) -> None:
        async for event in sse_events(response):
            position.seen(event)
            if event.data:
                if position.answers(event.data):
                    position.answered = True
                elif position.request_id is not None and '"method"' in event.data:
                    self._relate(event.data, position.request_id)
                self._deliver(event.data.encode())

    async def _resume(self, position: _StreamPosition) -> None:
        """Reopen a dropped (or server-closed) request stream with ``Last-Event-ID``.

        The server replays what came after that event, then goes on live; this
        repeats, after the server's ``retry`` delay, until the answer arrives.
        """
        for _ in range(self.max_resumes):
            await anyio.sleep(position.retry_ms / 1000)
            headers = {"Accept": "text/event-stream", **self.headers,
                       "Last-Event-ID": str(position.last_id)}
            if self.session_id:
                headers[SESSION_HEADER] = self.session_id
            if self.protocol_version:
                headers[VERSION_HEADER] = self.protocol_version
            async with self.client.stream("GET", self.url, headers=headers) as response:
                if response.status_code != 200:
                    body = await response.aread()
                    self._answer_body(position.request_id, response.status_code,
                                      response.headers.get("content-type", ""), body)
                    return
                with _dropped_stream_is_resumable(position):
                    await self._read_stream(response, position)
            if position.answered:
                return
        raise McpError(INTERNAL_ERROR, f"the answer did not arrive after "
                                       f"{self.max_resumes} stream resumptions")

    def _relate(self, data: str, request_id: Any) -> None:
        """Note which of our requests a server request on its stream serves."""
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if isinstance(message, dict) and "method" in message and "id" in message:
            related = self.related_requests
            if len(related) >= _MAX_RELATED:
                del related[next(iter(related))]  # the oldest, never taken
            related[message["id"]] = request_id

    def _deliver(self, payload: bytes) -> None:
        # Only a list of tools or a handshake answer teaches this stream something; the
        # session parses every message anyway, so the others are not parsed here too.
        if b'"tools"' in payload or b'"protocolVersion"' in payload:
            self._learn(payload)
        try:
            self._send.send_nowait(payload)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    def _learn(self, payload: bytes) -> None:
        try:
            decoded = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return  # the session answers the parse error
        result = decoded.get("result") if isinstance(decoded, dict) else None
        if isinstance(result, dict) and isinstance(result.get("tools"), list):
            self._learn_tool_headers(result["tools"])
        if isinstance(result, dict) and isinstance(result.get("protocolVersion"), str):
            self.protocol_version = result["protocolVersion"]
            if self.session_id and not self._get_started:
                self._get_started = True
                self._spawn(self._standalone)

    def _learn_tool_headers(self, tools: list[Any]) -> None:
        for tool in tools:
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                continue
            try:
                self._tool_headers[tool["name"]] = header_parameters(tool.get("inputSchema"))
            except InvalidHeaderAnnotation:
                self._tool_headers.pop(tool["name"], None)  # the session drops such tools

    async def _standalone(self) -> None:
        """The GET stream: server messages that belong to no request."""
        headers = {"Accept": "text/event-stream", **self.headers}
        if self.session_id:
            headers[SESSION_HEADER] = self.session_id
        try:
            async with self.client.stream("GET", self.url, headers=headers) as response:
                if response.status_code != 200:
                    return  # the server offers no standalone stream
                async for event in sse_events(response):
                    if event.data:
                        self._deliver(event.data.encode())
        except (*_HTTP_ERRORS, ValueError):
            return

    async def aclose(self) -> None:
        if self.session_id:
            try:
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await self._delete_session(self.session_id)
            except (*_HTTP_ERRORS, ValueError):
                pass
        for scope in list(self._tasks):
            scope.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await self._idle.wait()
            await self.client.aclose()
        self._send.close()
        self._receive.close()


def lean_or_httpx(url: str, max_body_bytes: int) -> httpx.AsyncClient | Http11Client:
    """The client a Streamable HTTP stream makes for itself (see the module docstring)."""
    if os.environ.get("MOBIUS_HTTP_CLIENT") == "httpx" or proxied(url):
        return httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None))
    return Http11Client(max_body_bytes=max_body_bytes)


class HttpSseClientStream:
    """A client MessageStream over the 2024-11-05 HTTP+SSE transport."""

    def __init__(self, sse_url: str, tg: TaskGroup, *, headers: dict[str, str] | None = None,
                 client: httpx.AsyncClient | None = None) -> None:
        self.sse_url = sse_url
        self.headers = dict(headers or {})
        self.tg = tg
        self.client = client or httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None))
        self._send, self._receive = anyio.create_memory_object_stream[bytes](math.inf)
        self._endpoint: str | None = None
        self._ready = anyio.Event()

    async def start(self) -> None:
        """Open the SSE stream and wait for the ``endpoint`` event."""
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()

        async def listen() -> None:
            with self._scope:
                await self._listen()
            self._stopped.set()

        self.tg.start_soon(listen)
        with anyio.fail_after(10):
            await self._ready.wait()
        if self._endpoint is None:
            raise McpError(INTERNAL_ERROR, "the server sent no endpoint event")

    async def _listen(self) -> None:
        try:
            async with self.client.stream("GET", self.sse_url, headers={
                    "Accept": "text/event-stream", **self.headers}) as response:
                if response.status_code != 200:
                    return  # no HTTP+SSE endpoint here: start() reports it
                async for event in sse_events(response):
                    if event.event == "endpoint" and event.data:
                        self._endpoint = str(httpx.URL(self.sse_url).join(event.data))
                        self._ready.set()
                    elif event.event == "message" and event.data:
                        self._send.send_nowait(event.data.encode())
        except httpx.HTTPError:
            pass  # the server went away: receive() now ends
        finally:
            self._ready.set()
            self._send.close()

    async def receive(self) -> bytes:
        return await receive_or_end(self._receive)

    async def send(self, message: bytes) -> None:
        assert self._endpoint is not None, "call start() first"
        response = await self.client.post(self._endpoint, content=message, headers={
            "Content-Type": "application/json", **self.headers})
        if response.status_code >= 400:
            raise anyio.BrokenResourceError

    async def aclose(self) -> None:
        self._scope.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await self._stopped.wait()
            await self.client.aclose()
        self._receive.close()
