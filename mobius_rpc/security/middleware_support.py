"""What the security middleware looks up and how it words its errors and records.

Kept apart from :mod:`.middleware` so that the request path there reads as the
decisions it makes: who owns a thing (:class:`Ownership`), the server's own
errors for an unknown or missing target (a refusal must look exactly like
them), the annotations a rule may test, and the outcome an exception gives a
use's audit record.
"""

from __future__ import annotations

from typing import Any

import anyio

from ..core.errors import INVALID_PARAMS, RESOURCE_NOT_FOUND, McpError
from ..core.revisions import MODERN_REVISIONS
from ..server.context import Context, InputRequired
from ..server.registration import Registration
from .limits import LimitExceeded

__all__ = ("Ownership", "NO_DETAIL", "failure", "present", "registration", "unknown",
           "not_found", "resource_annotations")

#: the detail of a use nothing more is said about (never changed: a fresh {} is recorded)
NO_DETAIL: dict[str, Any] = {}


class Ownership:
    """Which organization a tool, resource or prompt belongs to, when one does.

    Things nobody assigned are shared: every organization's rules decide on
    them.  A layer that installs things per organization (a gateway's
    upstream, a marketplace extension) assigns them here, or passes its own
    ``(kind, name) -> org | None`` function to the middleware instead.
    """

    def __init__(self) -> None:
        self._owners: dict[tuple[str, str], str] = {}

    def assign(self, kind: str, name: str, org_id: str) -> None:
        self._owners[(kind, name)] = org_id

    def release(self, kind: str, name: str) -> None:
        self._owners.pop((kind, name), None)

    def __call__(self, kind: str, name: str) -> str | None:
        return self._owners.get((kind, name))


def failure(exc: BaseException) -> tuple[str, McpError | None, dict[str, Any]]:
    """A use's outcome, error and detail for the record when ``exc`` ended it."""
    if isinstance(exc, LimitExceeded):
        return "limited", exc, {"limit": exc.limit}
    if isinstance(exc, McpError):
        return "error", exc, NO_DETAIL
    if isinstance(exc, InputRequired):
        return "input-required", None, NO_DETAIL
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return "cancelled", None, NO_DETAIL
    return "error", McpError(0, f"{type(exc).__name__}: {exc}"), NO_DETAIL


def present(detail: dict[str, Any]) -> dict[str, Any]:
    """The detail without the items that say nothing (None)."""
    return {k: v for k, v in detail.items() if v is not None}


def registration(ctx: Context) -> Registration:
    server = ctx.server
    if not isinstance(server, Registration):
        raise McpError(INVALID_PARAMS, "no registration to check against")
    return server


def unknown(what: str, name: Any, with_data: bool) -> McpError:
    """The server's own error for an unknown tool, prompt or template."""
    return McpError(INVALID_PARAMS, f"Unknown {what}: {name}",
                    {"name": name} if with_data else None)


def not_found(ctx: Context, uri: Any) -> McpError:
    """The server's not-found error for a resource, in the request's era."""
    code = INVALID_PARAMS if ctx.protocol_version in MODERN_REVISIONS else RESOURCE_NOT_FOUND
    return McpError(code, f"Resource not found: {uri}", {"uri": uri})


def resource_annotations(ctx: Context, uri: Any) -> dict[str, Any] | None:
    if not isinstance(uri, str):
        return None
    resources = registration(ctx).resources
    static = resources.get(uri)
    if static is not None:
        return static.info.annotations
    for template in resources.templates:
        if template.template.match(uri) is not None:
            return template.info.annotations
    return None
