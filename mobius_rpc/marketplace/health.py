"""Health of an installed extension: start it sandboxed, handshake, list its tools.

The check goes through the same launch entry the gateway uses, so a healthy
result means the extension really starts under its sandbox with the
organization's configuration, not merely that its files exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

from ..client.client import Client
from ..client.targets import StdioTarget
from ..core.errors import McpError

__all__ = ("probe_entry", "list_tools")


def _target(entry: Mapping[str, Any]) -> StdioTarget:
    return StdioTarget(str(entry["command"]), tuple(entry["args"]), dict(entry["env"]),
                       entry.get("cwd"))


async def list_tools(entry: Mapping[str, Any], *, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The tools of the server ``entry`` launches (McpError/TimeoutError when it fails)."""
    with anyio.fail_after(timeout):
        async with Client(_target(entry), timeout=timeout, connect_timeout=timeout,
                          label="extension") as client:
            return await client.list_tools()


async def probe_entry(entry: Mapping[str, Any], *, timeout: float = 60.0) -> dict[str, Any]:
    """``{"status": "ok", "tools": n, "toolNames": [...]}``, or ``status`` "error" and why."""
    try:
        tools = await list_tools(entry, timeout=timeout)
    except TimeoutError:
        return {"status": "error", "error": f"no answer within {timeout:.0f} s"}
    except (McpError, OSError) as exc:
        return {"status": "error", "error": str(exc)[:500]}
    return {"status": "ok", "tools": len(tools),
            "toolNames": sorted(str(t.get("name")) for t in tools)[:200]}
