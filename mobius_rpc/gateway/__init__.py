"""The gateway: external MCP servers behind one Mobius endpoint.

:class:`Gateway` re-serves upstream tools, resources, templates, prompts and
completions through a :class:`~mobius_rpc.server.Server` (``attach``), with
namespacing (:mod:`.router`), per-call relaying (:mod:`.relay`; a legacy
upstream's input request to a 2026-07-28 downstream parks the call,
:mod:`.parking`), upstream tools run as the gateway's tasks (:mod:`.tasks`), long-lived
supervised upstream sessions (:mod:`.upstreams`) and pinned tool definitions
(:mod:`.pinning`, :mod:`.pinstore`).
"""

from .gateway import Gateway, expand, read_servers
from .parking import ParkingOptions
from .pinning import Pinning, ToolChange, set_digest, tool_digest
from .pinstore import MemoryPinStore, PinStore, SqlPinStore, pin_store_for
from .router import Naming, Router
from .upstreams import Upstream, UpstreamDown, UpstreamOptions

__all__ = ("Gateway", "expand", "MemoryPinStore", "Naming", "ParkingOptions", "PinStore",
           "Pinning", "Router",
           "SqlPinStore", "ToolChange", "Upstream", "UpstreamDown", "UpstreamOptions",
           "pin_store_for", "read_servers", "set_digest", "tool_digest")
