"""The user's part of a login from a terminal: show a URL, catch the browser's redirect.

:class:`LoopbackRedirect` listens on ``127.0.0.1`` (RFC 8252 §7.3: a native
app's redirect URI is a loopback address) and hands its
:meth:`~LoopbackRedirect.authorize` to :class:`~.flow.OAuth`.  It prints the
authorization URL for the person to open; it never starts a browser or any
other program itself (no shell, no subprocess).  The first request to the
callback path is the authorization response; anything else on the port gets
a 404, and each request is read with a size limit and a timeout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType

import anyio
from anyio.abc import Listener, SocketAttribute, SocketStream, TaskGroup

from .errors import OAuthError

__all__ = ("LoopbackRedirect",)

_MAX_REQUEST = 16 * 1024
_PAGE = (b"<!doctype html><title>Mobius RPC</title><p>The login is complete; "
         b"you can close this window.</p>")


def _print_url(url: str) -> None:
    print(f"Open this URL in your browser to log in:\n  {url}", file=sys.stderr, flush=True)


class LoopbackRedirect:
    """``async with LoopbackRedirect() as redirect: OAuth(authorize=redirect.authorize,
    redirect_uri=redirect.redirect_uri)``."""

    def __init__(self, *, port: int = 0, path: str = "/callback",
                 show: Callable[[str], None] = _print_url, timeout: float = 300.0) -> None:
        self.port = port
        self.path = path
        self.show = show
        self.timeout = timeout
        self.redirect_uri = ""
        self._send, self._receive = anyio.create_memory_object_stream[str](8)
        self._tg: TaskGroup | None = None
        self._listener: Listener[SocketStream] | None = None

    async def __aenter__(self) -> LoopbackRedirect:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        port = listener.extra(SocketAttribute.local_port)
        self.redirect_uri = f"http://127.0.0.1:{port}{self.path}"
        self._listener = listener
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(listener.serve, self._handle)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(kind, exc, tb)
        if self._listener is not None:
            await self._listener.aclose()
        self._send.close()
        self._receive.close()

    async def authorize(self, url: str) -> str:
        """Show ``url``; return the URL the browser was redirected to."""
        self.show(url)
        try:
            with anyio.fail_after(self.timeout):
                return await self._receive.receive()
        except TimeoutError:
            raise OAuthError(f"no login arrived at {self.redirect_uri} within "
                             f"{self.timeout:.0f} s", "login-timeout") from None

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            data = b""
            with anyio.move_on_after(10):
                while b"\r\n\r\n" not in data and len(data) <= _MAX_REQUEST:
                    try:
                        data += await stream.receive(4096)
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
            line = data.split(b"\r\n", 1)[0].decode("latin-1")
            words = line.split(" ")
            target = words[1] if len(words) == 3 and words[0] == "GET" else ""
            if len(data) > _MAX_REQUEST or target.split("?", 1)[0] != self.path:
                await _answer(stream, b"404 Not Found", b"not found")
                return
            await _answer(stream, b"200 OK", _PAGE)
            root = self.redirect_uri[:len(self.redirect_uri) - len(self.path)]
            try:
                self._send.send_nowait(root + target)
            except anyio.WouldBlock:
                pass  # nobody is waiting for that many logins


async def _answer(stream: SocketStream, status: bytes, body: bytes) -> None:
    try:
        await stream.send(b"HTTP/1.1 " + status + b"\r\ncontent-type: text/html\r\n"
                          b"content-length: " + str(len(body)).encode() +
                          b"\r\nconnection: close\r\n\r\n" + body)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
