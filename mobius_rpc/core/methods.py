"""The protocol as data: which methods exist in which revision, who sends them,
which capability gates them, and which schema definitions describe them.

Key absence is the version gate: a method missing from a revision's table does
not exist there, and a receiver answers it with -32601 (protocol-facts §1).
Every dispatcher decision about "may this message be sent or received here"
comes from :func:`lookup`; nothing else hard-codes method strings for gating.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from .revisions import LEGACY_REVISIONS, MODERN_REVISIONS

__all__ = ("Direction", "Kind", "MethodSpec", "lookup", "methods_for", "requests_from", "Gate")


class Direction(Enum):
    CLIENT_TO_SERVER = "c2s"
    SERVER_TO_CLIENT = "s2c"
    BOTH = "both"


class Kind(Enum):
    REQUEST = "request"
    NOTIFICATION = "notification"


#: A capability gate: (whose capability, path inside the capabilities object).
#: ``("server", ("tools",))`` means the server must have declared ``tools``.
Gate = tuple[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class MethodSpec:
    method: str
    kind: Kind
    direction: Direction
    #: schema definition of the whole request/notification message
    message_def: str
    #: schema definition of the ``result`` member (requests only)
    result_def: str | None
    #: capability that must have been declared, or None
    gate: Gate | None


_S = Direction.SERVER_TO_CLIENT
_C = Direction.CLIENT_TO_SERVER
_B = Direction.BOTH
_R = Kind.REQUEST
_N = Kind.NOTIFICATION

_ALL_LEGACY = frozenset(LEGACY_REVISIONS)
_FROM_2025_03 = frozenset(LEGACY_REVISIONS[1:])
_FROM_2025_06 = frozenset(LEGACY_REVISIONS[2:])
_ONLY_2025_11 = frozenset(LEGACY_REVISIONS[3:])
_MODERN = frozenset(MODERN_REVISIONS)

# (method, kind, direction, message def, result def, gate, revisions)
_TABLE: tuple[tuple[str, Kind, Direction, str, str | None, Gate | None, frozenset[str]], ...] = (
    ("initialize", _R, _C, "InitializeRequest", "InitializeResult", None, _ALL_LEGACY),
    ("notifications/initialized", _N, _C, "InitializedNotification", None, None, _ALL_LEGACY),
    ("ping", _R, _B, "PingRequest", "EmptyResult", None, _ALL_LEGACY),
    ("notifications/cancelled", _N, _B, "CancelledNotification", None, None, _ALL_LEGACY),
    ("notifications/progress", _N, _B, "ProgressNotification", None, None, _ALL_LEGACY),
    ("resources/list", _R, _C, "ListResourcesRequest", "ListResourcesResult",
     ("server", ("resources",)), _ALL_LEGACY),
    ("resources/templates/list", _R, _C, "ListResourceTemplatesRequest",
     "ListResourceTemplatesResult", ("server", ("resources",)), _ALL_LEGACY),
    ("resources/read", _R, _C, "ReadResourceRequest", "ReadResourceResult",
     ("server", ("resources",)), _ALL_LEGACY),
    ("resources/subscribe", _R, _C, "SubscribeRequest", "EmptyResult",
     ("server", ("resources", "subscribe")), _ALL_LEGACY),
    ("resources/unsubscribe", _R, _C, "UnsubscribeRequest", "EmptyResult",
     ("server", ("resources", "subscribe")), _ALL_LEGACY),
    ("notifications/resources/updated", _N, _S, "ResourceUpdatedNotification", None,
     ("server", ("resources", "subscribe")), _ALL_LEGACY),
    ("notifications/resources/list_changed", _N, _S, "ResourceListChangedNotification", None,
     ("server", ("resources", "listChanged")), _ALL_LEGACY),
    ("prompts/list", _R, _C, "ListPromptsRequest", "ListPromptsResult",
     ("server", ("prompts",)), _ALL_LEGACY),
    ("prompts/get", _R, _C, "GetPromptRequest", "GetPromptResult",
     ("server", ("prompts",)), _ALL_LEGACY),
    ("notifications/prompts/list_changed", _N, _S, "PromptListChangedNotification", None,
     ("server", ("prompts", "listChanged")), _ALL_LEGACY),
    ("tools/list", _R, _C, "ListToolsRequest", "ListToolsResult",
     ("server", ("tools",)), _ALL_LEGACY),
    ("tools/call", _R, _C, "CallToolRequest", "CallToolResult",
     ("server", ("tools",)), _ALL_LEGACY),
    ("notifications/tools/list_changed", _N, _S, "ToolListChangedNotification", None,
     ("server", ("tools", "listChanged")), _ALL_LEGACY),
    ("logging/setLevel", _R, _C, "SetLevelRequest", "EmptyResult",
     ("server", ("logging",)), _ALL_LEGACY),
    ("notifications/message", _N, _S, "LoggingMessageNotification", None,
     ("server", ("logging",)), _ALL_LEGACY),
    # 2024-11-05 defines no capability for completion; 2025-03-26 adds `completions`.
    ("completion/complete", _R, _C, "CompleteRequest", "CompleteResult", None,
     frozenset(("2024-11-05",))),
    ("completion/complete", _R, _C, "CompleteRequest", "CompleteResult",
     ("server", ("completions",)), _FROM_2025_03),
    ("sampling/createMessage", _R, _S, "CreateMessageRequest", "CreateMessageResult",
     ("client", ("sampling",)), _ALL_LEGACY),
    ("roots/list", _R, _S, "ListRootsRequest", "ListRootsResult",
     ("client", ("roots",)), _ALL_LEGACY),
    ("notifications/roots/list_changed", _N, _C, "RootsListChangedNotification", None,
     ("client", ("roots", "listChanged")), _ALL_LEGACY),
    ("elicitation/create", _R, _S, "ElicitRequest", "ElicitResult",
     ("client", ("elicitation",)), _FROM_2025_06),
    ("notifications/elicitation/complete", _N, _S, "ElicitationCompleteNotification", None,
     ("client", ("elicitation", "url")), _ONLY_2025_11),
    # Tasks (2025-11-25, experimental).  We implement the server as the receiver:
    # clients poll the tasks a task-augmented tools/call created.
    ("tasks/get", _R, _C, "GetTaskRequest", "GetTaskResult", None, _ONLY_2025_11),
    ("tasks/result", _R, _C, "GetTaskPayloadRequest", "GetTaskPayloadResult", None,
     _ONLY_2025_11),
    ("tasks/list", _R, _C, "ListTasksRequest", "ListTasksResult",
     ("server", ("tasks", "list")), _ONLY_2025_11),
    ("tasks/cancel", _R, _C, "CancelTaskRequest", "CancelTaskResult",
     ("server", ("tasks", "cancel")), _ONLY_2025_11),
    ("notifications/tasks/status", _N, _B, "TaskStatusNotification", None, None,
     _ONLY_2025_11),
    # Modern era (2026-07-28).  Gates for the modern era are checked against the
    # per-request client capabilities by the modern dispatcher.
    ("server/discover", _R, _C, "DiscoverRequest", "DiscoverResult", None, _MODERN),
    ("tools/list", _R, _C, "ListToolsRequest", "ListToolsResult",
     ("server", ("tools",)), _MODERN),
    ("tools/call", _R, _C, "CallToolRequest", "CallToolResult",
     ("server", ("tools",)), _MODERN),
    ("prompts/list", _R, _C, "ListPromptsRequest", "ListPromptsResult",
     ("server", ("prompts",)), _MODERN),
    ("prompts/get", _R, _C, "GetPromptRequest", "GetPromptResult",
     ("server", ("prompts",)), _MODERN),
    ("resources/list", _R, _C, "ListResourcesRequest", "ListResourcesResult",
     ("server", ("resources",)), _MODERN),
    ("resources/templates/list", _R, _C, "ListResourceTemplatesRequest",
     "ListResourceTemplatesResult", ("server", ("resources",)), _MODERN),
    ("resources/read", _R, _C, "ReadResourceRequest", "ReadResourceResult",
     ("server", ("resources",)), _MODERN),
    ("completion/complete", _R, _C, "CompleteRequest", "CompleteResult",
     ("server", ("completions",)), _MODERN),
    ("subscriptions/listen", _R, _C, "SubscriptionsListenRequest", "SubscriptionsListenResult",
     None, _MODERN),
    ("notifications/cancelled", _N, _B, "CancelledNotification", None, None, _MODERN),
    ("notifications/progress", _N, _S, "ProgressNotification", None, None, _MODERN),
    ("notifications/message", _N, _S, "LoggingMessageNotification", None,
     ("server", ("logging",)), _MODERN),
    ("notifications/subscriptions/acknowledged", _N, _S,
     "SubscriptionsAcknowledgedNotification", None, None, _MODERN),
    ("notifications/tools/list_changed", _N, _S, "ToolListChangedNotification", None,
     ("server", ("tools", "listChanged")), _MODERN),
    ("notifications/prompts/list_changed", _N, _S, "PromptListChangedNotification", None,
     ("server", ("prompts", "listChanged")), _MODERN),
    ("notifications/resources/list_changed", _N, _S, "ResourceListChangedNotification", None,
     ("server", ("resources", "listChanged")), _MODERN),
    ("notifications/resources/updated", _N, _S, "ResourceUpdatedNotification", None,
     ("server", ("resources", "subscribe")), _MODERN),
)


def _build() -> dict[str, dict[str, MethodSpec]]:
    tables: dict[str, dict[str, MethodSpec]] = {}
    for method, kind, direction, message_def, result_def, gate, revisions in _TABLE:
        spec = MethodSpec(method, kind, direction, message_def, result_def, gate)
        for revision in revisions:
            table = tables.setdefault(revision, {})
            if method in table:
                raise AssertionError(f"{method} listed twice for {revision}")
            table[method] = spec
    return tables


_TABLES = _build()


def lookup(revision: str, method: str) -> MethodSpec | None:
    """The spec of ``method`` in ``revision``, or None when it does not exist there."""
    table = _TABLES.get(revision)
    return None if table is None else table.get(method)


def methods_for(revision: str) -> dict[str, MethodSpec]:
    """Every method of a revision (a copy, safe to mutate)."""
    return dict(_TABLES.get(revision, {}))


def may_send(spec: MethodSpec, role: str) -> bool:
    """Whether ``role`` ("client" or "server") is allowed to send this method."""
    if spec.direction is Direction.BOTH:
        return True
    return (spec.direction is Direction.CLIENT_TO_SERVER) == (role == "client")


_REQUESTS_FROM = {
    sender: MappingProxyType({
        revision: MappingProxyType({method: spec for method, spec in table.items()
                                    if spec.kind is Kind.REQUEST and may_send(spec, sender)})
        for revision, table in _TABLES.items()})
    for sender in ("client", "server")}


def requests_from(sender: str) -> Mapping[str, Mapping[str, MethodSpec]]:
    """Per revision, the requests ``sender`` ("client" or "server") may send.

    What a receiver looks an incoming request up in: one lookup where
    :func:`lookup` plus the kind and direction checks would be three calls,
    on every request.  The tables are shared, hence read-only views.
    """
    return _REQUESTS_FROM[sender]
