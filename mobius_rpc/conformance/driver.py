"""A raw connection to the server under test.

The checker must send what a normal client never would (broken envelopes,
unknown methods, garbage bytes), so it talks to the server below the
protocol layer: bytes out through a transport, JSON in, matched to requests
by id.  It answers the server's own requests (roots, sampling, elicitation,
ping) so that a server waiting on one of them does not look hung, and it
notices a dead server at once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from anyio.abc import TaskGroup

from ..client.targets import HttpTarget, Target
from ..core.limits import Limits
from ..core.modern import META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_PROTOCOL_VERSION
from ..core.revisions import MODERN_REVISIONS
from ..transports.http_client import StreamableHTTPClientStream
from ..transports.process import ProcessTransport

__all__ = ("BATCH", "Driver", "Hang", "ServerGone", "Answer", "CLIENT_INFO")

CLIENT_INFO = {"name": "mobius-conformance", "version": "1"}
CLIENT_CAPABILITIES: dict[str, Any] = {"roots": {"listChanged": True}, "sampling": {},
                                       "elicitation": {"form": {}}}


#: where the answer to a batch is kept (a batch answer has no single id)
BATCH = ("batch",)


class Hang(Exception):
    """No answer before the deadline."""


class ServerGone(Exception):
    """The server closed the connection (or its process exited)."""


@dataclass
class Answer:
    """What came back for one message: the response (if any) and what came with it."""

    response: Any  # a response object, a batch's array, or None
    notifications: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


class Driver:
    """One connection to the server at one protocol revision."""

    def __init__(self, target: Target, revision: str, *, deadline: float = 10.0,
                 limits: Limits | None = None) -> None:
        self.target = target
        self.revision = revision
        self.modern = revision in MODERN_REVISIONS
        self.deadline = deadline
        self.limits = limits or Limits(max_message_bytes=16 * 1024 * 1024)
        self._ids = itertools.count(1)
        self._waiting: dict[Any, anyio.Event] = {}
        self._answers: dict[Any, Any] = {}
        self._notes: list[dict[str, Any]] = []
        self._stream: Any = None
        self._gone = anyio.Event()
        self._tg: TaskGroup | None = None
        self.server_result: dict[str, Any] | None = None

    # ------------------------------------------------------------ lifecycle

    async def open(self, tg: TaskGroup) -> None:
        self._tg = tg
        self._stream = await self.target.open(tg, self.limits)
        tg.start_soon(self._read)

    async def aclose(self) -> None:
        if self._stream is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self._stream.aclose()
        self._gone.set()

    @property
    def alive(self) -> bool:
        return not self._gone.is_set()

    @property
    def exit_code(self) -> int | None:
        stream = self._stream
        return stream.returncode if isinstance(stream, ProcessTransport) else None

    @property
    def stderr_tail(self) -> list[str]:
        stream = self._stream
        return list(stream.stderr_tail) if isinstance(stream, ProcessTransport) else []

    @property
    def http(self) -> StreamableHTTPClientStream | None:
        stream = self._stream
        return stream if isinstance(stream, StreamableHTTPClientStream) else None

    @property
    def url(self) -> str | None:
        return self.target.url if isinstance(self.target, HttpTarget) else None

    async def _read(self) -> None:
        try:
            while True:
                data = await self._stream.receive()
                try:
                    message = orjson.loads(data)
                except orjson.JSONDecodeError:
                    self._notes.append({"_unparsable": data[:200].decode("utf-8", "replace")})
                    continue
                if isinstance(message, list) and message and all(
                        isinstance(m, dict) and "method" not in m for m in message):
                    self._answers[BATCH] = message  # a batch answer, kept whole
                    event = self._waiting.get(BATCH)
                    if event is not None:
                        event.set()
                    continue
                for item in message if isinstance(message, list) else [message]:
                    await self._route(item)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            self._gone.set()
            for event in self._waiting.values():
                event.set()

    async def _route(self, item: Any) -> None:
        if not isinstance(item, dict):
            self._notes.append({"_not_an_object": item})
            return
        if "method" in item and "id" in item:
            await self._answer_server_request(item)
            return
        if "method" in item:
            self._notes.append(item)
            return
        key = _key(item.get("id"))
        self._answers[key] = item
        event = self._waiting.get(key)
        if event is not None:
            event.set()

    async def _answer_server_request(self, request: dict[str, Any]) -> None:
        method = request.get("method")
        result: dict[str, Any] | None = None
        if method == "ping":
            result = {}
        elif method == "roots/list":
            result = {"roots": []}
        elif method == "elicitation/create":
            result = {"action": "decline"}
        elif method == "sampling/createMessage":
            result = {"role": "assistant", "model": "conformance",
                      "content": {"type": "text", "text": "conformance"}}
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
        if result is None:
            reply["error"] = {"code": -32601, "message": f"Method not found: {method}"}
        else:
            reply["result"] = result
        await self.send_bytes(orjson.dumps(reply))

    # --------------------------------------------------------------- sending

    def next_id(self) -> int:
        return next(self._ids)

    def with_meta(self, message: dict[str, Any]) -> dict[str, Any]:
        """2026-07-28: the per-request ``_meta`` every request needs, unless present."""
        if not self.modern or "method" not in message or "id" not in message:
            return message
        params = message.get("params")
        if params is None:
            params = {}
        if not isinstance(params, dict) or "_meta" in params:
            return message
        meta = {META_PROTOCOL_VERSION: self.revision,
                META_CLIENT_CAPABILITIES: CLIENT_CAPABILITIES, META_CLIENT_INFO: CLIENT_INFO}
        return {**message, "params": {**params, "_meta": meta}}

    async def send_bytes(self, data: bytes) -> None:
        if not self.alive:
            raise ServerGone("the server has gone away")
        try:
            await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self._gone.set()
            raise ServerGone(f"cannot send: {exc}") from exc

    async def exchange(self, message: Any, *, answer_ids: tuple[Any, ...] | None = None,
                       raw: bytes | None = None, wait: float | None = None,
                       required: bool = True) -> Answer:
        """Send one message and wait for its answer.

        ``answer_ids`` are the ids the answer may carry (default: the message's
        own); an error about a message whose id could not be read carries
        ``None``.  A notification waits ``wait`` seconds (default 0.3) and
        returns whatever answered it, which should be nothing; so does a request
        sent with ``required=False`` (one that must stay open).
        """
        data = raw if raw is not None else orjson.dumps(message)
        if isinstance(message, list):  # a batch: answered by one array, if at all
            expects = any(isinstance(m, dict) and "id" in m and "method" in m
                          for m in message)
            answer_ids = (BATCH,)
        else:
            expects = raw is not None or (
                isinstance(message, dict) and "id" in message and "method" in message)
        if answer_ids is None:
            answer_ids = (message.get("id") if isinstance(message, dict) else None,)
        keys = [_key(i) for i in answer_ids]
        notes_before = len(self._notes)
        event = anyio.Event()
        for key in keys:
            self._answers.pop(key, None)
            self._waiting[key] = event
        started = anyio.current_time()
        try:
            await self.send_bytes(data)
            if not expects:
                await anyio.sleep(0.3 if wait is None else wait)
            else:
                with anyio.move_on_after(wait if wait is not None else self.deadline):
                    await event.wait()
            response = next((self._answers.pop(k) for k in keys if k in self._answers), None)
            if expects and required and response is None:
                if not self.alive:
                    raise ServerGone(self.describe_exit())
                raise Hang(f"no answer within {wait or self.deadline:g}s")
        finally:
            for key in keys:
                self._waiting.pop(key, None)
        return Answer(response, self._notes[notes_before:], anyio.current_time() - started)

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Answer:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id(), "method": method}
        if params is not None or self.modern:
            message["params"] = params or {}
        return await self.exchange(self.with_meta(message))

    def describe_exit(self) -> str:
        code = self.exit_code
        tail = " | ".join(line for line in self.stderr_tail[-3:] if line.strip())
        text = "the server closed the connection"
        if code is not None:
            text = f"the server process exited with code {code}"
        return f"{text}; stderr: {tail}" if tail else text

    async def handshake(self) -> dict[str, Any]:
        """Legacy: initialize at our revision and send initialized.  Modern: discover."""
        if self.modern:
            answer = await self.request("server/discover")
        else:
            answer = await self.request("initialize", {
                "protocolVersion": self.revision, "capabilities": CLIENT_CAPABILITIES,
                "clientInfo": CLIENT_INFO})
        response = answer.response or {}
        if "result" not in response:
            raise ServerGone(f"handshake refused: {response.get('error')}")
        self.server_result = response["result"]
        if not self.modern:
            await self.exchange({"jsonrpc": "2.0", "method": "notifications/initialized"},
                                wait=0.05)
        return self.server_result


def _key(request_id: Any) -> Any:
    """A hashable key for any id a server may echo (lists and objects included)."""
    if isinstance(request_id, (dict, list)):
        return orjson.dumps(request_id, option=orjson.OPT_SORT_KEYS)
    if isinstance(request_id, bool):
        return ("bool", request_id)
    return request_id
