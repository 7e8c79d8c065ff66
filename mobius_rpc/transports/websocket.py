"""MCP over WebSocket: one connection per socket, one JSON-RPC message per text frame.

No MCP revision defines a WebSocket transport; this follows the de-facto
shape clients use (subprotocol ``mcp``, as the TypeScript SDK's WebSocket
client requests).  The socket is a single channel, so it is a plain
:class:`~mobius_rpc.transports.base.MessageStream`, and either era works on it:
the first message decides, as on stdio.  The handshake is refused (HTTP 403)
for origins or hosts outside the policy, and without the ``mcp`` subprotocol.
"""

from __future__ import annotations

from typing import Any

import anyio
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..core.limits import Limits
from ..core.types import TransportContext, TransportKind
from ..framing.http import HttpRefusal, OriginPolicy
from .asgi_context import asgi_context, headers_of
from .base import OversizedMessage, Serve, TransportCapabilities

__all__ = ("WebSocketTransport", "WebSocketStream", "WebSocketClientStream")

SUBPROTOCOL = "mcp"


class WebSocketStream:
    """A MessageStream over an accepted Starlette WebSocket."""

    capabilities = TransportCapabilities()

    def __init__(self, websocket: WebSocket, max_message_bytes: int,
                 context: TransportContext | None = None) -> None:
        self.websocket = websocket
        self.max_message_bytes = max_message_bytes
        #: every frame comes through the upgrade request this context describes
        self.transport_context = context or asgi_context(
            TransportKind.WEBSOCKET, websocket.scope, headers_of(websocket.scope))

    async def receive(self) -> bytes:
        try:
            message = await self.websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            raise anyio.EndOfStream from None
        if message["type"] == "websocket.disconnect":
            raise anyio.EndOfStream
        data = message.get("text")
        raw = data.encode("utf-8") if data is not None else message.get("bytes") or b""
        if len(raw) > self.max_message_bytes:
            raise OversizedMessage(self.max_message_bytes)
        return raw

    async def send(self, message: bytes) -> None:
        try:
            await self.websocket.send_text(message.decode("utf-8"))
        except (WebSocketDisconnect, RuntimeError):
            raise anyio.BrokenResourceError from None

    async def aclose(self) -> None:
        try:
            await self.websocket.close()
        except RuntimeError:
            pass  # already closed


class WebSocketTransport:
    """An ASGI app: accept ``mcp`` WebSockets and serve each with ``serve``."""

    def __init__(self, serve: Serve, *, origin_policy: OriginPolicy | None = None,
                 limits: Limits | None = None) -> None:
        self.serve = serve
        self.origin_policy = origin_policy or OriginPolicy()
        self.max_message_bytes = (limits or Limits()).max_message_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        websocket = WebSocket(scope, receive, send)
        try:
            self.origin_policy.check(websocket.headers)
        except HttpRefusal:
            await websocket.close(code=1008)  # before accept: the handshake gets a 403
            return
        if SUBPROTOCOL not in scope.get("subprotocols", []):
            await websocket.close(code=1002)
            return
        await websocket.accept(subprotocol=SUBPROTOCOL)
        await self.serve(WebSocketStream(websocket, self.max_message_bytes))


class WebSocketClientStream:
    """The client end: a MessageStream over a ``websockets`` client connection."""

    capabilities = TransportCapabilities()

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.transport_context = TransportContext(TransportKind.WEBSOCKET)

    @classmethod
    async def connect(cls, url: str, **options: Any) -> WebSocketClientStream:
        import websockets
        from websockets.typing import Subprotocol

        return cls(await websockets.connect(url, subprotocols=[Subprotocol(SUBPROTOCOL)],
                                            **options))

    async def receive(self) -> bytes:
        import websockets

        try:
            message = await self.connection.recv()
        except websockets.ConnectionClosed:
            raise anyio.EndOfStream from None
        return message.encode("utf-8") if isinstance(message, str) else bytes(message)

    async def send(self, message: bytes) -> None:
        import websockets

        try:
            await self.connection.send(message.decode("utf-8"))
        except websockets.ConnectionClosed:
            raise anyio.BrokenResourceError from None

    async def aclose(self) -> None:
        await self.connection.close()
