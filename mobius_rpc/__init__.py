"""Mobius RPC: a Model Context Protocol engine written from the wire up.

The curated public API.  Layers, from the bottom: ``core`` (sans-I/O protocol
state, schemas, errors), ``framing`` (bytes <-> messages), ``transports``
(I/O), ``runtime`` (tasks, timeouts), ``server`` (the embeddable API).
"""

from __future__ import annotations

from .core.connection import Connection as Connection
from .core.connection import Role as Role
from .core.errors import ConnectionClosedError as ConnectionClosedError
from .core.errors import McpError as McpError
from .core.errors import RequestTimeoutError as RequestTimeoutError
from .core.limits import Limits as Limits
from .core.revisions import ALL_REVISIONS as ALL_REVISIONS
from .core.revisions import LATEST_LEGACY as LATEST_LEGACY
from .core.revisions import LEGACY_REVISIONS as LEGACY_REVISIONS
from .core.version import __version__ as __version__
from .runtime.session import Session as Session
from .server.app import Server as Server
from .server.context import CapabilityError as CapabilityError
from .server.context import Context as Context
from .server.hints import Param as Param
from .server.resources import ResourceNotFound as ResourceNotFound
from .server.tools import ToolError as ToolError
from .transports.memory import memory_pair as memory_pair
from .transports.stdio import StdioTransport as StdioTransport

__all__ = (
    "ALL_REVISIONS",
    "CapabilityError",
    "Connection",
    "ConnectionClosedError",
    "Context",
    "LATEST_LEGACY",
    "LEGACY_REVISIONS",
    "Limits",
    "McpError",
    "Param",
    "RequestTimeoutError",
    "ResourceNotFound",
    "Role",
    "Server",
    "Session",
    "StdioTransport",
    "ToolError",
    "memory_pair",
)
