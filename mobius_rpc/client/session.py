"""A client session: the client side of the same runtime, with typed helpers.

This is the protocol-level client (one session over one stream).  Server→
client requests go to plain async callables: ``sampling``, ``elicitation``
and ``roots``; declaring one of them declares the matching capability.
Notifications from the server are kept in :attr:`ClientSession.notifications`
and passed to ``on_notification`` when given.

Like everything in the runtime it takes the caller's task group::

    async with anyio.create_task_group() as tg:
        client = ClientSession(stream, sampling=my_sampler)
        await client.start(tg)
        await client.initialize()
        tools = await client.list_tools()
        client.close()
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..core.connection import Connection, Role
from ..core.errors import INTERNAL_ERROR, METHOD_NOT_FOUND, McpError
from ..core.events import NotificationReceived, RequestReceived, SessionInitialized
from ..core.limits import Limits
from ..core.modern import META_RELATED_TASK
from ..core.revisions import LATEST_LEGACY, LEGACY_REVISIONS, MODERN_REVISIONS, Era
from ..core.types import RequestId
from ..runtime.session import ForwardDone, ForwardProgress, ProgressCallback, Session
from ..transports.base import MessageStream

__all__ = ("ClientSession", "RequestHelpers", "CallHandlers")

Callback = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
RootsCallback = Callable[[], Awaitable[list[dict[str, Any]]]]
NotificationCallback = Callable[[str, dict[str, Any]], Any]

#: notifications kept in ``ClientSession.notifications`` before the oldest half goes
MAX_KEPT_NOTIFICATIONS = 1000


@dataclass(frozen=True, slots=True)
class CallHandlers:
    """Who answers what a server asks while it serves one of our calls.

    A client's own callbacks answer for the whole connection; a proxy (the
    gateway) serves many callers over one connection and must send a server's
    sampling, elicitation or roots request, and its log messages, back to the
    caller whose call caused them.  Passed with ``request(..., handlers=...)``.

    Over a legacy connection a server request carries nothing that names the
    call it belongs to, so it is attributed to the one call in flight that has
    handlers; when several are in flight it goes to them only if they share
    one ``owner`` (the same downstream session, say).  Otherwise it waits
    (``ClientSession.ambiguous_wait`` at most) until the calls in flight
    share one owner again, as when the other callers' calls end, and is
    refused if they do not rather than risk asking the wrong user.  A
    2026-07-28 input request always belongs to its call.
    """

    sampling: Callback | None = None
    elicitation: Callback | None = None
    roots: RootsCallback | None = None
    #: gets ``notifications/message`` (and other unsolicited notifications) sent meanwhile
    on_notification: NotificationCallback | None = None
    #: calls with the same owner may share an ambiguous server request
    owner: object = None


class _Ambiguous(Exception):  # noqa: N818 - a signal
    """Several calls with different owners are in flight: no attribution."""


def with_schema_defaults(params: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """An accepted form answer with the requested schema's defaults filled in.

    A user who leaves a field alone means its default; the server should not
    have to know which fields a client's form showed pre-filled.
    """
    schema = params.get("requestedSchema")
    if answer.get("action") != "accept" or not isinstance(schema, dict):
        return answer
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return answer
    content = dict(answer.get("content") or {})
    for name, spec in properties.items():
        if name not in content and isinstance(spec, dict) and _answerable(spec.get("default")):
            content[name] = spec["default"]
    return {**answer, "content": content}


def _answerable(value: Any) -> bool:
    """Whether an ``ElicitResult`` may carry ``value``: the schema of every revision
    admits strings, integers, booleans and string lists only (so no 95.5)."""
    if isinstance(value, (str, bool, int)):
        return True
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class RequestHelpers:
    """Typed shortcuts for the requests whose shape is the same for every caller.

    Shared by :class:`ClientSession` (one session on one stream) and
    :class:`~mobius_rpc.client.Client` (a managed connection); each supplies
    its own :meth:`request`, and keeps its own list methods (a page versus
    every page).
    """

    async def request(self, method: str, params: dict[str, Any] | None = None, *,
                      timeout: float | None = None,
                      on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        raise NotImplementedError

    async def ping(self) -> dict[str, Any]:
        return await self.request("ping")

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None, *,
                        timeout: float | None = None,
                        on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name}
        if arguments is not None:
            params["arguments"] = arguments
        return await self.request("tools/call", params, timeout=timeout,
                                  on_progress=on_progress)

    async def read_resource(self, uri: str) -> dict[str, Any]:
        return await self.request("resources/read", {"uri": uri})

    async def subscribe(self, uri: str) -> dict[str, Any]:
        return await self.request("resources/subscribe", {"uri": uri})

    async def unsubscribe(self, uri: str) -> dict[str, Any]:
        return await self.request("resources/unsubscribe", {"uri": uri})

    async def get_prompt(self, name: str, arguments: dict[str, str] | None = None
                         ) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name}
        if arguments is not None:
            params["arguments"] = arguments
        return await self.request("prompts/get", params)

    async def complete(self, ref: dict[str, Any], argument: str, value: str,
                       context: dict[str, str] | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"ref": ref, "argument": {"name": argument, "value": value}}
        if context is not None:
            params["context"] = {"arguments": context}
        return await self.request("completion/complete", params)

    async def set_logging_level(self, level: str) -> dict[str, Any]:
        return await self.request("logging/setLevel", {"level": level})


class ClientSession(RequestHelpers):
    #: seconds a server request that cannot be attributed to one caller's call
    #: waits for the calls in flight to share one owner (see CallHandlers)
    ambiguous_wait: float = 30.0

    def __init__(self, stream: MessageStream, *, name: str = "mobius-client",
                 version: str = "0.1.0", sampling: Callback | None = None,
                 elicitation: Callback | None = None, roots: RootsCallback | None = None,
                 on_notification: Callable[[str, dict[str, Any]], Any] | None = None,
                 revisions: tuple[str, ...] = LEGACY_REVISIONS,
                 modern_revisions: tuple[str, ...] = MODERN_REVISIONS,
                 capabilities: dict[str, Any] | None = None,
                 limits: Limits | None = None, validate: bool = True) -> None:
        caps: dict[str, Any] = dict(capabilities or {})
        if sampling is not None:
            caps.setdefault("sampling", {})
        if elicitation is not None:
            caps.setdefault("elicitation", {"form": {}, "url": {}})
        if roots is not None:
            caps.setdefault("roots", {"listChanged": True})
        self._sampling = sampling
        self._elicitation = elicitation
        self._roots = roots
        self._on_notification = on_notification
        #: the most recent notifications (bounded: a flooding server cannot grow it)
        self.notifications: list[tuple[str, dict[str, Any]]] = []
        #: per-call handlers of the calls in flight, by a number of our own
        self._calls: dict[int, CallHandlers] = {}
        self._next_call = 0
        #: set (and replaced) whenever a call with handlers ends
        self._call_ended: anyio.Event | None = None
        #: JSON-RPC id of each request of a call with handlers -> that call's number
        self._call_ids: dict[RequestId, int] = {}
        #: the handlers of the server's tasks we follow, by task id (see follow_task)
        self._task_handlers: dict[str, CallHandlers] = {}
        self.connection = Connection(Role.CLIENT, info={"name": name, "version": version},
                                     capabilities=caps, revisions=revisions,
                                     modern_revisions=modern_revisions, limits=limits,
                                     validate=validate)
        self.session = Session(self.connection, stream, self)
        self.initialize_result: dict[str, Any] | None = None

    # ---------------------------------------------------------------- running

    async def start(self, tg: TaskGroup) -> None:
        """Start the session's receive loop in ``tg``."""
        await tg.start(self.session.run)

    def close(self) -> None:
        """Stop the session (from any task); requests in flight fail."""
        self.session.close()

    async def aclose(self) -> None:
        """Stop the session and wait until its transport is closed."""
        self.session.close()
        await self.session.wait_finished()

    async def initialize(self, protocol_version: str = LATEST_LEGACY, *,
                         timeout: float = 30.0) -> dict[str, Any]:
        """Start the session at ``protocol_version``.

        Legacy revisions run the initialize handshake and return the
        ``InitializeResult``; the modern revision has no handshake, so this
        sends ``server/discover`` and returns its ``DiscoverResult``.
        """
        connection = self.connection
        if protocol_version in connection.modern_revisions:
            connection.use_modern(protocol_version)
            result = await self.request("server/discover", {}, timeout=timeout)
            self.initialize_result = result
            return result
        request_id = connection.initialize(now=self.session.clock(),
                                           protocol_version=protocol_version, timeout=timeout)
        result = await self.session.wait_for(request_id, "initialize", timeout)
        self.initialize_result = result
        return result

    # ------------------------------------------------------ SessionHandler API

    async def handle_request(self, session: Session, request: RequestReceived
                             ) -> dict[str, Any]:
        handlers = self._related(request.id) or self._of_task(request.params)
        if handlers is None:
            try:
                handlers = self._attributed()
            except _Ambiguous:
                handlers = await self._wait_attributable(request.method)
        return await self._answer(request.method, request.params, handlers)

    async def _wait_attributable(self, method: str) -> CallHandlers | None:
        """Wait until the calls in flight share one owner; refuse the request if
        they do not within ``ambiguous_wait`` (it would go to the wrong user)."""
        with anyio.move_on_after(self.ambiguous_wait):
            while True:
                if self._call_ended is None:
                    self._call_ended = anyio.Event()
                await self._call_ended.wait()
                try:
                    return self._attributed()
                except _Ambiguous:
                    continue
        raise McpError(INTERNAL_ERROR, f"{method}: several calls are in flight for different "
                       "callers; cannot tell which one this is for")

    def follow_task(self, task_id: str, handlers: CallHandlers) -> Callable[[], None]:
        """Attribute what the server sends about its task ``task_id`` (its
        related-task ``_meta``) to ``handlers``, whatever else is in flight,
        until the returned function is called."""
        self._task_handlers[task_id] = handlers

        def unfollow() -> None:
            if self._task_handlers.get(task_id) is handlers:
                del self._task_handlers[task_id]
        return unfollow

    def _of_task(self, params: dict[str, Any]) -> CallHandlers | None:
        """The handlers following the task a server message names (related-task _meta)."""
        if not self._task_handlers:
            return None
        meta = params.get("_meta")
        related = meta.get(META_RELATED_TASK) if isinstance(meta, dict) else None
        task_id = related.get("taskId") if isinstance(related, dict) else None
        return self._task_handlers.get(task_id) if isinstance(task_id, str) else None

    def _related(self, request_id: RequestId) -> CallHandlers | None:
        """The handlers of the call a server request names by the way it came: a
        transport that tells (Streamable HTTP: the call's own response stream)."""
        related = getattr(self.session.stream, "related_requests", None)
        if not isinstance(related, dict):
            return None
        ours = related.pop(request_id, None)
        key = self._call_ids.get(ours) if ours is not None else None
        return self._calls.get(key) if key is not None else None

    def _attributed(self) -> CallHandlers | None:
        """The handlers of the call a legacy server request belongs to (None: ours)."""
        calls = self._calls
        if not calls:
            return None
        if len(calls) == 1:
            return next(iter(calls.values()))
        first = next(iter(calls.values()))
        if first.owner is not None and all(c.owner is first.owner for c in calls.values()):
            return first
        raise _Ambiguous()

    async def _answer(self, method: str, params: dict[str, Any],
                      handlers: CallHandlers | None = None) -> dict[str, Any]:
        """Serve a server->client request (legacy) or an input request (modern MRTR)."""
        sampling, elicitation, roots = self._sampling, self._elicitation, self._roots
        if handlers is not None:
            sampling = handlers.sampling or sampling
            elicitation = handlers.elicitation or elicitation
            roots = handlers.roots or roots
        if method == "sampling/createMessage" and sampling is not None:
            return await sampling(params)
        if method == "elicitation/create" and elicitation is not None:
            return with_schema_defaults(params, await elicitation(params))
        if method == "roots/list" and roots is not None:
            return {"roots": await roots()}
        raise McpError(METHOD_NOT_FOUND, f"Method not found: {method}")

    async def handle_notification(self, session: Session, note: NotificationReceived) -> None:
        kept = self.notifications
        kept.append((note.method, note.params))
        if len(kept) > MAX_KEPT_NOTIFICATIONS:
            del kept[:MAX_KEPT_NOTIFICATIONS // 2]
        callback = self._on_notification
        if note.method == "notifications/message":
            try:
                handlers = self._of_task(note.params) or self._attributed()
            except _Ambiguous:
                handlers = None
            if handlers is not None and handlers.on_notification is not None:
                callback = handlers.on_notification
        if callback is not None:
            outcome = callback(note.method, note.params)
            if inspect.isawaitable(outcome):
                await outcome

    def session_initialized(self, session: Session, event: SessionInitialized) -> None:
        pass

    def session_closed(self, session: Session) -> None:
        pass

    def may_send_early(self, request: RequestReceived) -> bool:
        return True  # a client's sessions are long-lived, never stateless exchanges

    # ----------------------------------------------------------------- calls

    async def request(self, method: str, params: dict[str, Any] | None = None, *,
                      timeout: float | None = None,
                      on_progress: ProgressCallback | None = None,
                      max_rounds: int = 8,
                      handlers: CallHandlers | None = None,
                      first: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and return its final result.

        In the modern era an ``InputRequiredResult`` is answered transparently:
        each input request goes to the matching callback (``handlers`` first),
        and the request is retried (new id) with ``inputResponses`` and the
        echoed ``requestState``.  ``first``: the answer of a first round already
        sent some other way (:meth:`forward`); the request goes on from it.
        """
        if handlers is None:
            return await self._request(method, params, timeout, on_progress, max_rounds, None,
                                       first=first)
        key = self._next_call = self._next_call + 1
        self._calls[key] = handlers
        ids: list[RequestId] = []
        try:
            return await self._request(method, params, timeout, on_progress, max_rounds,
                                       handlers, (key, ids), first)
        finally:
            self._end_call(key, ids)

    def forward(self, method: str, params: dict[str, Any] | None, *, timeout: float,
                done: ForwardDone, on_progress: ForwardProgress | None = None,
                handlers: CallHandlers | None = None) -> RequestId:
        """Send a request whose answer goes to ``done(result, error)`` from the
        receive loop, with no task waiting (see :meth:`Session.forward`); what the
        server asks meanwhile goes to ``handlers``, as with :meth:`request`.

        In the modern era a result may be an ``InputRequiredResult``: ``done``
        gets it as it is (:meth:`request` is the one that answers and retries).
        """
        if handlers is None:
            return self.session.forward(method, params, timeout=timeout, done=done,
                                        on_progress=on_progress)
        key = self._next_call = self._next_call + 1
        request_ids: list[RequestId] = []

        def finished(result: dict[str, Any] | None, error: McpError | None) -> None:
            self._end_call(key, request_ids)
            done(result, error)

        self._calls[key] = handlers
        try:
            request_id = self.session.forward(method, params, timeout=timeout, done=finished,
                                              on_progress=on_progress)
        except BaseException:
            del self._calls[key]
            raise
        request_ids.append(request_id)
        self._call_ids[request_id] = key
        return request_id

    def end_forward(self, request_id: RequestId, reason: str) -> None:
        """Give up on a forwarded request (the server is told; ``done`` is not called)."""
        self.session.cancel_forward(request_id, reason)
        key = self._call_ids.get(request_id)
        if key is not None:
            self._end_call(key, [request_id])

    def _end_call(self, key: int, request_ids: list[RequestId]) -> None:
        self._calls.pop(key, None)
        for request_id in request_ids:
            self._call_ids.pop(request_id, None)
        ended, self._call_ended = self._call_ended, None
        if ended is not None:
            ended.set()

    async def _request(self, method: str, params: dict[str, Any] | None,
                       timeout: float | None, on_progress: ProgressCallback | None,
                       max_rounds: int, handlers: CallHandlers | None,
                       call: tuple[int, list[RequestId]] | None = None,
                       first: dict[str, Any] | None = None) -> dict[str, Any]:
        def note(request_id: RequestId) -> None:
            if call is not None:  # what the server sends about it names this call
                call[1].append(request_id)
                self._call_ids[request_id] = call[0]
        result = first if first is not None else await self.session.request(
            method, params, timeout=timeout, on_progress=on_progress, on_id=note)
        rounds = 0
        while (self.connection.era is Era.MODERN
               and result.get("resultType") == "input_required"):
            rounds += 1
            if rounds > max_rounds:
                raise McpError(INTERNAL_ERROR,
                               f"{method} asked for input more than {max_rounds} times")
            responses: dict[str, Any] = {}
            for key, embedded in (result.get("inputRequests") or {}).items():
                responses[key] = await self._answer(embedded.get("method", ""),
                                                    embedded.get("params") or {}, handlers)
            retry = dict(params or {})
            retry["inputResponses"] = responses
            if "requestState" in result:
                retry["requestState"] = result["requestState"]
            result = await self.session.request(method, retry, timeout=timeout,
                                                on_progress=on_progress)
        return result

    async def list_tools(self, cursor: str | None = None) -> dict[str, Any]:
        return await self.request("tools/list", {"cursor": cursor} if cursor else None)

    async def list_resources(self, cursor: str | None = None) -> dict[str, Any]:
        return await self.request("resources/list", {"cursor": cursor} if cursor else None)

    async def list_resource_templates(self, cursor: str | None = None) -> dict[str, Any]:
        return await self.request("resources/templates/list",
                                  {"cursor": cursor} if cursor else None)

    async def list_prompts(self, cursor: str | None = None) -> dict[str, Any]:
        return await self.request("prompts/list", {"cursor": cursor} if cursor else None)

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        await self.session.notify(method, params)

