"""The object a handler receives to talk back to the client during a request.

A handler declares a parameter annotated with :class:`Context` and gets one
per request.  Everything that needs the client (sampling, elicitation, roots)
is refused with :class:`CapabilityError` when the client did not declare the
capability, before anything is sent.  Progress and log messages are
fire-and-forget notifications tied to the current request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..core.errors import (
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_CLIENT_CAPABILITY,
    LocalProtocolError,
    McpError,
)
from ..core.events import RequestReceived
from ..core.gates import has_capability
from ..core.modern import META_RELATED_TASK, RequestMeta
from ..core.revisions import has_form_mode_field, has_progress_message, has_stream_polling
from ..core.types import RequestId, TransportContext, TransportKind

if TYPE_CHECKING:
    from ..runtime.session import Session
    from .tasks import TaskManager

__all__ = ("Context", "ContextHost", "CapabilityError", "InputRequired", "LOG_LEVELS",
           "MRTR_METHODS", "send_log")

#: the requests that may answer InputRequiredResult (2026-07-28, MRTR)
MRTR_METHODS = frozenset(("tools/call", "prompts/get", "resources/read"))

#: syslog severities in increasing order (RFC 5424, as MCP logging uses them)
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "notice", "warning", "error", "critical",
                               "alert", "emergency")
_LEVEL_RANK = {name: rank for rank, name in enumerate(LOG_LEVELS)}


class CapabilityError(McpError):
    """The client did not declare the capability this call needs."""

    def __init__(self, capability: str) -> None:
        super().__init__(METHOD_NOT_FOUND,
                         f"the client did not declare the {capability} capability")
        self.capability = capability


class InputRequired(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside a modern-era handler that needs client input it does not have yet.

    ``requests`` maps keys to the embedded requests; the server turns it into
    ``InputRequiredResult`` and the client's retry runs the handler again with
    the answers available under the same keys.
    """

    def __init__(self, requests: dict[str, dict[str, Any]]) -> None:
        super().__init__(f"input required: {', '.join(requests)}")
        self.requests = requests


class ContextHost(Protocol):
    """What a :class:`Context` needs of the server it runs in (a ``Server``)."""

    task_manager: TaskManager
    default_log_level: str


class Context:
    """Per-request access to the client, progress and logging, in either era.

    In the legacy era ``sample``/``elicit``/``list_roots`` send a request to the
    client and wait.  In the modern era (2026-07-28) there are no server->client
    requests: the first time a handler asks, the request ends with
    ``InputRequiredResult``; when the client retries with the answer, the
    handler runs again and the same call returns it (multi round-trip
    requests).  Handlers are written once and work in both eras, provided
    they do nothing irreversible before their last input request.
    """

    def __init__(self, server: ContextHost, session: Session, request: RequestReceived,
                 answers: dict[str, Any] | None = None) -> None:
        self.server = server
        self.session = session
        self.request = request
        self.request_id: RequestId = request.id
        self.method = request.method
        self.params = request.params
        #: the request's 2026-07-28 ``_meta`` as the connection parsed it (None: legacy)
        self.request_meta: RequestMeta | None = request.meta
        self._answers = answers or {}
        self._input_count = 0
        self._next_key: str | None = None
        #: set when this handler runs as a task (2025-11-25): client requests it
        #: makes carry the related-task metadata and mark the task input_required
        self.task_id: str | None = None
        #: set by a layer that limits how long a tool's handler may run (the security
        #: limiter): a tool call awaits ``limit_handler(tool, awaitable)`` in place
        #: of the handler's awaitable (see :meth:`.tools.Tools.call`)
        self.limit_handler: Callable[[str, Awaitable[Any]], Awaitable[Any]] | None = None
        #: set by that layer for a tool call run as a task (2025-11-25), whose answer
        #: (the task's creation) comes before the tool runs: the task runs its whole
        #: run as ``limit_task(task_ctx, run)`` (see :func:`.builtins.start_tool_task`)
        self.limit_task: Callable[[Context, Callable[[], Awaitable[dict[str, Any]]]],
                                  Awaitable[dict[str, Any]]] | None = None

    # ------------------------------------------------------------- information

    @property
    def meta(self) -> dict[str, Any]:
        """The request's raw ``_meta`` (progress token, related task ...)."""
        meta = self.params.get("_meta")
        return meta if isinstance(meta, dict) else {}

    @property
    def transport(self) -> TransportContext:
        """Where the request came from: transport kind, remote address, headers,
        the stdio process identity, and the authenticated principal once an
        authenticator has set it.  The only way a handler sees headers."""
        context = self.request.transport
        return context if context is not None else _IN_PROCESS

    @property
    def modern(self) -> bool:
        """Whether this request is in the modern (stateless) era."""
        return self.request_meta is not None

    @property
    def client_capabilities(self) -> dict[str, Any]:
        if self.request_meta is not None:
            return self.request_meta.client_capabilities
        return self.session.connection.peer_capabilities

    @property
    def client_info(self) -> dict[str, Any]:
        if self.request_meta is not None:
            return self.request_meta.client_info or {}
        return self.session.connection.peer_info

    @property
    def protocol_version(self) -> str | None:
        if self.request_meta is not None:
            return self.request_meta.version
        return self.session.connection.revision

    def _require(self, *path: str) -> None:
        if has_capability(self.client_capabilities, path):
            return
        if self.modern:
            required: dict[str, Any] = {}
            node = required
            for key in path:
                node[key] = {}
                node = node[key]
            raise McpError(MISSING_CLIENT_CAPABILITY,
                           f"the client did not declare the {'.'.join(path)} capability",
                           {"requiredCapabilities": required})
        raise CapabilityError(".".join(path))

    async def _request(self, method: str, params: dict[str, Any], timeout: float | None,
                       key: str | None = None) -> dict[str, Any]:
        if self.modern:
            return self._input(method, params, key)
        # The connection refuses (LocalProtocolError) what the negotiated
        # revision or the client's sub-capabilities do not allow.
        if self.task_id is None:
            return await self.session.request(method, params, timeout=timeout)
        params = {**params, "_meta": {**(params.get("_meta") or {}),
                                      META_RELATED_TASK: {"taskId": self.task_id}}}
        manager = self.server.task_manager
        manager.set_status(self.session, self.task_id, "input_required")
        try:
            return await self.session.request(method, params, timeout=timeout)
        finally:
            manager.set_status(self.session, self.task_id, "working")

    def _input(self, method: str, params: dict[str, Any], key: str | None) -> dict[str, Any]:
        """Modern era: the answer to this input request, or raise InputRequired."""
        if self.method not in MRTR_METHODS:
            raise McpError(INVALID_REQUEST, f"{self.method} cannot ask the client for input; "
                           "only tools/call, prompts/get and resources/read can")
        # Without an explicit key, keys are positional: the n-th input request
        # of this handler run.  A retry re-runs the handler, so the same call
        # gets the same key.
        if key is None:
            key = f"{method.split('/')[0]}-{self._input_count}"
        self._input_count += 1
        answer = self._answers.get(key)
        if isinstance(answer, dict):
            return answer
        raise InputRequired({key: {"method": method, "params": params}})

    async def ask(self, method: str, params: dict[str, Any], *, timeout: float | None = None,
                  key: str | None = None) -> dict[str, Any]:
        """Send an already-built client request (``sampling/createMessage``,
        ``elicitation/create``, ``roots/list``) as it is, in either era.

        For proxies relaying what another server asks: the capability the
        method needs is checked first, as :meth:`sample` and :meth:`elicit` do.
        """
        if method == "sampling/createMessage":
            self._require("sampling")
        elif method == "elicitation/create":
            self._require(*(("elicitation", "url") if params.get("mode") == "url"
                            else ("elicitation",)))
        elif method == "roots/list":
            self._require("roots")
        else:
            raise McpError(METHOD_NOT_FOUND, f"{method} is not a request a server sends")
        return await self._request(method, params, timeout, key or self._next_key)

    async def gather(self, **asks: Awaitable[Any]) -> dict[str, Any]:
        """Several client inputs at once, by key: ``await ctx.gather(name=ctx.elicit(...),
        model=ctx.sample(...))``.

        In the modern era the missing ones go out together in one
        ``InputRequiredResult`` (one round trip); in the legacy era they are
        sent one after another.  Pass the calls unawaited.
        """
        answers: dict[str, Any] = {}
        missing: dict[str, dict[str, Any]] = {}
        for key, ask in asks.items():
            self._next_key = key
            try:
                answers[key] = await ask
            except InputRequired as needed:
                missing.update(needed.requests)
            finally:
                self._next_key = None
        if missing:
            raise InputRequired(missing)
        return answers

    @property
    def answers(self) -> dict[str, Any]:
        """Client answers gathered so far (modern era)."""
        return dict(self._answers)

    # ------------------------------------------------------------------ client

    async def sample(self, messages: str | list[dict[str, Any]], *, max_tokens: int = 1024,
                     system_prompt: str | None = None, temperature: float | None = None,
                     stop_sequences: list[str] | None = None,
                     model_preferences: dict[str, Any] | None = None,
                     include_context: str | None = None,
                     tools: list[dict[str, Any]] | None = None,
                     tool_choice: dict[str, Any] | None = None,
                     timeout: float | None = None, key: str | None = None) -> dict[str, Any]:
        """Ask the client's model for a completion (``sampling/createMessage``).

        A plain string becomes one user text message.  Returns the
        ``CreateMessageResult`` (``role``, ``content``, ``model``, ...).
        """
        self._require("sampling")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": {"type": "text", "text": messages}}]
        params: dict[str, Any] = {"messages": messages, "maxTokens": max_tokens}
        for name, value in (("systemPrompt", system_prompt), ("temperature", temperature),
                            ("stopSequences", stop_sequences),
                            ("modelPreferences", model_preferences),
                            ("includeContext", include_context), ("tools", tools),
                            ("toolChoice", tool_choice)):
            if value is not None:
                params[name] = value
        return await self._request("sampling/createMessage", params, timeout,
                                   key or self._next_key)

    async def elicit(self, message: str, schema: dict[str, Any] | type, *,
                     timeout: float | None = None, key: str | None = None) -> dict[str, Any]:
        """Ask the user to fill a form (``elicitation/create``, form mode).

        ``schema`` is a flat object schema of primitive fields, or a dataclass /
        TypedDict whose fields become one.  Returns the ``ElicitResult``
        (``action`` accept/decline/cancel, ``content`` when accepted).
        """
        self._require("elicitation")
        if isinstance(schema, type):
            from .hints import object_schema_for_type
            schema = object_schema_for_type(schema)
        params: dict[str, Any] = {"message": message, "requestedSchema": schema}
        if has_form_mode_field(self.protocol_version):
            params["mode"] = "form"
        return await self._request("elicitation/create", params, timeout, key or self._next_key)

    async def elicit_url(self, message: str, url: str, elicitation_id: str = "", *,
                         timeout: float | None = None) -> dict[str, Any]:
        """Send the user to a URL (``elicitation/create``, URL mode, 2025-11-25)."""
        self._require("elicitation", "url")
        params = {"mode": "url", "message": message, "url": url}
        if not self.modern:  # 2026-07-28 dropped elicitationId with the completion notice
            params["elicitationId"] = elicitation_id
        return await self._request("elicitation/create", params, timeout)

    async def elicitation_complete(self, elicitation_id: str) -> None:
        """Tell the client a URL-mode elicitation finished (2025-11-25 only).

        Raises :class:`LocalProtocolError` where the notification does not
        exist (other revisions) or the client did not declare URL elicitation.
        """
        await self.session.notify("notifications/elicitation/complete",
                                  {"elicitationId": elicitation_id})

    async def list_roots(self, *, timeout: float | None = None,
                         key: str | None = None) -> list[dict[str, Any]]:
        """The client's roots (``roots/list``)."""
        self._require("roots")
        result = await self._request("roots/list", {}, timeout, key or self._next_key)
        roots = result.get("roots")
        return list(roots) if isinstance(roots, list) else []

    # -------------------------------------------------------- progress, logging

    def close_sse_stream(self) -> bool:
        """End this request's SSE response now, before the result (2025-11-25 polling).

        Over Streamable HTTP a long call need not hold a connection open: the
        client reconnects after the server's ``retry`` delay with GET and
        ``Last-Event-ID`` and receives what followed, the result included.
        Returns False where that does not apply (other transports or revisions).
        """
        if not has_stream_polling(self.protocol_version):
            return False
        return self.session.detach_response(self.request_id)

    async def report_progress(self, progress: float, total: float | None = None,
                              message: str | None = None) -> None:
        """Progress for this request; does nothing when the client sent no token."""
        token = self.meta.get("progressToken")
        if token is None or self.session.closed:
            return
        params: dict[str, Any] = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None and has_progress_message(self.protocol_version):
            params["message"] = message
        try:
            await self.session.notify("notifications/progress", params)
        except LocalProtocolError:
            pass  # the request finished or was cancelled meanwhile

    async def log(self, level: str, data: Any, *, logger: str | None = None) -> None:
        """A ``notifications/message`` to the client, if ``level`` passes its filter."""
        if level not in _LEVEL_RANK:
            raise ValueError(f"unknown log level {level!r}; use one of {LOG_LEVELS}")
        threshold: str | None = None
        if self.request_meta is not None:
            # Modern era: only when this request asked for logs, at its level.
            threshold = self.request_meta.log_level
            if threshold not in _LEVEL_RANK:
                return
        await send_log(self.session, level, data, logger=logger,
                       threshold=threshold or self.server.default_log_level,
                       per_session=threshold is None)

    async def debug(self, data: Any) -> None:
        await self.log("debug", data)

    async def info(self, data: Any) -> None:
        await self.log("info", data)

    async def warning(self, data: Any) -> None:
        await self.log("warning", data)

    async def error(self, data: Any) -> None:
        await self.log("error", data)


#: the context of a request handed over without one (in-process calls)
_IN_PROCESS = TransportContext(TransportKind.MEMORY)


def level_passes(level: str, threshold: str) -> bool:
    return _LEVEL_RANK[level] >= _LEVEL_RANK.get(threshold, 0)


async def send_log(session: Session, level: str, data: Any, *, logger: str | None,
                   threshold: str, per_session: bool) -> None:
    """A ``notifications/message`` to ``session`` if ``level`` passes the
    threshold: the session's own (``logging/setLevel``, else ``threshold``) when
    ``per_session``, else ``threshold`` (a modern request's ``_meta`` level)."""
    if per_session:
        threshold = session.state.get("log_level", threshold)
    if not level_passes(level, threshold) or session.closed:
        return
    params: dict[str, Any] = {"level": level, "data": data}
    if logger:
        params["logger"] = logger
    await session.notify("notifications/message", params)

