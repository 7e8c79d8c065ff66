"""The sans-I/O MCP connection of the legacy era: bytes in, events out.

:class:`Connection` owns everything about one session that is protocol and
not I/O: the lifecycle state, the negotiated revision and capabilities, the
table of requests in flight in each direction, deadlines of the requests we
sent (the caller passes the time), cancellation and progress bookkeeping,
2025-03-26 batch assembly, resource limits, and schema validation of every
message in and out by method (never against the ``anyOf`` unions,
protocol-facts §7).

It never reads a clock, never awaits and never touches a socket.  Usage::

    events = conn.receive(line, now=clock())
    for data in conn.data_to_send():
        transport.write(data)

Replies the protocol requires without application input (errors for bad
input, ``ping``, the ``initialize`` answer) are queued by the connection
itself; everything else surfaces as an event for the runtime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from . import jsonrpc
from .errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    UNSUPPORTED_PROTOCOL_VERSION,
    ConnectionClosedError,
    LocalProtocolError,
    McpError,
    RemoteProtocolError,
)
from .events import (
    CancelRequested,
    ErrorReceived,
    Event,
    MessageRejected,
    NotificationReceived,
    ProgressReceived,
    RequestId,
    RequestReceived,
    RequestTimedOut,
    ResponseReceived,
    SessionInitialized,
)
from .gates import gate_failure, has_capability
from .limits import Limits, nesting_depth_exceeds
from .methods import Kind, MethodSpec, lookup, may_send, requests_from
from .modern import (
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_PROTOCOL_VERSION,
    CachePolicy,
    RequestMeta,
    decorate_result,
    read_request_meta,
)
from .revisions import (
    LATEST_LEGACY,
    LEGACY_REVISIONS,
    Era,
    has_batches,
    has_tasks,
    is_modern_request,
    looks_modern,
    negotiate_legacy,
    served_capabilities,
)
from .schema import SchemaError, UnknownDefinition, schema_for
from .state import SessionState, Trigger, accepts_requests, transition
from .types import TransportContext

__all__ = ("Role", "Connection", "Outgoing")

#: a queued message with its routing: (data, related request id, ids it answers)
Outgoing = tuple[bytes, RequestId | None, tuple[RequestId, ...]]

log = logging.getLogger("mobius_rpc.core")


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


@dataclass(slots=True)
class _Batch:
    """Replies of one incoming 2025-03-26 batch, sent together as one array."""

    replies: list[dict[str, Any]] = field(default_factory=list)
    pending: int = 0
    complete: bool = False


@dataclass(slots=True)
class _InFlight:
    """A request the peer sent us that we have not answered yet."""

    method: str
    progress_token: str | int | None
    batch: _Batch | None
    #: the revision the request was made in (per request in the modern era)
    revision: str
    #: the schema definition its result must match (None: not checked)
    result_def: str | None
    #: a task-augmented request (2025-11-25): its result is a CreateTaskResult
    task: bool = False
    cancelled: bool = False


@dataclass(slots=True)
class _Outstanding:
    """A request we sent that the peer has not answered yet."""

    method: str
    deadline: float | None
    progress_token: str | int | None
    #: we asked for task execution: the answer is a CreateTaskResult
    task: bool = False


class Connection:
    """One MCP connection, either side, either era.

    ``capabilities``/``info`` describe our side: the server's capabilities and
    ``serverInfo`` for ``Role.SERVER``, the client's for ``Role.CLIENT``.

    A server connection serves the legacy revisions in ``revisions`` and the
    modern ones in ``modern_revisions`` (either may be empty).  The first
    request decides the era of the connection: ``initialize`` selects the
    legacy era, a request whose ``_meta`` names a protocol version (or
    ``server/discover``) the modern one.
    """

    def __init__(
        self,
        role: Role,
        *,
        info: dict[str, Any],
        capabilities: dict[str, Any] | None = None,
        instructions: str | None = None,
        revisions: tuple[str, ...] = LEGACY_REVISIONS,
        modern_revisions: tuple[str, ...] = (),
        limits: Limits | None = None,
        validate: bool = True,
        cache_policy: CachePolicy | None = None,
    ) -> None:
        self.role = role
        self.info = info
        self.capabilities: dict[str, Any] = capabilities if capabilities is not None else {}
        self.instructions = instructions
        self.revisions = revisions
        self.modern_revisions = modern_revisions
        self.cache_policy = cache_policy or CachePolicy()
        self.limits = limits or Limits()
        self.validate = validate
        # Spelled out: Enum.value is a property call.
        self._role = "client" if role is Role.CLIENT else "server"
        #: ``role is Role.SERVER`` once, not two global and attribute lookups per request
        self._is_server = role is Role.SERVER
        self._peer_role = "server" if role is Role.CLIENT else "client"
        self._incoming_requests = requests_from(self._peer_role)
        self.era: Era | None = None
        self.state = SessionState.UNINITIALIZED
        self.revision: str | None = None
        self.peer_info: dict[str, Any] = {}
        self.peer_capabilities: dict[str, Any] = {}
        # (serialized message, the incoming request it belongs to, the ids of
        # the incoming requests it answers): transports with one stream per
        # request (Streamable HTTP) route on the last two parts.
        self._outbox: list[Outgoing] = []
        self._in_flight: dict[RequestId, _InFlight] = {}
        self._outstanding: dict[RequestId, _Outstanding] = {}
        self._progress_tokens: dict[str | int, RequestId] = {}
        self._next_id = 1
        #: set (a short string) to send our requests with string ids ``<prefix><n>``
        #: instead of integers: replicas serving one HTTP session each take their
        #: own, so the peer's answer says which replica is waiting for it
        self.id_prefix: str | None = None
        #: the transport context of the message being received (see receive)
        self._transport: TransportContext | None = None
        # A modern client may call methods before (or without) server/discover;
        # until it knows the server's capabilities it does not gate on them.
        self._peer_capabilities_known = role is Role.SERVER

    # ------------------------------------------------------------------ output

    def data_to_send(self) -> list[bytes]:
        """Drain the serialized messages queued for the peer, oldest first."""
        out, self._outbox = self._outbox, []
        return [data for data, _, _ in out]

    def routed_data_to_send(self) -> list[Outgoing]:
        """Like :meth:`data_to_send`, with the routing of each message:
        ``(data, related, answers)``.  ``related`` is the id of the incoming
        request the message belongs to (its response, or what its handler
        sent), or None; ``answers`` the ids of the incoming requests it
        answers (one for a response, several for a batch's, none otherwise)."""
        out, self._outbox = self._outbox, []
        return out

    def requeue(self, items: list[Outgoing]) -> None:
        """Put back, ahead of what was queued since, messages taken with
        :meth:`routed_data_to_send` that could not be sent yet."""
        self._outbox[:0] = items

    def queued_bytes(self) -> int:
        """How many bytes wait in the outbox (for a caller bounding its backlog)."""
        return sum(len(item[0]) for item in self._outbox)

    def has_data_to_send(self) -> bool:
        """Whether :meth:`data_to_send` would return anything (cheap)."""
        return bool(self._outbox)

    def _queue(self, message: dict[str, Any], batch: _Batch | None = None) -> None:
        """Queue a reply (a response or error to one of the peer's messages)."""
        if batch is not None:
            batch.replies.append(message)
        else:
            request_id = message.get("id")
            self._queue_answer(message, () if request_id is None else (request_id,))

    def _queue_answer(self, reply: Any, answers: tuple[RequestId, ...]) -> None:
        """Queue a reply routed by the requests it answers (the first one, if any)."""
        self._outbox.append((jsonrpc.dumps(reply), answers[0] if answers else None, answers))

    def _flush_batch(self, batch: _Batch) -> None:
        if batch.complete and batch.pending == 0 and batch.replies:
            # A batch is answered as a whole.
            self._queue_answer(batch.replies, tuple(
                r["id"] for r in batch.replies if r.get("id") is not None))
            batch.replies = []

    # ----------------------------------------------------------------- receive

    def receive(self, data: bytes, now: float, *, decoded: Any = None,
                transport: TransportContext | None = None) -> list[Event]:
        """Digest one framed message (one stdio line, one HTTP body, one WS frame).

        Returns the events it produced; replies it owes are in
        :meth:`data_to_send`.  Never raises for anything the peer sent.
        ``decoded`` is ``data`` already parsed by a transport that had to look
        inside it (Streamable HTTP), so that it is not parsed twice, or a
        :class:`~.jsonrpc.Classified` when it checked the envelopes as well;
        the size and depth limits still apply to ``data``.  ``transport``
        says where the message came from; the requests and notifications in
        it carry it up unread.
        """
        self._transport = transport
        events: list[Event] = []
        if self.state is SessionState.CLOSED:
            return events
        limits = self.limits
        if len(data) > limits.max_message_bytes:
            self._refuse(decoded, RemoteProtocolError(
                INVALID_REQUEST,
                f"Invalid Request: message of {len(data)} bytes exceeds the limit of "
                f"{limits.max_message_bytes}"), events)
            return events
        # The bracket count bounds the depth (see nesting_depth_exceeds): most
        # messages stop here without a function call.
        max_depth = limits.max_depth
        if data.count(b"{") + data.count(b"[") > max_depth and nesting_depth_exceeds(
                data, max_depth):
            self._refuse(decoded, RemoteProtocolError(
                INVALID_REQUEST,
                f"Invalid Request: JSON nesting deeper than {self.limits.max_depth} levels"),
                events)
            return events
        message = decoded
        classified: list[jsonrpc.Incoming] | None = None
        if message is None:
            try:
                message = orjson.loads(data)  # jsonrpc.parse, its error path below
            except orjson.JSONDecodeError:
                try:
                    jsonrpc.parse(data)
                except RemoteProtocolError as exc:
                    self._reject(None, exc, None, events)
                    return events
                raise  # pragma: no cover - parse accepts what orjson refused

        elif type(message) is jsonrpc.Classified:
            message, classified = message.message, message.items
        if isinstance(message, list):
            self._receive_batch(message, now, events, classified)
            return events
        if classified:
            incoming: jsonrpc.Incoming = classified[0]
        else:
            try:
                incoming = jsonrpc.classify(message)
            except jsonrpc.EnvelopeError as exc:
                self._reject(exc.request_id, exc, None, events)
                return events
        # _receive_one, spelled out for the common unbatched message
        if type(incoming) is jsonrpc.IncomingRequest:
            self._on_request(incoming, now, events, None)
        elif type(incoming) is jsonrpc.IncomingNotification:
            self._on_notification(incoming, events)
        else:
            self._on_response(incoming, events)  # type: ignore[arg-type]
        return events

    def _receive_batch(self, items: list[Any], now: float, events: list[Event],
                       classified: list[jsonrpc.Incoming] | None) -> None:
        revision = self.revision
        if revision is None or not has_batches(revision):
            if revision is not None:
                why = f"in protocol revision {revision}"
            elif self.revisions or not self.modern_revisions:
                why = "before initialization"
            else:  # a stateless connection: no revision of that era has batches
                why = f"in protocol revision {'/'.join(self.modern_revisions)}"
            self._refuse(items, RemoteProtocolError(
                INVALID_REQUEST, f"Invalid Request: batches are not accepted {why}"), events)
            return
        if not items:
            self._reject(None, RemoteProtocolError(
                INVALID_REQUEST, "Invalid Request: empty batch"), None, events)
            return
        if len(items) > self.limits.max_batch:
            self._refuse(items, RemoteProtocolError(
                INVALID_REQUEST,
                f"Invalid Request: batch of {len(items)} exceeds {self.limits.max_batch}"),
                events)
            return
        batch = _Batch()
        for index, item in enumerate(items):
            self._receive_one(item, now, events, batch,
                              classified[index] if classified else None)
        batch.complete = True
        self._flush_batch(batch)

    def _receive_one(self, message: Any, now: float, events: list[Event],
                     batch: _Batch | None, incoming: jsonrpc.Incoming | None = None) -> None:
        if incoming is None:
            try:
                incoming = jsonrpc.classify(message)
            except jsonrpc.EnvelopeError as exc:
                self._reject(exc.request_id, exc, batch, events)
                return
        if isinstance(incoming, jsonrpc.IncomingRequest):
            self._on_request(incoming, now, events, batch)
        elif isinstance(incoming, jsonrpc.IncomingNotification):
            self._on_notification(incoming, events)
        else:
            self._on_response(incoming, events)

    def refuse_oversized(self, limit: int) -> list[Event]:
        """Answer a message the transport dropped for breaking its size limit.

        Framing transports never hold such a message whole (a stdio line is
        cut off as it arrives), so there is nothing to parse and no id to
        answer: the peer gets one id-less -32600.
        """
        events: list[Event] = []
        if self.state is not SessionState.CLOSED:
            self._reject(None, RemoteProtocolError(
                INVALID_REQUEST, f"Invalid Request: message exceeds the size limit of "
                f"{limit} bytes"), None, events)
        return events

    def _before_initialize(self, method: str) -> RemoteProtocolError:
        """The error for a request that is neither modern nor after ``initialize``.

        A server of both eras cannot tell a legacy client that skipped the
        handshake from a 2026-07-28 client that forgot its ``_meta``: the
        latter is the likelier (stateless clients send no ``initialize``), and
        its error is about params, so it gets -32602 saying both what
        ``_meta`` must carry and that legacy clients start with ``initialize``.
        A legacy-only server knows it is the handshake.
        """
        if self.era is None and self.modern_revisions and self.role is Role.SERVER:
            return RemoteProtocolError(INVALID_PARAMS, (
                f"Invalid params: a {', '.join(self.modern_revisions)} request must carry "
                f"params._meta with {META_PROTOCOL_VERSION!r} and {META_CLIENT_CAPABILITIES!r};"
                f" a client of an earlier revision must send 'initialize' first "
                f"(got {method!r} without either)"))
        return RemoteProtocolError(
            INVALID_REQUEST, f"Invalid Request: {method!r} received before "
            "initialization; the first request must be 'initialize'")

    def _reject(self, request_id: RequestId | None, error: McpError, batch: _Batch | None,
                events: list[Event], *, reply: bool = True) -> None:
        if reply:
            self._queue(jsonrpc.error_response(request_id, error), batch)
        events.append(MessageRejected(error, reply))

    def _refuse(self, message: Any, error: McpError, events: list[Event]) -> None:
        """Refuse a whole message (too large, too deep, a batch not accepted here)
        with one id-less error.

        That error is the only reply the requests in it get, so it is routed
        as their answer when they are known (``message`` is the decoded body,
        or None when it was not parsed): a transport that waits for each
        request's answer (an HTTP POST) must not wait for them.
        """
        self._queue_answer(jsonrpc.error_response(None, error), _request_ids(message))
        events.append(MessageRejected(error, True))

    # Requests -----------------------------------------------------------

    def _on_request(self, req: jsonrpc.IncomingRequest, now: float, events: list[Event],
                    batch: _Batch | None) -> None:
        request_id = req.id
        method = req.method
        params = req.params
        in_flight = self._in_flight
        if request_id in in_flight:
            self._reject(request_id, RemoteProtocolError(
                INVALID_REQUEST, f"Invalid Request: id {request_id!r} is already in use by an "
                "unanswered request"), batch, events)
            return
        revision = self.revision or LATEST_LEGACY
        peer_capabilities = self.peer_capabilities
        modern = False
        meta: RequestMeta | None = None
        if self._is_server:
            if method == "initialize" and not (self.modern_revisions
                                               and looks_modern(params)):
                self._on_initialize(req, events, batch)
                return
            # An initialize that carries a modern _meta is a 2026-07-28 request for
            # a method that revision removed: -32601 below, like any unknown method.
            # (A modern-only connection, one per stateless request, skips the call.)
            modern = self.era is Era.MODERN or (self.era is None and bool(self.modern_revisions)
                                                and (not self.revisions or is_modern_request(
                method, params, legacy=self.revisions, modern=self.modern_revisions)))
            if modern:
                # Stateless (2026-07-28): everything the request needs is in its _meta.
                try:
                    meta = read_request_meta(params, self.modern_revisions)
                except RemoteProtocolError as exc:
                    self._reject(request_id, exc, batch, events)
                    return
                self.era = Era.MODERN
                self.revision = revision = meta.version
                peer_capabilities = meta.client_capabilities
        table = self._incoming_requests.get(revision)
        spec = table.get(method) if table is not None else None
        if spec is None:
            # Unknown methods are -32601 in every state (a legacy-only server
            # answers server/discover this way, as old servers do).
            self._reject(request_id, RemoteProtocolError(
                METHOD_NOT_FOUND, f"Method not found: {method}"), batch, events)
            return
        state = self.state  # accepts_requests(state), inlined
        if not modern and state is not SessionState.READY \
                and state is not SessionState.INITIALIZING and method != "ping":
            self._reject(request_id, self._before_initialize(method), batch, events)
            return
        why = None if spec.gate is None else gate_failure(
            spec, params, self.capabilities, peer_capabilities, self._role, revision)
        if why is not None:
            self._reject(request_id, RemoteProtocolError(
                METHOD_NOT_FOUND, f"Method not found: {method} ({why})"), batch, events)
            return
        if self.validate:
            try:
                schema_for(revision).check(spec.message_def, req.raw)
            except SchemaError as exc:
                self._reject(request_id, _invalid_params(exc), batch, events)
                return
        if method == "ping":
            self._queue(jsonrpc.response(request_id, {}), batch)
            return
        meta_obj = params.get("_meta")
        token = meta_obj.get("progressToken") if isinstance(meta_obj, dict) else None
        # A task-augmented request is answered with CreateTaskResult, but only in
        # a revision that has tasks and when we declared task support for it;
        # otherwise the field is an unknown param of a plain call (open schemas).
        task = "task" in params and method == "tools/call" and has_tasks(
            revision) and has_capability(self.capabilities, ("tasks", "requests", "tools",
                                                             "call"))
        in_flight[request_id] = _InFlight(method, token, batch, revision,
                                            "CreateTaskResult" if task else spec.result_def, task)
        if batch is not None:
            batch.pending += 1
        events.append(RequestReceived(request_id, method, params, meta, self._transport))

    def _on_initialize(self, req: jsonrpc.IncomingRequest, events: list[Event],
                       batch: _Batch | None) -> None:
        if self.era is Era.MODERN or not self.revisions:
            # Modern-only servers (and connections already modern) list what they
            # support, so a legacy client can tell why (Lifecycle, 2026-07-28).
            requested = req.params.get("protocolVersion")
            self._reject(req.id, RemoteProtocolError(
                UNSUPPORTED_PROTOCOL_VERSION,
                "Unsupported protocol version: this server does not speak the legacy "
                "initialize handshake on this connection",
                {"supported": list(self.modern_revisions),
                 "requested": requested if isinstance(requested, str) else ""}),
                batch, events)
            return
        if batch is not None:
            self._reject(req.id, RemoteProtocolError(
                INVALID_REQUEST, "Invalid Request: initialize must not be part of a batch"),
                batch, events)
            return
        try:
            next_state = transition(self.state, Trigger.INITIALIZE, role=self._role)
        except RemoteProtocolError as exc:
            self._reject(req.id, exc, batch, events)
            return
        requested = req.params.get("protocolVersion")
        revision = negotiate_legacy(requested, self.revisions)
        schema = schema_for(requested if requested in self.revisions else revision)
        if self.validate:
            try:
                schema.check("InitializeRequest", req.raw)
            except SchemaError as exc:
                self._reject(req.id, _invalid_params(exc), batch, events)
                return
        self.state = next_state
        self.era = Era.LEGACY
        self.revision = revision
        client_caps = req.params.get("capabilities")
        client_info = req.params.get("clientInfo")
        self.peer_capabilities = client_caps if isinstance(client_caps, dict) else {}
        self.peer_info = client_info if isinstance(client_info, dict) else {}
        result: dict[str, Any] = {
            "protocolVersion": revision,
            "capabilities": served_capabilities(self.capabilities, revision),
            "serverInfo": self.info,
        }
        if self.instructions:
            result["instructions"] = self.instructions
        self._in_flight[req.id] = _InFlight("initialize", None, None, revision,
                                            "InitializeResult")
        self.respond(req.id, result)
        events.append(SessionInitialized(revision, self.peer_info, self.peer_capabilities))

    # Notifications ------------------------------------------------------

    def _on_notification(self, note: jsonrpc.IncomingNotification, events: list[Event]) -> None:
        # Notifications never get a reply, whatever is wrong with them.
        if note.method == "notifications/initialized" and self.role is Role.SERVER:
            try:
                self.state = transition(self.state, Trigger.INITIALIZED, role=self._role)
            except RemoteProtocolError as exc:
                self._reject(None, exc, None, events, reply=False)
            return
        modern = self.era is Era.MODERN or (self.era is None and bool(self.modern_revisions)
                                            and note.method == "notifications/cancelled")
        if self.state is SessionState.UNINITIALIZED and not modern:
            self._reject(None, RemoteProtocolError(
                INVALID_REQUEST, f"{note.method} received before initialization"), None, events,
                reply=False)
            return
        revision = (self.revision or self.modern_revisions[-1]) if modern else (
            self.revision or LATEST_LEGACY)
        spec = lookup(revision, note.method)
        if (spec is None or spec.kind is not Kind.NOTIFICATION
                or not may_send(spec, self._peer_role)):
            self._reject(None, RemoteProtocolError(
                METHOD_NOT_FOUND, f"unknown notification {note.method}"), None, events,
                reply=False)
            return
        if self.validate:
            try:
                schema_for(revision).check(spec.message_def, note.raw)
            except SchemaError as exc:
                self._reject(None, _invalid_params(exc), None, events, reply=False)
                return
        if note.method == "notifications/cancelled":
            self._on_cancelled(note.params, events)
        elif note.method == "notifications/progress":
            self._on_progress(note.params, events)
        else:
            events.append(NotificationReceived(note.method, note.params, self._transport))

    def _on_cancelled(self, params: dict[str, Any], events: list[Event]) -> None:
        request_id = params.get("requestId")
        if not jsonrpc.valid_id(request_id):
            return
        assert isinstance(request_id, (str, int))
        entry = self._in_flight.get(request_id)
        # Unknown or finished ids are ignored (the race is normal); initialize
        # must not be cancelled (Lifecycle / Cancellation).
        if entry is None or entry.cancelled or entry.method == "initialize":
            return
        entry.cancelled = True
        reason = params.get("reason")
        events.append(CancelRequested(request_id, reason if isinstance(reason, str) else None))

    def _on_progress(self, params: dict[str, Any], events: list[Event]) -> None:
        token = params.get("progressToken")
        request_id = self._progress_tokens.get(token) if isinstance(token, (str, int)) else None
        if request_id is None:
            return  # progress for a request we no longer track: drop it
        total = params.get("total")
        message = params.get("message")
        events.append(ProgressReceived(
            request_id, float(params["progress"]),
            float(total) if isinstance(total, (int, float)) else None,
            message if isinstance(message, str) else None))

    # Responses ----------------------------------------------------------

    def _on_response(self, resp: jsonrpc.IncomingResponse | jsonrpc.IncomingError,
                     events: list[Event]) -> None:
        request_id = resp.id
        pending = self._outstanding.pop(request_id, None) if request_id is not None else None
        if pending is None:
            # A late answer to a cancelled/timed-out request, or garbage: drop it.
            self._reject(None, RemoteProtocolError(
                INVALID_REQUEST, f"response for unknown request id {request_id!r}"), None,
                events, reply=False)
            return
        assert request_id is not None
        if pending.progress_token is not None:
            self._progress_tokens.pop(pending.progress_token, None)
        if isinstance(resp, jsonrpc.IncomingError):
            events.append(ErrorReceived(request_id, pending.method,
                                        McpError.from_error_object(resp.error)))
            return
        result = resp.result
        if pending.method == "initialize":
            self._on_initialize_result(request_id, result, events)
            return
        error = self._check_result(pending.method, result,
                                   "CreateTaskResult" if pending.task else None)
        if error is not None:
            events.append(ErrorReceived(request_id, pending.method, error))
            return
        if pending.method == "server/discover" and self.role is Role.CLIENT:
            # Modern era: what the server declares gates what we send from now on.
            caps = result.get("capabilities")
            self.peer_capabilities = caps if isinstance(caps, dict) else {}
            meta = result.get("_meta")
            info = meta.get("io.modelcontextprotocol/serverInfo") if isinstance(meta, dict) \
                else None
            self.peer_info = info if isinstance(info, dict) else {}
            self._peer_capabilities_known = True
        events.append(ResponseReceived(request_id, pending.method, result))

    def _check_result(self, method: str, result: Any, result_def: str | None = None
                      ) -> McpError | None:
        if not isinstance(result, dict):
            return McpError(INTERNAL_ERROR, f"invalid {method} result from peer: not an object")
        revision = self.revision or LATEST_LEGACY
        spec = lookup(revision, method)
        if result_def is None:
            result_def = spec.result_def if spec is not None else None
        if self.era is Era.MODERN and result.get("resultType") == "input_required":
            result_def = "InputRequiredResult"
        if self.validate and result_def is not None:
            try:
                schema_for(revision).check(result_def, result)
            except SchemaError as exc:
                return McpError(INTERNAL_ERROR, f"invalid {method} result from peer: "
                                f"{exc.path or '<result>'}: {exc.message}")
            except UnknownDefinition as exc:
                log.error("cannot check a %s result: %s", method, exc)
                return McpError(INTERNAL_ERROR, f"Internal error: no {result_def} in "
                                f"{revision} to check the {method} result against")
        return None

    def _on_initialize_result(self, request_id: RequestId, result: Any,
                              events: list[Event]) -> None:
        version = result.get("protocolVersion") if isinstance(result, dict) else None
        if version not in self.revisions:
            self.state = SessionState.CLOSED
            events.append(ErrorReceived(request_id, "initialize", McpError(
                INVALID_REQUEST, f"server answered with unsupported protocol version "
                f"{version!r}; supported: {', '.join(self.revisions)}")))
            return
        assert isinstance(version, str) and isinstance(result, dict)
        self.revision = version
        self.era = Era.LEGACY
        error = self._check_result("initialize", result)
        if error is not None:
            self.state = SessionState.CLOSED
            events.append(ErrorReceived(request_id, "initialize", error))
            return
        self.peer_capabilities = result.get("capabilities") or {}
        self.peer_info = result.get("serverInfo") or {}
        self._peer_capabilities_known = True
        instructions = result.get("instructions")
        self.state = SessionState.READY
        self._queue(jsonrpc.notification("notifications/initialized", None))
        events.append(SessionInitialized(version, self.peer_info, self.peer_capabilities,
                                         instructions if isinstance(instructions, str) else None))
        events.append(ResponseReceived(request_id, "initialize", result))

    # -------------------------------------------------------------------- send

    def respond(self, request_id: RequestId, result: dict[str, Any]) -> bool:
        """Answer a request the peer sent.  Dropped silently if the peer cancelled it
        (or the connection closed): returns whether an answer was queued.

        A result that fails our own schema is a bug in the application: it is
        logged and replaced by -32603, never sent malformed.
        """
        entry = self._in_flight.pop(request_id, None)
        if entry is None or entry.cancelled:  # the rare cases: _take_in_flight's way
            if entry is not None:
                self._in_flight[request_id] = entry
            if self._take_in_flight(request_id) is None:
                return False
        assert entry is not None
        revision = entry.revision
        result_def = entry.result_def
        if self.era is Era.MODERN:
            result = decorate_result(entry.method, result, self.info, self.cache_policy)
            if result.get("resultType") == "input_required":
                result_def = "InputRequiredResult"
        if self.validate and result_def is not None:
            try:
                schema_for(revision).check(result_def, result)
            except (SchemaError, UnknownDefinition) as exc:
                # a result that fails its definition, or whose definition the
                # revision lacks (a bug of ours): -32603 for this request only
                log.error("refusing to send an invalid %s result (%s); sent -32603 instead",
                          entry.method, exc)
                self._queue(jsonrpc.error_response(request_id, McpError(
                    INTERNAL_ERROR, f"Internal error: the {entry.method} result failed "
                    "validation")), entry.batch)
                self._after_reply(entry)
                return True
        batch = entry.batch
        if batch is None:  # _queue and _after_reply, spelled out for the common case
            self._outbox.append((orjson.dumps(
                {"jsonrpc": "2.0", "id": request_id, "result": result}),
                request_id, (request_id,)))
            return True
        self._queue(jsonrpc.response(request_id, result), batch)
        self._after_reply(entry)
        return True

    def respond_error(self, request_id: RequestId, error: McpError) -> bool:
        """Answer a request the peer sent with an error; dropped if it was cancelled
        (or the connection closed): returns whether an answer was queued."""
        entry = self._take_in_flight(request_id)
        if entry is None:
            return False
        self._queue(jsonrpc.error_response(request_id, error), entry.batch)
        self._after_reply(entry)
        return True

    def _take_in_flight(self, request_id: RequestId) -> _InFlight | None:
        entry = self._in_flight.pop(request_id, None)
        if entry is None:
            if self.state is SessionState.CLOSED:
                return None
            raise LocalProtocolError(INTERNAL_ERROR,
                                     f"no unanswered request with id {request_id!r}")
        if entry.cancelled:
            self._after_reply(entry)
            return None
        return entry

    def _after_reply(self, entry: _InFlight) -> None:
        if entry.batch is not None:
            entry.batch.pending -= 1
            self._flush_batch(entry.batch)

    def is_cancelled(self, request_id: RequestId) -> bool:
        entry = self._in_flight.get(request_id)
        return entry is not None and entry.cancelled

    def is_task_request(self, request_id: RequestId) -> bool:
        """Whether an unanswered request asked to run as a task (and we accept tasks)."""
        entry = self._in_flight.get(request_id)
        return entry is not None and entry.task

    def progress_token(self, request_id: RequestId) -> str | int | None:
        """The progress token the peer attached to one of its requests, if any."""
        entry = self._in_flight.get(request_id)
        return entry.progress_token if entry is not None else None

    def request(self, method: str, params: dict[str, Any] | None, *, now: float,
                timeout: float | None = None, progress: bool = False,
                related: RequestId | None = None) -> RequestId:
        """Queue a request to the peer and return its id.

        Raises :class:`LocalProtocolError` when the method does not exist in
        the negotiated revision, is not ours to send, or the peer did not
        declare the capability it needs; the message is then not sent.
        """
        if self.state is SessionState.CLOSED:
            raise ConnectionClosedError()
        if method == "initialize":
            raise LocalProtocolError(INVALID_REQUEST, "use Connection.initialize()")
        if self.era is Era.MODERN and self.role is Role.CLIENT:
            params = self._with_request_meta(params)
        elif not accepts_requests(self.state) and method != "ping":
            raise LocalProtocolError(INVALID_REQUEST, f"cannot send {method} before initialization")
        spec = self._sendable(method, Kind.REQUEST, params)
        request_id: RequestId = self._next_id
        self._next_id += 1
        if self.id_prefix is not None:
            request_id = f"{self.id_prefix}{request_id}"
        token: str | int | None = None
        if progress:
            token = request_id
            params = dict(params or {})
            params["_meta"] = {**(params.get("_meta") or {}), "progressToken": token}
            self._progress_tokens[token] = request_id
        message = jsonrpc.request(request_id, method, params)
        self._check_outgoing(spec, message)
        if timeout is None:
            timeout = self.limits.request_timeout
        task = method == "tools/call" and params is not None and "task" in params \
            and has_tasks(self.revision)
        self._outstanding[request_id] = _Outstanding(method, now + timeout, token, task)
        self._outbox.append((jsonrpc.dumps(message), related, ()))
        return request_id

    def restore_legacy(self, revision: str, peer_info: dict[str, Any] | None,
                       peer_capabilities: dict[str, Any] | None) -> None:
        """Server side: continue a legacy session whose handshake happened elsewhere.

        Another process (a replica sharing the session through a store) answered
        ``initialize``; this connection takes up the session where it stands,
        ready, with the negotiated ``revision`` and what the client declared.
        """
        if self.role is not Role.SERVER or self.state is not SessionState.UNINITIALIZED \
                or revision not in self.revisions:
            raise LocalProtocolError(INVALID_REQUEST,
                                     f"cannot restore a legacy session at {revision!r}")
        self.era = Era.LEGACY
        self.revision = revision
        self.state = SessionState.READY
        self.peer_info = dict(peer_info or {})
        self.peer_capabilities = dict(peer_capabilities or {})

    def use_modern(self, revision: str) -> None:
        """Client side: speak the modern era at ``revision`` (no handshake).

        Every request then carries the per-request ``_meta`` (version, our
        capabilities and info); results are checked against ``revision``.
        """
        if self.role is not Role.CLIENT or revision not in self.modern_revisions:
            raise LocalProtocolError(INVALID_REQUEST, f"cannot use modern revision {revision!r}")
        if self.state is SessionState.INITIALIZING and self.era is None and not any(
                pending.method == "initialize" for pending in self._outstanding.values()):
            # The server refused our initialize because it serves 2026-07-28
            # on this connection (an era probe it answered too late).
            self.state = SessionState.UNINITIALIZED
        self.era = Era.MODERN
        self.revision = revision

    def use_legacy(self) -> None:
        """Client side: give up the modern era before anything else happened.

        An era probe sends ``server/discover`` first; a server that does not
        answer it is legacy, so the same connection goes on to ``initialize``.
        """
        if self.role is not Role.CLIENT or self.era is Era.LEGACY:
            raise LocalProtocolError(INVALID_REQUEST, "cannot switch to the legacy era now")
        self.era = None
        self.revision = None

    def _with_request_meta(self, params: dict[str, Any] | None) -> dict[str, Any]:
        out = dict(params or {})
        meta = dict(out.get("_meta") or {})
        meta.setdefault(META_PROTOCOL_VERSION, self.revision)
        meta.setdefault(META_CLIENT_CAPABILITIES, self.capabilities)
        meta.setdefault(META_CLIENT_INFO, self.info)
        out["_meta"] = meta
        return out

    def initialize(self, *, now: float, protocol_version: str | None = None,
                   timeout: float | None = None) -> RequestId:
        """Client side: queue the ``initialize`` request (our info and capabilities)."""
        if self.role is not Role.CLIENT:
            raise LocalProtocolError(INVALID_REQUEST, "only a client sends initialize")
        self.state = transition(self.state, Trigger.INITIALIZE, role=self._role, remote=False)
        version = protocol_version or self.revisions[-1]
        request_id = self._next_id
        self._next_id += 1
        message = jsonrpc.request(request_id, "initialize", {
            "protocolVersion": version,
            "capabilities": self.capabilities,
            "clientInfo": self.info,
        })
        if self.validate:
            schema_for(version if version in LEGACY_REVISIONS else LATEST_LEGACY).check(
                "InitializeRequest", message)
        deadline = now + (timeout if timeout is not None else self.limits.request_timeout)
        self._outstanding[request_id] = _Outstanding("initialize", deadline, None)
        self._outbox.append((jsonrpc.dumps(message), None, ()))
        return request_id

    def notify(self, method: str, params: dict[str, Any] | None = None, *,
               related: RequestId | None = None) -> None:
        """Queue a notification; raises :class:`LocalProtocolError` if not allowed here.

        ``related`` names the incoming request this notification belongs to
        (progress, logs during a tool call), for transports that route by it.
        """
        if self.state is SessionState.CLOSED:
            raise ConnectionClosedError()
        if method == "notifications/progress":
            token = (params or {}).get("progressToken")
            if not any(e.progress_token == token for e in self._in_flight.values()):
                raise LocalProtocolError(
                    INVALID_PARAMS, f"progress token {token!r} belongs to no active request")
        spec = self._sendable(method, Kind.NOTIFICATION, params)
        message = jsonrpc.notification(method, params)
        self._check_outgoing(spec, message)
        self._outbox.append((jsonrpc.dumps(message), related, ()))

    def can_send(self, method: str, params: dict[str, Any] | None = None) -> bool:
        """Whether :meth:`request`/:meth:`notify` would accept ``method`` now."""
        try:
            spec = self._sendable(method, None, params)
        except LocalProtocolError:
            return False
        return spec is not None and self.state is not SessionState.CLOSED

    def _sendable(self, method: str, kind: Kind | None,
                  params: dict[str, Any] | None) -> MethodSpec:
        revision = self.revision or (
            self.modern_revisions[-1] if self.era is Era.MODERN else LATEST_LEGACY)
        spec = lookup(revision, method)
        if spec is None or (kind is not None and spec.kind is not kind) or not may_send(
                spec, self._role):
            raise LocalProtocolError(METHOD_NOT_FOUND,
                                     f"{method} cannot be sent by the {self._role} in {revision}")
        if spec.gate is not None and spec.gate[0] != self._role and \
                not self._peer_capabilities_known:
            return spec
        why = gate_failure(spec, params, self.capabilities, self.peer_capabilities, self._role,
                           revision)
        if why is not None:
            raise LocalProtocolError(METHOD_NOT_FOUND, f"cannot send {method}: {why}")
        return spec

    def _check_outgoing(self, spec: MethodSpec, message: dict[str, Any]) -> None:
        if not self.validate:
            return
        try:
            schema_for(self.revision or LATEST_LEGACY).check(spec.message_def, message)
        except SchemaError as exc:
            raise LocalProtocolError(
                INVALID_PARAMS, f"refusing to send an invalid {spec.method}: "
                f"{exc.path or '<message>'}: {exc.message}") from None
        except UnknownDefinition as exc:
            raise LocalProtocolError(
                INTERNAL_ERROR, f"cannot send {spec.method}: {exc}") from None

    def cancel(self, request_id: RequestId, reason: str | None = None) -> None:
        """Give up on a request we sent: forget it and tell the peer.

        A late response for it is dropped.  ``initialize`` is never cancelled
        on the wire (the spec forbids it); it is only forgotten.
        """
        pending = self._outstanding.pop(request_id, None)
        if pending is None:
            return
        if pending.progress_token is not None:
            self._progress_tokens.pop(pending.progress_token, None)
        if pending.method == "initialize" or self.state is SessionState.CLOSED:
            return
        params: dict[str, Any] = {"requestId": request_id}
        if reason:
            params["reason"] = reason
        self._outbox.append((jsonrpc.dumps(jsonrpc.notification("notifications/cancelled",
                                                                params)), None, ()))

    def next_deadline(self) -> float | None:
        """The earliest deadline among requests we sent, or None."""
        deadlines = [p.deadline for p in self._outstanding.values() if p.deadline is not None]
        return min(deadlines) if deadlines else None

    def expire(self, now: float) -> list[Event]:
        """Time out every request whose deadline is ``<= now`` (and cancel it on the wire)."""
        due = [(rid, p.method) for rid, p in self._outstanding.items()
               if p.deadline is not None and p.deadline <= now]
        events: list[Event] = []
        for request_id, method in due:
            self.cancel(request_id, "request timed out")
            events.append(RequestTimedOut(request_id, method))
        return events

    def close(self) -> list[Event]:
        """End the session: every request we sent fails, requests in flight are dropped."""
        self.state = SessionState.CLOSED
        events: list[Event] = [
            ErrorReceived(rid, p.method, ConnectionClosedError(
                f"connection closed before {p.method} was answered"))
            for rid, p in self._outstanding.items()
        ]
        self._outstanding.clear()
        self._progress_tokens.clear()
        self._in_flight.clear()
        return events


def _request_ids(message: Any) -> tuple[RequestId, ...]:
    """The ids of the requests in a decoded body (a message, a batch, a Classified)."""
    if type(message) is jsonrpc.Classified:
        return tuple(item.id for item in message.items
                     if type(item) is jsonrpc.IncomingRequest)
    items = message if isinstance(message, list) else [message]
    return tuple(item["id"] for item in items if isinstance(item, dict)
                 and "method" in item and jsonrpc.valid_id(item.get("id")))


def _invalid_params(exc: SchemaError) -> RemoteProtocolError:
    where = exc.path or "<message>"
    return RemoteProtocolError(INVALID_PARAMS, f"Invalid params: {where}: {exc.message}",
                               {"path": exc.path})
