"""A raw connection to the server under test.

The checker must send what a normal client never would (broken envelopes,
unknown methods, garbage bytes), so it talks to the server below the
protocol layer: bytes out through a transport, JSON in, matched to requests
by id.  It answers the server's own requests (roots, sampling, elicitation,
ping) so that a server waiting on one of them does not look hung, and it
notices a dead server at once.

A server that silently drops a message (many drop malformed envelopes) would
cost the whole deadline per message.  So when an answer is slow to come, the
driver sends a ping; once the ping is answered, it waits only what
:func:`~.patience.patience` allows for that message.
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
from .budget import Budget, OutOfTime, Stats
from .patience import ON_RECEIPT_GRACE, PROBE_AFTER, PROBE_RTTS, patience

__all__ = ("BATCH", "Driver", "Hang", "Unanswered", "ServerGone", "Answer", "CLIENT_INFO")

CLIENT_INFO = {"name": "mobius-conformance", "version": "1"}
CLIENT_CAPABILITIES: dict[str, Any] = {"roots": {"listChanged": True}, "sampling": {},
                                       "elicitation": {"form": {}}}


#: where the answer to a batch is kept (a batch answer has no single id)
BATCH = ("batch",)


class Hang(Exception):
    """No answer before the deadline."""

    def __init__(self, text: str, *, server_alive: bool = False) -> None:
        super().__init__(text)
        #: a ping sent after the message was answered (the connection is still usable)
        self.server_alive = server_alive


class Unanswered(Hang):
    """No answer, though a ping sent after the message was answered: the server is alive
    and has read the message, and has chosen not to answer it."""

    def __init__(self, text: str) -> None:
        super().__init__(text, server_alive=True)


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
                 limits: Limits | None = None, budget: Budget | None = None,
                 stats: Stats | None = None) -> None:
        self.target = target
        self.revision = revision
        self.modern = revision in MODERN_REVISIONS
        self.deadline = deadline
        self.limits = limits or Limits(max_message_bytes=16 * 1024 * 1024)
        self.budget = budget or Budget()
        self.stats = stats or Stats()
        self._ids = itertools.count(1)
        self._discard: set[Any] = set()  # ids of probes whose answers nobody waits for
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
        if key in self._discard:
            self._discard.discard(key)
            return
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
                       required: bool = True, expect_error: bool = False) -> Answer:
        """Send one message and wait for its answer.

        ``answer_ids`` are the ids the answer may carry (default: the message's
        own); an error about a message whose id could not be read carries
        ``None``.  A notification waits ``wait`` seconds (default 0.3) and
        returns whatever answered it, which should be nothing; so does a request
        sent with ``required=False`` (one that must stay open).  ``expect_error``
        says the right answer is a refusal decided on receipt (see :func:`patience`).
        Raises :class:`Unanswered` or :class:`Hang` for no answer, ``OutOfTime``
        when the run's budget ends the wait, ``ServerGone`` when the server does.
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
        limit = wait if wait is not None else (self.deadline if expects else 0.3)
        allowed = self.budget.cap(limit)
        if allowed <= 0 and limit > 0:
            raise OutOfTime("the time budget ran out")
        grace = ON_RECEIPT_GRACE if raw is not None else patience(
            message, self.revision, expect_error=expect_error)
        notes_before = len(self._notes)
        event = anyio.Event()
        for key in keys:
            self._answers.pop(key, None)
            self._waiting[key] = event
        started = anyio.current_time()
        try:
            await self.send_bytes(data)
            alive = given_up = False
            if not expects:
                await anyio.sleep(allowed)
            elif not required:  # it may stay open: no answer is no finding, so no probe
                with anyio.move_on_after(allowed):
                    await event.wait()
            else:
                alive, given_up = await self._await(event, allowed, grace)
            response = next((self._answers.pop(k) for k in keys if k in self._answers), None)
            if expects and required and response is None:
                if not self.alive:
                    raise ServerGone(self.describe_exit())
                waited = anyio.current_time() - started
                if given_up:
                    self.stats.unanswered_after_ping += 1
                    raise Unanswered(f"no answer after {waited:.2f}s, though a ping sent "
                                     f"after it was answered")
                if allowed < limit:
                    raise OutOfTime("the time budget ran out")
                self.stats.full_deadline_waits += 1
                raise Hang(f"no answer within {limit:g}s", server_alive=alive)
        finally:
            for key in keys:
                self._waiting.pop(key, None)
        return Answer(response, self._notes[notes_before:], anyio.current_time() - started)

    async def _await(self, event: anyio.Event, allowed: float,
                     grace: float | None) -> tuple[bool, bool]:
        """Wait up to ``allowed`` seconds for ``event`` (the answer); after
        ``PROBE_AFTER`` send a ping, and once it is answered wait only ``grace`` more
        (all of ``allowed`` when ``grace`` is None).  Returns whether the ping was
        answered (the server is alive and reading) and whether the grace, not
        ``allowed``, ended the wait."""
        end = anyio.current_time() + allowed
        with anyio.move_on_after(min(PROBE_AFTER, allowed)):
            await event.wait()
        if event.is_set() or anyio.current_time() >= end:
            return event.is_set(), False
        probe_id = self.next_id()
        probe_key = _key(probe_id)
        probe_event = anyio.Event()
        self._waiting[probe_key] = probe_event
        probe: dict[str, Any] = {"jsonrpc": "2.0", "id": probe_id, "method": "ping"}
        if self.modern:
            probe["params"] = {}
        sent = anyio.current_time()
        self.stats.probes += 1
        shortened = False
        try:
            await self.send_bytes(orjson.dumps(self.with_meta(probe)))
            async with anyio.create_task_group() as tg:
                async def probe_answered() -> None:
                    await probe_event.wait()
                    nonlocal end, shortened
                    if grace is not None and self.alive:
                        now = anyio.current_time()
                        grace_end = now + max(grace, PROBE_RTTS * (now - sent))
                        if grace_end < end:
                            end, shortened = grace_end, True
                            tg.cancel_scope.deadline = end

                tg.cancel_scope.deadline = end
                tg.start_soon(probe_answered)
                await event.wait()
                tg.cancel_scope.cancel()
        finally:
            self._waiting.pop(probe_key, None)
            if self._answers.pop(probe_key, None) is None:
                self._discard.add(probe_key)  # its answer may still come: drop it then
        alive = probe_event.is_set() and self.alive
        return alive, alive and shortened and not event.is_set()

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
