"""Per-upstream settings of the gateway, and how an ``mcpServers`` entry sets them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ("UpstreamOptions", "options_from_entry")


@dataclass(frozen=True)
class UpstreamOptions:
    """Per-upstream settings (an ``mcpServers`` entry may override the timeouts)."""

    #: seconds one call may take before it is cancelled upstream
    timeout: float = 60.0
    connect_timeout: float = 30.0
    #: seconds between health pings (0: none)
    health_interval: float = 30.0
    breaker_threshold: int = 5
    breaker_reset: float = 30.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    #: roots the gateway reports to an upstream that asks outside any call
    roots: tuple[dict[str, Any], ...] = field(default=())
    #: pin the upstream's protocol revision (None: probe, newest era first)
    revision: str | None = None


def options_from_entry(entry: Mapping[str, Any], base: UpstreamOptions) -> UpstreamOptions:
    """``base`` with the entry's ``timeout``/``connectTimeout`` (seconds) applied."""
    changes: dict[str, Any] = {}
    for key, attr in (("timeout", "timeout"), ("connectTimeout", "connect_timeout")):
        value = entry.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{key!r} must be a positive number of seconds")
        changes[attr] = float(value)
    revision = entry.get("protocolVersion")
    if revision is not None:
        if not isinstance(revision, str):
            raise ValueError("'protocolVersion' must be a string")
        changes["revision"] = revision
    if not changes:
        return base
    return replace(base, **changes)
