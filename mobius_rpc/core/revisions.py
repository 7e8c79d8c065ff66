"""Protocol revisions, their era, and version negotiation.

MCP has two eras.  Legacy revisions (2024-11-05 .. 2025-11-25) negotiate a
version once, in ``initialize``; the modern revision (2026-07-28) names the
version in every request's ``_meta``.  This module is the single list of what
we speak, so every other module asks here instead of hard-coding strings.
"""

from __future__ import annotations

from enum import Enum

__all__ = (
    "Era",
    "LEGACY_REVISIONS",
    "MODERN_REVISIONS",
    "ALL_REVISIONS",
    "LATEST_LEGACY",
    "LATEST",
    "era_of",
    "negotiate_legacy",
    "has_batches",
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
