"""Where a client connects: one small value per transport, and the stream it opens.

A target is plain data (a command line, a URL, headers), so a configuration
file, a connection pool or a test can build, compare and print it; only
:meth:`open` touches the network or spawns a process.  ``from_config`` reads
the ``mcpServers`` entry shape that MCP hosts use::

    {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"],
     "env": {"MEMORY_FILE_PATH": "/tmp/m.jsonl"}}
    {"type": "http", "url": "http://127.0.0.1:8765/mcp", "headers": {"X-Key": "k"}}

An HTTP target may carry an :class:`~mobius_rpc.client.oauth.OAuth`: its
transports then get a bearer token for the server when it asks for one.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from anyio.abc import TaskGroup

from ..core.errors import INTERNAL_ERROR, McpError
from ..core.limits import Limits
from ..transports.base import MessageStream
from ..transports.http_client import HttpSseClientStream, StreamableHTTPClientStream
from ..transports.process import SAFE_INHERITED_ENV, ProcessTransport
from ..transports.websocket import WebSocketClientStream
from .oauth import BearerAuth, OAuth, OAuthError
from .oauth.config import oauth_from_config

__all__ = ("StdioTarget", "HttpTarget", "Target", "ConnectError", "target_from_config",
           "target_from_url")


class ConnectError(McpError):
    """The client could not reach the server (bad command, refused connection ...)."""

    def __init__(self, message: str) -> None:
        super().__init__(INTERNAL_ERROR, message)


@dataclass(frozen=True)
class StdioTarget:
    """A server launched as a child process, spoken to over its stdin/stdout."""

    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    kind: Literal["stdio"] = "stdio"
    #: the names of our environment variables the server inherits (None: all of them);
    #: servers from a configuration file get only :data:`SAFE_INHERITED_ENV`
    inherit_env: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, command_line: str, **options: Any) -> StdioTarget:
        """A target from one shell-quoted command line (``mobius client --stdio``)."""
        words = shlex.split(command_line)
        if not words:
            raise ValueError("empty command")
        return cls(words[0], tuple(words[1:]), **options)

    def describe(self) -> str:
        return shlex.join([self.command, *self.args])

    async def open(self, tg: TaskGroup, limits: Limits) -> ProcessTransport:
        executable = self.command
        if os.sep not in executable and shutil.which(executable) is None:
            raise ConnectError(f"cannot start {self.describe()!r}: "
                               f"{executable!r} is not on PATH")
        process = ProcessTransport([executable, *self.args], env=self.env, cwd=self.cwd,
                                   limits=limits, inherit_env=self.inherit_env)
        try:
            await process.start(tg)
        except OSError as exc:
            raise ConnectError(f"cannot start {self.describe()!r}: {exc}") from exc
        return process


@dataclass(frozen=True)
class HttpTarget:
    """A remote server: Streamable HTTP (``http``), HTTP+SSE (``sse``) or WebSocket (``ws``)."""

    url: str
    kind: Literal["http", "sse", "ws"] = "http"
    headers: Mapping[str, str] = field(default_factory=dict)
    #: OAuth for servers that require authorization (Streamable HTTP and HTTP+SSE)
    oauth: OAuth | None = None

    def describe(self) -> str:
        return f"{self.url} ({self.kind})"

    def _http_client(self) -> httpx.AsyncClient | None:
        if self.oauth is None:
            return None  # the stream makes its own
        return httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None),
                                 auth=BearerAuth(self.oauth, self.url))

    async def open(self, tg: TaskGroup, limits: Limits) -> MessageStream:
        try:
            if self.kind == "http":
                return StreamableHTTPClientStream(self.url, tg, headers=dict(self.headers),
                                                  client=self._http_client(),
                                                  max_body_bytes=limits.max_message_bytes)
            if self.kind == "sse":
                stream = HttpSseClientStream(self.url, tg, headers=dict(self.headers),
                                             client=self._http_client())
                try:
                    await stream.start()
                except BaseException:
                    await stream.aclose()
                    raise
                return stream
            return await WebSocketClientStream.connect(
                self.url, additional_headers=dict(self.headers) or None,
                max_size=limits.max_message_bytes)
        except McpError:
            raise
        except Exception as exc:  # httpx / websockets / OS errors, with their own texts
            raise ConnectError(f"cannot connect to {self.describe()}: "
                               f"{type(exc).__name__}: {exc}") from exc


Target = StdioTarget | HttpTarget


def target_from_url(url: str, *, headers: Mapping[str, str] | None = None,
                    kind: str | None = None, oauth: OAuth | None = None) -> HttpTarget:
    """A target for ``url``: ``ws://``/``wss://`` is WebSocket, else Streamable HTTP."""
    if kind is None:
        kind = "ws" if url.startswith(("ws://", "wss://")) else "http"
    if kind not in ("http", "sse", "ws"):
        raise ValueError(f"unknown transport {kind!r}")
    return HttpTarget(url, kind, dict(headers or {}), oauth)  # type: ignore[arg-type]


def target_from_config(entry: Mapping[str, Any]) -> Target:
    """A target from one ``mcpServers`` entry (Claude Desktop, VS Code and Cursor shapes)."""
    if not isinstance(entry, Mapping):
        raise ValueError("a server entry must be an object")
    if "command" in entry:
        args = entry.get("args") or []
        env = entry.get("env")
        if not isinstance(entry["command"], str) or not isinstance(args, list) \
                or not all(isinstance(a, str) for a in args):
            raise ValueError("'command' must be a string and 'args' a list of strings")
        if env is not None and not (isinstance(env, Mapping) and all(
                isinstance(v, str) for v in env.values())):
            raise ValueError("'env' must map names to strings")
        # Hosts launch configured servers with a small environment too: a server gets
        # the secrets its entry names, not every variable of whoever launched us.
        return StdioTarget(entry["command"], tuple(args), dict(env) if env else None,
                           entry.get("cwd"), inherit_env=SAFE_INHERITED_ENV)
    url = entry.get("url") or entry.get("serverUrl")
    if not isinstance(url, str):
        raise ValueError("a server entry needs 'command' (stdio) or 'url' (remote)")
    kind = entry.get("type") or entry.get("transport")
    kind = {"streamable-http": "http", "streamableHttp": "http", "websocket": "ws",
            None: None}.get(kind, kind)
    headers = entry.get("headers", {})
    if not isinstance(headers, Mapping):
        raise ValueError("'headers' must be an object")
    try:
        oauth = oauth_from_config(entry)
    except OAuthError as exc:  # a private key that is not one
        raise ValueError(exc.message) from None
    return target_from_url(url, headers=headers, kind=kind, oauth=oauth)
