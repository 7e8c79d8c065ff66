"""What a server offers, apart from how requests are answered: the registration half.

:class:`Registration` holds the server's identity, its eras and limits, the
tool, resource and prompt registries, completers and taken-over methods,
the decorators that fill them, and the capabilities they add up to.  It
knows nothing of sessions: :class:`~.dispatch.Dispatcher` answers requests
from it, and :class:`~.app.Server` puts the two together with the
transports.  A policy or a gateway wraps the dispatcher (its middleware)
without touching this class.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.limits import Limits
from ..core.modern import CachePolicy
from ..core.revisions import LEGACY_REVISIONS, MODERN_REVISIONS
from .context import Context
from .prompts import PromptRegistry
from .resources import ResourceRegistry
from .tasks import TASKS_CAPABILITY, TaskManager
from .tools import ToolRegistry

if TYPE_CHECKING:
    from ..runtime.session import Session

__all__ = ("Registration", "RequestHandler", "NotificationHandler", "Completer")

F = TypeVar("F", bound=Callable[..., Any])
#: low-level API: ``(ctx, params) -> result`` for a taken-over request method
RequestHandler = Callable[[Context, dict[str, Any]], Awaitable[dict[str, Any]]]
#: low-level API: ``(session, params)`` for a client notification
NotificationHandler = Callable[["Session", dict[str, Any]], Awaitable[None]]
#: ``(argument, value, context_arguments) -> values`` for completion/complete
Completer = Callable[..., Any]


class Registration:
    """An MCP server's surface: tools, resources, prompts, completion, logging."""

    def __init__(self, name: str, version: str = "0.0.0", *, title: str | None = None,
                 instructions: str | None = None, revisions: tuple[str, ...] = LEGACY_REVISIONS,
                 modern_revisions: tuple[str, ...] = MODERN_REVISIONS,
                 limits: Limits | None = None, page_size: int = 100,
                 default_log_level: str = "info", validate: bool = True,
                 cache_policy: CachePolicy | None = None, state_key: bytes | None = None,
                 state_ttl: float = 600.0, task_manager: TaskManager | None = None) -> None:
        """``revisions``/``modern_revisions`` choose the eras served (either may be
        empty).  ``state_key`` seals MRTR ``requestState``; give every replica
        of a load-balanced server the same key (default: random per process).
        """
        self.info: dict[str, Any] = {"name": name, "version": version}
        if title:
            self.info["title"] = title
        self.instructions = instructions
        self.revisions = revisions
        self.modern_revisions = modern_revisions
        self.cache_policy = cache_policy or CachePolicy()
        self.state_key = state_key or os.urandom(32)
        self.state_ttl = state_ttl
        self.task_manager = task_manager or TaskManager()
        self.limits = limits or Limits()
        self.page_size = page_size
        self.default_log_level = default_log_level
        self.validate = validate
        self.tools = ToolRegistry(lambda: self._changed("tools"))
        self.resources = ResourceRegistry(lambda: self._changed("resources"))
        self.prompts = PromptRegistry(lambda: self._changed("prompts"))
        self.completers: dict[tuple[str, str], Completer] = {}
        #: methods taken over with :meth:`request_handler` / :meth:`notification_handler`
        self.request_handlers: dict[str, RequestHandler] = {}
        self.notification_handlers: dict[str, NotificationHandler] = {}
        #: told the kind ("tools", "resources", "prompts") whose list changed;
        #: the dispatcher sets it to tell the clients
        self.on_list_changed: Callable[[str], None] = lambda kind: None
        #: where per-session state and resource updates go when replicas share the
        #: legacy sessions (a ``server.relay.SessionRelay``; None in one process)
        self.relay: Any = None
        #: takes a received request over synchronously, answering it later with
        #: ``Session.answer_taken``, or returns None (a gateway's lane; see
        #: ``Dispatcher.take_request``): ``(session, request) -> cancel | None``
        self.lane: Callable[[Any, Any], Callable[[], None] | None] | None = None
        #: capabilities() as of the last registration; every connection (one
        #: per stateless request) shares it, so it is dropped on any change
        self._capabilities: dict[str, Any] | None = None
        #: capabilities served beyond what the registries add up to (a gateway's tasks)
        self.extra_capabilities: dict[str, Any] = {}

    # ------------------------------------------------------------ decorators

    def tool(self, name: str | None = None, *, title: str | None = None,
             description: str | None = None, annotations: dict[str, Any] | None = None,
             icons: list[dict[str, Any]] | None = None, meta: dict[str, Any] | None = None,
             structured: bool = True, task_support: str = "forbidden",
             input_schema: dict[str, Any] | None = None) -> Callable[[F], F]:
        """Register a function as a tool; its type hints become the input schema.

        ``task_support`` ("optional"/"required") lets 2025-11-25 clients run it as
        a task they poll (``tools/call`` with ``params.task``).  ``input_schema``
        publishes and enforces a hand-written schema instead of the derived one.
        """
        def register(fn: F) -> F:
            self.tools.add(fn, name=name, title=title, description=description,
                           annotations=annotations, icons=icons, meta=meta, structured=structured,
                           task_support=task_support, input_schema=input_schema)
            return fn
        return register

    def resource(self, uri: str, *, name: str | None = None, title: str | None = None,
                 description: str | None = None, mime_type: str | None = None,
                 annotations: dict[str, Any] | None = None,
                 icons: list[dict[str, Any]] | None = None,
                 meta: dict[str, Any] | None = None) -> Callable[[F], F]:
        """Register a resource; a URI with ``{...}`` expressions is an RFC 6570 template."""
        def register(fn: F) -> F:
            self.resources.add(uri, fn, name=name, title=title, description=description,
                               mime_type=mime_type, annotations=annotations, icons=icons,
                               meta=meta)
            return fn
        return register

    def prompt(self, name: str | None = None, *, title: str | None = None,
               description: str | None = None, icons: list[dict[str, Any]] | None = None,
               meta: dict[str, Any] | None = None) -> Callable[[F], F]:
        def register(fn: F) -> F:
            self.prompts.add(fn, name=name, title=title, description=description, icons=icons,
                             meta=meta)
            return fn
        return register

    def completion(self, ref_type: str, ref: str) -> Callable[[F], F]:
        """Register argument completion for a prompt (``"ref/prompt"``, prompt name) or a
        resource template (``"ref/resource"``, template string).

        The function gets ``(argument_name, value, context_arguments)`` and returns a
        list of strings (or a ``{"values", "total", "hasMore"}`` dict).
        """
        if ref_type not in ("ref/prompt", "ref/resource"):
            raise ValueError("ref_type is 'ref/prompt' or 'ref/resource'")

        def register(fn: F) -> F:
            self.completers[(ref_type, ref)] = fn
            self._capabilities = None
            return fn
        return register

    def request_handler(self, method: str) -> Callable[[RequestHandler], RequestHandler]:
        """Low-level API: take over a standard request method entirely.

        The handler gets ``(ctx, params)`` (already validated) and returns the
        result dict, which is validated against the method's result schema.
        """
        def register(fn: RequestHandler) -> RequestHandler:
            self.request_handlers[method] = fn
            self._capabilities = None
            return fn
        return register

    def notification_handler(self, method: str
                             ) -> Callable[[NotificationHandler], NotificationHandler]:
        """Low-level API: react to a client notification (e.g. roots list_changed)."""
        def register(fn: NotificationHandler) -> NotificationHandler:
            self.notification_handlers[method] = fn
            return fn
        return register

    # ------------------------------------------------------------ capabilities

    def capabilities(self) -> dict[str, Any]:
        caps: dict[str, Any] = {"logging": {}}
        if len(self.tools) or "tools/call" in self.request_handlers:
            caps["tools"] = {"listChanged": True}
        if len(self.resources) or "resources/read" in self.request_handlers:
            caps["resources"] = {"subscribe": True, "listChanged": True}
        if len(self.prompts) or "prompts/get" in self.request_handlers:
            caps["prompts"] = {"listChanged": True}
        if self.completers or "completion/complete" in self.request_handlers:
            caps["completions"] = {}
        if self.tools.supports_tasks():
            caps["tasks"] = copy.deepcopy(TASKS_CAPABILITY)
        caps.update(self.extra_capabilities)
        return caps

    def add_capabilities(self, **capabilities: Any) -> None:
        """Declare capabilities another layer serves through taken-over methods (a
        gateway running upstream tools as tasks); sessions opened from now on see them."""
        self.extra_capabilities.update(capabilities)
        self._capabilities = None

    def _changed(self, kind: str) -> None:
        self._capabilities = None
        self.on_list_changed(kind)

    def current_capabilities(self) -> dict[str, Any]:
        """:meth:`capabilities`, computed once per change of the registries."""
        if self._capabilities is None:
            self._capabilities = self.capabilities()
        return self._capabilities
