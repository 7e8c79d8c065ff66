"""Protocol revisions, their era, and version negotiation.

MCP has two eras.  Legacy revisions (2024-11-05 .. 2025-11-25) negotiate a
version once, in ``initialize``; the modern revision (2026-07-28) names the
version in every request's ``_meta``.  This module is the single list of what
we speak and the one place that answers era questions: which era a request
belongs to (:func:`is_modern_request`, :func:`looks_modern`) and which
features a revision has (the ``has_*`` predicates), so every other module
asks here instead of hard-coding revision strings.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from .modern import META_PROTOCOL_VERSION

__all__ = (
    "Era",
    "LEGACY_REVISIONS",
    "MODERN_REVISIONS",
    "ALL_REVISIONS",
    "LATEST_LEGACY",
    "LATEST",
    "era_of",
    "looks_modern",
    "is_modern_request",
    "negotiate_legacy",
    "has_batches",
    "has_progress_message",
    "has_form_mode_field",
    "has_stream_polling",
    "has_tasks",
    "served_capabilities",
    "served_tool",
)


class Era(Enum):
    #: initialize handshake, sessions, server->client requests.
    LEGACY = "legacy"
    #: stateless requests with per-request ``_meta`` (2026-07-28 onward).
    MODERN = "modern"


LEGACY_REVISIONS: tuple[str, ...] = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_REVISIONS: tuple[str, ...] = ("2026-07-28",)
ALL_REVISIONS: tuple[str, ...] = LEGACY_REVISIONS + MODERN_REVISIONS
LATEST_LEGACY = LEGACY_REVISIONS[-1]
LATEST = ALL_REVISIONS[-1]


def era_of(revision: str) -> Era:
    """The era a revision belongs to; unknown strings raise ``ValueError``."""
    if revision in LEGACY_REVISIONS:
        return Era.LEGACY
    if revision in MODERN_REVISIONS:
        return Era.MODERN
    raise ValueError(f"unknown protocol revision {revision!r}")


def looks_modern(params: dict[str, Any]) -> bool:
    """Whether a request announces itself as modern (names a version in ``_meta``)."""
    meta = params.get("_meta")
    return isinstance(meta, dict) and META_PROTOCOL_VERSION in meta


def is_modern_request(method: object, params: object, *, legacy: tuple[str, ...],
                      modern: tuple[str, ...], declared: str | None = None) -> bool:
    """Whether a request that opens a connection (or a stateless HTTP POST)
    belongs to the modern era, on a peer that serves ``legacy`` and ``modern``.

    Modern when the era is served at all and the request says so: its
    ``MCP-Protocol-Version`` header (``declared``, HTTP only) names a modern
    revision, or its ``_meta`` names a version.  A request that says nothing
    is modern only where there is no legacy era to fall back on, or when it
    is ``server/discover``, which only the modern era has.  A request without
    ``_meta`` on a server of both eras is therefore legacy, and must follow
    ``initialize`` (the connection's error says what either era needed).
    """
    if not modern:
        return False
    if declared is not None and declared in modern:
        return True
    if isinstance(params, dict) and looks_modern(params):
        return True
    return not legacy or method == "server/discover"


def negotiate_legacy(requested: object, supported: tuple[str, ...] = LEGACY_REVISIONS) -> str:
    """The revision a server answers ``initialize`` with.

    Lifecycle rule (all legacy revisions): if the server supports the requested
    version it MUST answer with it; otherwise it answers with another version
    it supports, which SHOULD be its latest.  The client decides whether it can
    live with that.  Nothing here raises: negotiation never fails on the server.
    """
    if isinstance(requested, str) and requested in supported:
        return requested
    return supported[-1]


def has_batches(revision: str) -> bool:
    """JSON-RPC batches exist only in 2025-03-26 (added there, removed in 2025-06-18)."""
    return revision == "2025-03-26"


def has_progress_message(revision: str | None) -> bool:
    """``notifications/progress`` carries a ``message`` from 2025-03-26 on."""
    return revision != "2024-11-05"


def has_form_mode_field(revision: str | None) -> bool:
    """Elicitation requests name their ``mode`` (form or URL) from 2025-11-25 on."""
    return revision not in ("2024-11-05", "2025-03-26", "2025-06-18")


def has_stream_polling(revision: str | None) -> bool:
    """2025-11-25 Streamable HTTP: a server may end an SSE response before its
    answer, after a priming event with an id, and the client resumes it with
    ``Last-Event-ID`` (later revisions have no such response streams)."""
    return revision == "2025-11-25"


def has_tasks(revision: str | None) -> bool:
    """Task-augmented requests, the ``tasks`` capability and ``Tool.execution``
    exist only in 2025-11-25 (2026-07-28 moved tasks out of the core protocol
    into an extension we do not serve).  Elsewhere a ``task`` field in a
    request is just an unknown param: every revision's schema admits extra
    fields, so the request is served as a plain one."""
    return revision == "2025-11-25"


def served_capabilities(capabilities: dict[str, Any], revision: str | None) -> dict[str, Any]:
    """What of our server ``capabilities`` a client of ``revision`` is told: the
    ``tasks`` capability only where the revision defines it (a server serving
    several revisions declares it once, for the one that has it)."""
    if "tasks" in capabilities and not has_tasks(revision):
        return {k: v for k, v in capabilities.items() if k != "tasks"}
    return capabilities


def served_tool(tool: dict[str, Any], revision: str | None) -> dict[str, Any]:
    """A ``Tool`` definition as ``revision`` has it: ``execution`` (task support)
    only where tasks exist.  The same object when nothing is left out."""
    if "execution" in tool and not has_tasks(revision):
        return {k: v for k, v in tool.items() if k != "execution"}
    return tool
