"""``Client``: one connection to one MCP server, on any transport, in either era.

What it adds to :class:`~mobius_rpc.client.session.ClientSession` is ownership
of everything around the protocol:

* **its own task.**  The transport, the receive loop and the child process
  live in a background task that the client starts and stops itself, so a
  client can be opened in one task and closed in another, kept in a pool, or
  closed while calls are in flight (they fail with :class:`ConnectionClosedError`
  naming the server).  No cancel scope is ever entered in one task and left in
  another.
* **the era probe.**  Unless a revision is pinned, the client asks
  ``server/discover`` first (2026-07-28); any error or silence means a legacy
  server, and the same connection goes on with ``initialize``.  Over HTTP a
  server that refuses the Streamable HTTP handshake with 400/404/405 is tried
  once more as the older HTTP+SSE transport at the same URL.
* **recovery.**  A Streamable HTTP session the server no longer knows (404) is
  re-established and the call retried once; a dropped response stream is
  resumed by the stream itself with ``Last-Event-ID``.  :meth:`reconnect`
  starts over after the server died.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..core.errors import (
    INTERNAL_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    ConnectionClosedError,
    McpError,
)
from ..core.limits import Limits
from ..core.revisions import LATEST_LEGACY, LEGACY_REVISIONS, MODERN_REVISIONS, Era
from ..core.version import __version__
from ..framing.param_headers import InvalidHeaderAnnotation, header_parameters
from ..runtime.session import ProgressCallback
from ..transports.http_client import StreamableHTTPClientStream
from ..transports.process import ProcessTransport
from .background import spawn_background
from .session import Callback, CallHandlers, ClientSession, RequestHelpers, RootsCallback
from .targets import ConnectError, HttpTarget, Target, target_from_url

__all__ = ("Client", "ClientState", "ConnectError")


class ClientState(StrEnum):
    """Where a :class:`Client` is in its life (a ``str``: health reports show it as is)."""

    #: not connected yet (or reset by ``reconnect``)
    IDLE = "idle"
    CONNECTING = "connecting"
    READY = "ready"
    #: we are closing the connection
    CLOSING = "closing"
    #: the server went away, or connecting failed; ``connect`` tries again
    DISCONNECTED = "disconnected"
    #: ``aclose`` was called: the client cannot be used again
    CLOSED = "closed"

log = logging.getLogger("mobius_rpc.client")

_MAX_PAGES = 1000


class Client(RequestHelpers):
    """A connection to one MCP server; ``async with Client(target) as client: ...``.

    ``target`` is a :class:`StdioTarget`, an :class:`HttpTarget` or a URL.
    ``revision`` pins a protocol revision (no probe).  ``sampling``,
    ``elicitation`` and ``roots`` answer the server's requests (legacy) and its
    input requests (2026-07-28, answered and retried transparently).
    """

    def __init__(self, target: Target | str, *, label: str | None = None,
                 revision: str | None = None, sampling: Callback | None = None,
                 elicitation: Callback | None = None, roots: RootsCallback | None = None,
                 on_notification: Callable[[str, dict[str, Any]], Any] | None = None,
                 timeout: float = 60.0, connect_timeout: float = 30.0,
                 probe_timeout: float = 5.0, limits: Limits | None = None,
                 validate: bool = True, name: str = "mobius-client",
                 version: str = __version__,
                 on_disconnect: Callable[[Client], None] | None = None) -> None:
        self.target: Target = target_from_url(target) if isinstance(target, str) else target
        if revision is not None and revision not in LEGACY_REVISIONS + MODERN_REVISIONS:
            raise ValueError(f"unknown protocol revision {revision!r}")
        self.label = label or self.target.describe()
        self.revision = revision
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.probe_timeout = probe_timeout
        self.limits = limits or Limits()
        self._session_options: dict[str, Any] = dict(
            name=name, version=version, sampling=sampling, elicitation=elicitation,
            roots=roots, on_notification=on_notification, limits=self.limits,
            validate=validate)
        self.state = ClientState.IDLE
        self._http_refused = False
        self.last_error: str | None = None
        self._session: ClientSession | None = None
        self._stream: Any = None
        self._stop: anyio.Event | None = None
        self._stopped: anyio.Event | None = None
        self._lock = anyio.Lock()
        #: called (in the connection's task) when the server goes away on its own
        self.on_disconnect = on_disconnect

    # ------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def connect(self, tg: TaskGroup | None = None) -> Client:
        """Open the transport and settle the era; idempotent while connected.

        The connection runs in ``tg`` when given, else in a background task of
        its own (so the caller's task may end before the client is closed).
        """
        async with self._lock:
            if self.state is ClientState.READY:
                return self
            if self.state is ClientState.CLOSED:
                raise ConnectionClosedError(f"client for {self.label} is closed")
            await self._start(self.target, tg)
            if not self.ready and isinstance(self.target, HttpTarget) \
                    and self.target.kind == "http" and self._http_refused:
                # An older server: the HTTP+SSE transport at the same URL.
                await self._start(dataclasses.replace(self.target, kind="sse"), tg)
            if not self.ready:
                raise ConnectError(f"cannot connect to {self.label}: {self.last_error}")
        return self

    async def _start(self, target: Target, tg: TaskGroup | None) -> None:
        self.state = ClientState.CONNECTING
        self._http_refused = False
        ready = anyio.Event()
        self._stop, self._stopped = anyio.Event(), anyio.Event()
        runner = _Runner(self, target, ready, self._stop, self._stopped)
        if tg is not None:
            tg.start_soon(runner.run)
        else:
            spawn_background(runner.run)
        await ready.wait()

    async def aclose(self) -> None:
        """Close the connection (from any task); calls in flight fail at once."""
        await self._shutdown()
        self.state = ClientState.CLOSED

    async def reconnect(self) -> Client:
        """Drop the current connection, if any, and connect again."""
        await self._shutdown()
        self.state = ClientState.IDLE
        return await self.connect()

    async def _shutdown(self) -> None:
        if self._stop is not None and self._stopped is not None:
            self._stop.set()
            with anyio.CancelScope(shield=True):
                await self._stopped.wait()

    # ------------------------------------------------------------- properties

    @property
    def ready(self) -> bool:
        """Whether the client is connected and settled on an era."""
        return self.state is ClientState.READY

    @property
    def session(self) -> ClientSession:
        if self._session is None or self.state is not ClientState.READY:
            reason = f": {self.last_error}" if self.last_error else ""
            raise ConnectionClosedError(f"not connected to {self.label}{reason}")
        return self._session

    @property
    def session_expired(self) -> bool:
        """Whether the server ended our Streamable HTTP session (:meth:`request`
        then starts a new one and retries)."""
        stream = self._stream
        return isinstance(stream, StreamableHTTPClientStream) and stream.session_expired

    @property
    def era(self) -> Era | None:
        return self._session.connection.era if self._session else None

    @property
    def protocol_version(self) -> str | None:
        return self._session.connection.revision if self._session else None

    @property
    def server_info(self) -> dict[str, Any]:
        return dict(self._session.connection.peer_info or {}) if self._session else {}

    @property
    def server_capabilities(self) -> dict[str, Any]:
        return dict(self._session.connection.peer_capabilities or {}) if self._session else {}

    @property
    def instructions(self) -> str | None:
        result = self._session.initialize_result if self._session else None
        value = (result or {}).get("instructions")
        return value if isinstance(value, str) else None

    @property
    def stderr_tail(self) -> list[str]:
        """The last lines a stdio server wrote to stderr (empty for remote servers)."""
        return list(self._stream.stderr_tail) if isinstance(self._stream, ProcessTransport) \
            else []

    # ------------------------------------------------------------------ calls

    async def request(self, method: str, params: dict[str, Any] | None = None, *,
                      timeout: float | None = None,
                      on_progress: ProgressCallback | None = None,
                      handlers: CallHandlers | None = None,
                      first: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send any request; the answer's result, or :class:`McpError`.

        A timeout (default ``self.timeout``) or the caller's cancellation sends
        ``notifications/cancelled`` to the server.  ``handlers`` answer what the
        server asks while serving this call (instead of the client's callbacks).
        """
        for attempt in (1, 2):
            session = self.session
            try:
                return await session.request(method, params, timeout=timeout or self.timeout,
                                             on_progress=on_progress, handlers=handlers,
                                             first=first if attempt == 1 else None)
            except ConnectionClosedError as exc:
                raise ConnectionClosedError(
                    f"connection to {self.label} closed during {method}"
                    + (f": {self.last_error}" if self.last_error else "")) from exc
            except McpError:
                stream = self._stream
                if attempt == 1 and isinstance(stream, StreamableHTTPClientStream) \
                        and stream.session_expired:
                    log.info("%s: the HTTP session expired; starting a new one", self.label)
                    await self.reconnect()
                    continue
                raise
        raise AssertionError("unreachable")

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        await self.session.notify(method, params)

    async def _all_pages(self, method: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await self.request(method, {"cursor": cursor} if cursor else None)
            items.extend(page.get(key) or [])
            cursor = page.get("nextCursor")
            if not cursor:
                return items
        raise McpError(INTERNAL_ERROR, f"{method}: more than {_MAX_PAGES} pages")

    async def list_tools(self) -> list[dict[str, Any]]:
        """Every tool, across pages, without those whose ``x-mcp-header`` is malformed
        (no valid request could call them over HTTP)."""
        tools = []
        for tool in await self._all_pages("tools/list", "tools"):
            try:
                header_parameters(tool.get("inputSchema"))
            except InvalidHeaderAnnotation as exc:
                log.warning("%s: ignoring tool %r: %s", self.label, tool.get("name"), exc)
                continue
            tools.append(tool)
        return tools

    async def list_resources(self) -> list[dict[str, Any]]:
        return await self._all_pages("resources/list", "resources")

    async def list_resource_templates(self) -> list[dict[str, Any]]:
        return await self._all_pages("resources/templates/list", "resourceTemplates")

    async def list_prompts(self) -> list[dict[str, Any]]:
        return await self._all_pages("prompts/list", "prompts")


class _Runner:
    """The background task of one connection: open, negotiate, serve, tear down."""

    def __init__(self, client: Client, target: Target, ready: anyio.Event,
                 stop: anyio.Event, stopped: anyio.Event) -> None:
        self.client = client
        self.target = target
        self.ready = ready
        self.stop = stop
        self.stopped = stopped

    async def run(self) -> None:
        client = self.client
        try:
            async with anyio.create_task_group() as tg:
                try:
                    with anyio.fail_after(client.connect_timeout):
                        session = await self._open(tg)
                except BaseException as exc:
                    client.state = ClientState.DISCONNECTED
                    with anyio.CancelScope(shield=True):
                        await _close_quietly(client)  # reaps a child: its exit code
                    client.last_error = _describe(exc, client)
                    tg.cancel_scope.cancel()
                    if not isinstance(exc, Exception | anyio.get_cancelled_exc_class()):
                        raise
                    return
                client.state, client.last_error = ClientState.READY, None
                self.ready.set()

                async def watch() -> None:
                    await session.session.wait_finished()
                    self.stop.set()

                tg.start_soon(watch)
                await self.stop.wait()
                went_away = session.session.closed  # the server ended it, not us
                client.state = ClientState.DISCONNECTED if went_away else ClientState.CLOSING
                await session.aclose()
                if went_away:
                    client.last_error = _describe(None, client)
                    log.warning("%s: connection lost: %s", client.label, client.last_error)
                    if client.on_disconnect is not None:
                        client.on_disconnect(client)
                tg.cancel_scope.cancel()
        finally:
            if client.state in (ClientState.READY, ClientState.CLOSING, ClientState.CONNECTING):
                client.state = ClientState.DISCONNECTED
            self.ready.set()
            self.stopped.set()

    async def _open(self, tg: TaskGroup) -> ClientSession:
        client = self.client
        client._session = client._stream = None
        stream = await self.target.open(tg, client.limits)
        client._stream = stream
        if isinstance(stream, ProcessTransport):
            tg.start_soon(_reap_on_cancel, stream)
        session = ClientSession(stream, **client._session_options)
        await session.start(tg)
        client._session = session
        await self._negotiate(session)
        return session

    async def _negotiate(self, session: ClientSession) -> None:
        try:
            await self._settle_era(session)
        except McpError as exc:
            status = exc.data.get("httpStatus") if isinstance(exc.data, dict) else None
            if status in (400, 404, 405):
                self.client._http_refused = True  # maybe an HTTP+SSE-only server
            raise

    async def _settle_era(self, session: ClientSession) -> None:
        client = self.client
        pinned = client.revision
        if pinned in session.connection.modern_revisions:
            try:
                await session.initialize(pinned, timeout=client.connect_timeout)
            except McpError as exc:
                # A server may refuse a first request's version and name the
                # ones it takes: if ours is among them, one retry is warranted.
                if pinned not in (_supported_versions(exc) or ()) or session.session.closed:
                    raise
                await session.initialize(pinned, timeout=client.connect_timeout)
            return
        if pinned is not None:
            await session.initialize(pinned, timeout=client.connect_timeout)
            return
        legacy_version = LATEST_LEGACY
        modern = session.connection.modern_revisions
        version: str | None = modern[0] if modern else None
        for _ in range(3):  # the first choice, then what a -32022 answer offers
            if version is None:
                break
            try:
                found = await session.initialize(version, timeout=client.probe_timeout)
            except McpError as exc:
                if session.session.closed:
                    raise
                offered = _supported_versions(exc)
                if offered is None:  # any other error: a legacy server
                    log.debug("%s: no %s answer (%s); trying initialize",
                              client.label, version, exc)
                    break
                session.connection.use_legacy()
                common = [v for v in modern if v in offered]
                legacy = [v for v in session.connection.revisions if v in offered]
                legacy_version = max(legacy) if legacy else legacy_version
                version = common[0] if common else None
                continue
            if version in (found.get("supportedVersions") or []):
                return
            break
        if session.connection.era is not None:
            session.connection.use_legacy()
        try:
            await session.initialize(legacy_version, timeout=client.connect_timeout)
        except McpError as exc:
            # A dual-era server that was slow to start took our timed-out
            # server/discover as its first message and now serves 2026-07-28
            # on this connection: its -32022 says so, and we follow it.
            offered = [v for v in _supported_versions(exc) or ()
                       if v in session.connection.modern_revisions]
            if not offered or session.session.closed:
                raise
            log.debug("%s: the server holds this connection in %s", client.label, offered[0])
            await session.initialize(offered[0], timeout=client.connect_timeout)


def _supported_versions(error: McpError) -> list[str] | None:
    """The versions an UnsupportedProtocolVersion error offers (None: another error)."""
    if error.code != UNSUPPORTED_PROTOCOL_VERSION or not isinstance(error.data, dict):
        return None
    offered = error.data.get("supported")
    return [v for v in offered if isinstance(v, str)] if isinstance(offered, list) else None


async def _close_quietly(client: Client) -> None:
    try:
        if client._session is not None:
            await client._session.aclose()
        elif client._stream is not None:
            await client._stream.aclose()
    except Exception:  # the transport is already broken; nothing more to release
        log.debug("%s: error while closing a failed connection", client.label, exc_info=True)


async def _reap_on_cancel(process: ProcessTransport) -> None:
    """Keeps the child's lifetime tied to the connection's task group."""
    try:
        await anyio.sleep_forever()
    finally:
        await process.aclose()


def _describe(exc: BaseException | None, client: Client) -> str:
    parts = []
    if exc is not None:
        text = str(exc) or type(exc).__name__
        parts.append("timed out" if isinstance(exc, TimeoutError) else text)
    stream = client._stream
    if isinstance(stream, ProcessTransport):
        code = stream.returncode
        if code is not None:
            parts.append(f"the server process exited with code {code}")
        tail = [line for line in stream.stderr_tail if line.strip()][-5:]
        if tail:
            parts.append("stderr: " + " | ".join(tail))
    if not parts:
        parts.append("the server closed the connection")
    return "; ".join(parts)

