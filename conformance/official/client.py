"""The client program the official conformance suite drives: ``client.py <server-url>``.

The suite starts a mock MCP server per scenario and runs this with the URL as
the last argument and the scenario's name in ``MCP_CONFORMANCE_SCENARIO``.
One generic behaviour covers the scenarios: connect with
:class:`mobius_rpc.client.Client` (the era chosen by the probe, or pinned to
``MCP_CONFORMANCE_PROTOCOL_VERSION`` when the suite sets it), list the tools,
call each one with arguments made from its input schema, answer sampling,
elicitation (accepting, so schema defaults apply) and roots, then close.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import anyio

from mobius_rpc.client import Client
from mobius_rpc.core.errors import McpError

log = logging.getLogger("conformance-client")


def sample_value(schema: Any) -> Any:
    """A plain value that satisfies a simple property schema."""
    if not isinstance(schema, dict):
        return "test"
    if "default" in schema:
        return schema["default"]
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind
    if kind in ("number", "integer"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return arguments_for(schema)
    return "test-value"


def arguments_for(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    properties = schema.get("properties") or {}
    required = schema.get("required") or []
    return {name: sample_value(properties.get(name)) for name in required
            if isinstance(name, str)}


async def sampling(params: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "model": "mobius-conformance",
            "content": {"type": "text", "text": "A sampled answer."}, "stopReason": "endTurn"}


async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
    if params.get("mode") == "url":
        return {"action": "accept"}
    return {"action": "accept", "content": {}}


async def roots() -> list[dict[str, Any]]:
    return [{"uri": "file:///tmp/conformance", "name": "conformance"}]


def planned_calls(tools: list[dict[str, Any]], context: dict[str, Any]
                  ) -> list[tuple[str, dict[str, Any]]]:
    """The tool calls to make: the ones the scenario's context spells out, the
    schema round trip of the 2020-12 preservation scenario, or one call of
    every tool with arguments made from its schema."""
    if isinstance(context.get("toolCalls"), list):
        return [(call["name"], call.get("arguments") or {}) for call in context["toolCalls"]]
    names = {tool["name"] for tool in tools}
    if "json_schema_echo" in names:
        return [("json_schema_echo", {"schema": tool.get("inputSchema")})
                for tool in tools if tool["name"] != "json_schema_echo"]
    return [(tool["name"], arguments_for(tool.get("inputSchema"))) for tool in tools]


async def main(url: str) -> int:
    revision = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION") or None
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    async with Client(url, revision=revision, sampling=sampling, elicitation=elicitation,
                      roots=roots, timeout=20, name="mobius-conformance-client") as client:
        tools = await client.list_tools() if "tools" in client.server_capabilities else []
        for name, arguments in planned_calls(tools, context):
            try:
                await client.call_tool(name, arguments)
            except McpError as exc:
                log.info("tool %s: %s", name, exc)
    return 0


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    raise SystemExit(anyio.run(main, sys.argv[-1]))
