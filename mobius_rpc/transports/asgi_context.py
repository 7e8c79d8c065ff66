"""The transport context of a message that arrived over ASGI (HTTP or WebSocket).

Every ASGI transport describes its messages the same way: the request's
headers as one plain dict (the only header reading anything above the
transports gets) and the client's address from the ASGI scope.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import Scope

from ..core.types import TransportContext, TransportKind

__all__ = ("headers_of", "asgi_context", "PRINCIPAL_KEY")

#: the ASGI scope key where an authenticating wrapper in front of the transports
#: leaves the caller's principal; every message of that request carries it
PRINCIPAL_KEY = "mobius.principal"


def headers_of(scope: Scope) -> dict[str, str]:
    """The request headers as a plain dict (names are lower case in ASGI).

    Looked up about ten times per POST, where Starlette's ``Headers`` scans
    the raw list on each lookup.  Built backwards so that, as there, the
    first of repeated headers wins.
    """
    return {name.decode("latin-1"): value.decode("latin-1")
            for name, value in reversed(scope["headers"])}


def asgi_context(kind: TransportKind, scope: Scope, headers: Mapping[str, str], *,
                 session_id: str | None = None) -> TransportContext:
    """The context of a message carried by the request ``scope`` describes."""
    client = scope.get("client")
    remote = (str(client[0]), int(client[1])) if client else None
    return TransportContext(kind, remote, headers, None, session_id, scope.get(PRINCIPAL_KEY))
