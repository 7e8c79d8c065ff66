"""A lean HTTP/1.1 client for the Streamable HTTP hot path: keep-alive
connections on anyio streams, nothing else.

Why not httpx there: a gateway forwarding one ``tools/call`` to a Streamable
HTTP upstream spent two thirds of its CPU inside httpx/httpcore (request
building, the pool's bookkeeping, per-response closing); the whole exchange
we need is one POST with a small JSON body answered by ``application/json``
(with ``Content-Length``) or ``text/event-stream`` (chunked or read to the
close).  This module does that and refuses the rest:

* redirects are not followed (the caller sees the 3xx status);
* the status line and headers are limited (``max_header_bytes``, a header
  count), a body by ``max_body_bytes``, one SSE line by the same limit;
* header names and values with CR, LF or NUL are refused (no injection);
* ``https`` goes through an :class:`ssl.SSLContext` (the one given, else one
  that trusts ``SSL_CERT_FILE``/``SSL_CERT_DIR`` or certifi's bundle as httpx
  does).

Connections are pooled per origin.  A connection goes back to the pool only
when its response was read to the end and neither side asked to close it; an
idle connection the server closed meanwhile is noticed before reuse (its
socket reads as ready), and a request whose reused connection ends before the
first byte of an answer is sent once more on a fresh one.  Proxies are not
spoken: :func:`proxied` tells the caller when the environment asks for one, so
that it keeps httpx there.
"""

from __future__ import annotations

import os
import re
import select
import ssl
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

from ..core.version import __version__

__all__ = ("Http11Client", "Http11Error", "Http11Response", "ProtocolError", "ReadError",
           "Headers", "proxied")

_LINE_END = re.compile(rb"\r\n|\r|\n")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_UNSAFE = re.compile(r"[\r\n\x00]")
_READ_SIZE = 65536
_USER_AGENT = f"mobius-rpc/{__version__}"


class Http11Error(Exception):
    """Any failure of an exchange (connection, protocol, limits)."""


class ReadError(Http11Error):
    """The connection failed or ended before the answer was complete."""


class ProtocolError(Http11Error):
    """The server's answer is not HTTP/1.1 we take (malformed, or over a limit)."""


def proxied(url: str) -> bool:
    """Whether the environment routes ``url`` through a proxy (``HTTP_PROXY`` ...)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


def default_ssl_context() -> ssl.SSLContext:
    """A verifying context with the trust store httpx would use."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if not cafile and not capath:
        try:
            import certifi
        except ImportError:
            return ssl.create_default_context()
        cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile or None, capath=capath or None)


class Headers(dict[str, str]):
    """Response headers, their names lower-cased; lookups ignore case."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


@dataclass(eq=False)
class _Connection:
    stream: anyio.abc.ByteStream
    buffer: bytearray = field(default_factory=bytearray)
    reused: bool = False

    async def fill(self) -> bool:
        """Read more into the buffer; False at the end of the stream."""
        try:
            data = await self.stream.receive(_READ_SIZE)
        except (anyio.EndOfStream, anyio.IncompleteRead):
            return False
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError,
                ssl.SSLError) as exc:
            raise ReadError(f"connection failed: {exc or type(exc).__name__}") from exc
        self.buffer += data
        return True

    def stale(self) -> bool:
        """Whether an idle connection can be read from (closed by the server, or
        it sent something unasked): either way it must not carry a request."""
        if self.buffer:
            return True
        sock = self.stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.stream.aclose()
            except (OSError, anyio.BrokenResourceError, ssl.SSLError):
                pass


class Http11Response:
    """One answer: status and headers at once; the body read on demand."""

    def __init__(self, connection: _Connection, status_code: int, headers: Headers,
                 keep_alive: bool, no_body: bool, max_body_bytes: int) -> None:
        self.status_code = status_code
        self.headers = headers
        self._connection = connection
        self._keep_alive = keep_alive
        self._max = max_body_bytes
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._remaining: int | None = None  # bytes left (Content-Length), None: other
        if no_body:
            self._remaining = 0
        elif not self._chunked and length is not None:
            if not length.isdigit():
                raise ProtocolError(f"bad Content-Length {length!r}")
            self._remaining = int(length)
        elif not self._chunked:
            self._keep_alive = False  # the body ends with the connection
        self._chunk_left = 0
        self._crlf_due = False
        self._done = self._remaining == 0
        #: whether the body was read to its end (the connection may be reused)
        self.complete = self._done

    @property
    def reusable(self) -> bool:
        return self.complete and self._keep_alive

    async def _next_bytes(self) -> bytes:
        """The next piece of the body (b"" at its end)."""
        if self._done:
            return b""
        conn = self._connection
        if self._remaining is not None:
            if not conn.buffer and not await conn.fill():
                raise ReadError("the server closed the connection mid-body")
            piece = bytes(conn.buffer[:self._remaining])
            del conn.buffer[:len(piece)]
            self._remaining -= len(piece)
            if not self._remaining:
                self._done = self.complete = True
            return piece
        if self._chunked:
            return await self._next_chunk()
        if not conn.buffer and not await conn.fill():
            self._done = self.complete = True
            return b""
        piece = bytes(conn.buffer)
        conn.buffer.clear()
        return piece

    async def _line(self) -> bytes:
        conn = self._connection
        while True:
            end = conn.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(conn.buffer[:end])
                del conn.buffer[:end + 2]
                return line
            if len(conn.buffer) > 4096:
                raise ProtocolError("a chunk header line is too long")
            if not await conn.fill():
                raise ReadError("the server closed the connection mid-body")

    async def _next_chunk(self) -> bytes:
        conn = self._connection
        if not self._chunk_left:
            if self._crlf_due:  # the end of the previous chunk, read only now so that
                if await self._line():  # its data was handed on without waiting for it
                    raise ProtocolError("a chunk is not followed by CRLF")
                self._crlf_due = False
            size_line = (await self._line()).split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size_line):
                raise ProtocolError("bad chunk size")
            self._chunk_left = int(size_line, 16)
            if not self._chunk_left:
                while await self._line():  # trailers, up to the blank line
                    pass
                self._done = self.complete = True
                return b""
        if not conn.buffer and not await conn.fill():
            raise ReadError("the server closed the connection mid-body")
        piece = bytes(conn.buffer[:self._chunk_left])
        del conn.buffer[:len(piece)]
        self._chunk_left -= len(piece)
        self._crlf_due = not self._chunk_left
        return piece

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        while piece := await self._next_bytes():
            yield piece

    async def aread(self) -> bytes:
        """The whole body (at most ``max_body_bytes``)."""
        body = bytearray()
        async for piece in self.aiter_bytes():
            body += piece
            if len(body) > self._max:
                raise ProtocolError(f"the response body exceeds {self._max} bytes")
        return bytes(body)

    async def aiter_lines(self) -> AsyncIterator[str]:
        """The body's lines (for ``text/event-stream``): split at CRLF, LF or CR,
        each at most ``max_body_bytes`` long."""
        pending = b""
        async for piece in self.aiter_bytes():
            pending += piece
            start = 0
            for match in _LINE_END.finditer(pending):
                if match.group() == b"\r" and match.end() == len(pending):
                    break  # a CR at the end may be the first half of a CRLF
                yield pending[start:match.start()].decode("utf-8", "replace")
                start = match.end()
            pending = pending[start:]
            if len(pending) > self._max:
                raise ProtocolError(f"an event-stream line exceeds {self._max} bytes")
        if pending.endswith(b"\r"):
            pending = pending[:-1]
            yield pending.decode("utf-8", "replace")
        elif pending:
            yield pending.decode("utf-8", "replace")


class Http11Client:
    """Keep-alive HTTP/1.1 connections per origin; see the module docstring."""

    def __init__(self, *, headers: dict[str, str] | None = None,
                 max_connections: int = 100, max_idle: int = 20,
                 max_header_bytes: int = 64 * 1024, max_headers: int = 100,
                 max_body_bytes: int = 4 * 1024 * 1024, connect_timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.headers = dict(headers or {})
        self.max_connections = max_connections
        self.max_idle = max_idle
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_body_bytes = max_body_bytes
        self.connect_timeout = connect_timeout
        self._ssl_context = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open = 0
        self._freed: anyio.Event | None = None
        self._closed = False
        #: connections opened so far (tests check keep-alive with it)
        self.connections_opened = 0

    # ------------------------------------------------------------ connections

    async def _connect(self, scheme: str, host: str, port: int) -> _Connection:
        self._open += 1
        try:
            with anyio.fail_after(self.connect_timeout):
                stream: anyio.abc.ByteStream = await anyio.connect_tcp(host, port)
                if scheme == "https":
                    if self._ssl_context is None:
                        self._ssl_context = default_ssl_context()
                    try:
                        stream = await TLSStream.wrap(stream, hostname=host,
                                                      ssl_context=self._ssl_context,
                                                      standard_compatible=False)
                    except BaseException:
                        await _Connection(stream).aclose()
                        raise
        except TimeoutError:
            self._release_slot()
            raise ReadError(f"connecting to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError, anyio.BrokenResourceError) as exc:
            self._release_slot()
            raise ReadError(f"cannot connect to {host}:{port}: {exc}") from exc
        except BaseException:
            self._release_slot()
            raise
        self.connections_opened += 1
        return _Connection(stream)

    def _release_slot(self) -> None:
        self._open -= 1
        self._wake()

    def _wake(self) -> None:
        """Tell requests waiting for a connection that one is free (idle or closed)."""
        if self._freed is not None:
            self._freed.set()
            self._freed = None

    async def _discard(self, connection: _Connection) -> None:
        self._release_slot()
        await connection.aclose()

    async def _take(self, key: tuple[str, str, int]) -> _Connection:
        while True:
            idle = self._idle.get(key)
            while idle:
                connection = idle.pop()
                if not connection.stale():
                    connection.reused = True
                    return connection
                await self._discard(connection)
            if self._open < self.max_connections:
                return await self._connect(*key)
            other = next((c for c in self._idle.values() if c), None)
            if other is not None:  # an idle one of another origin makes room
                await self._discard(other.pop())
                continue
            if self._freed is None:
                self._freed = anyio.Event()
            await self._freed.wait()

    async def _give_back(self, key: tuple[str, str, int], connection: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if self._closed or len(idle) >= self.max_idle:
            await self._discard(connection)
        else:
            idle.append(connection)
            self._wake()

    # --------------------------------------------------------------- requests

    def _head(self, method: str, target: str, host: str, headers: dict[str, str],
              length: int) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
        merged: dict[str, tuple[str, str]] = {}  # later sources win, whatever the case
        for source in ({"User-Agent": _USER_AGENT}, self.headers, headers):
            merged.update((name.lower(), (name, value)) for name, value in source.items())
        for name, value in merged.values():
            if _UNSAFE.search(name) or _UNSAFE.search(value) or ":" in name:
                raise ValueError(f"header {name!r} has a character that is not allowed")
            lines.append(f"{name}: {value}")
        if method not in ("GET", "HEAD", "DELETE") or length:
            lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _read_head(self, connection: _Connection, method: str) -> Http11Response:
        while True:  # 1xx answers come before the real one
            end = -1
            while True:
                end = connection.buffer.find(b"\r\n\r\n")
                if end >= 0:
                    break
                if len(connection.buffer) > self.max_header_bytes:
                    raise ProtocolError(f"the response headers exceed "
                                        f"{self.max_header_bytes} bytes")
                if not await connection.fill():
                    raise ReadError("the server closed the connection without an answer")
            if end > self.max_header_bytes:
                raise ProtocolError(f"the response headers exceed {self.max_header_bytes} bytes")
            head = bytes(connection.buffer[:end]).decode("latin-1")
            del connection.buffer[:end + 4]
            status_line, *header_lines = head.split("\r\n")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() \
                    or len(parts[1]) != 3:
                raise ProtocolError(f"bad status line {status_line[:80]!r}")
            if len(header_lines) > self.max_headers:
                raise ProtocolError(f"more than {self.max_headers} response headers")
            headers = Headers()
            for line in header_lines:
                name, sep, value = line.partition(":")
                if not sep or not name or name != name.strip():
                    raise ProtocolError(f"bad header line {line[:80]!r}")
                name = name.lower()
                value = value.strip()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            status = int(parts[1])
            if 100 <= status < 200 and status != 101:
                continue
            connection_header = headers.get("connection", "").lower()
            keep_alive = parts[0] == "HTTP/1.1" and "close" not in connection_header
            no_body = method == "HEAD" or status in (204, 304)
            return Http11Response(connection, status, headers, keep_alive, no_body,
                                  self.max_body_bytes)

    @asynccontextmanager
    async def stream(self, method: str, url: str, *, content: bytes = b"",
                     headers: dict[str, str] | None = None
                     ) -> AsyncIterator[Http11Response]:
        """Send one request; the answer's status and headers, its body to read.

        Leaving the block returns the connection to the pool when the body was
        read to its end, else closes it.
        """
        if self._closed:
            raise ReadError("the client is closed")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, parts.hostname, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = port == (443 if parts.scheme == "https" else 80)
        host = parts.hostname if default_port else f"{parts.hostname}:{port}"
        if ":" in parts.hostname:  # IPv6 literal
            host = f"[{parts.hostname}]" + ("" if default_port else f":{port}")
        message = self._head(method, target, host, headers or {}, len(content)) + content
        for attempt in (1, 2):
            connection = await self._take(key)
            try:
                try:
                    await connection.stream.send(message)
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError,
                        ssl.SSLError) as exc:
                    raise ReadError(f"connection failed: {exc}") from exc
                response = await self._read_head(connection, method)
            except ReadError:
                await self._discard(connection)
                # a kept-alive connection the server closed just as we sent: once more
                if attempt == 1 and connection.reused and not connection.buffer:
                    continue
                raise
            except BaseException:
                await self._discard(connection)
                raise
            break
        try:
            yield response
        except BaseException:
            await self._discard(connection)
            raise
        if not response.complete and response._remaining is not None \
                and response._remaining <= _READ_SIZE:
            try:
                with anyio.move_on_after(1):
                    await response.aread()  # a small unread body: drain it to keep the line
            except Http11Error:
                pass
        if response.reusable:
            await self._give_back(key, connection)
        else:
            await self._discard(connection)

    async def request(self, method: str, url: str, *, content: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[Http11Response, bytes]:
        """Send one request and read its whole answer."""
        async with self.stream(method, url, content=content, headers=headers) as response:
            body = await response.aread()
        return response, body

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their exchange ends."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                await self._discard(connection)
