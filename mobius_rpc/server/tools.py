"""Tools: registration from type-hinted functions, listing and calling.

The JSON Schema of a tool's input (and, when the return type says so, its
output) comes from the function's type hints.  Calling a tool follows the
split the spec draws between protocol errors and tool errors:

* unknown tool -> JSON-RPC error -32602;
* bad arguments, a raised exception, a refused client capability -> a result
  with ``isError: true`` and a readable message, so the model can correct
  itself (2025-11-25 "Error Handling"; older revisions allow the same);
* an :class:`McpError` raised by the handler itself -> that JSON-RPC error;
* structured output that breaks the tool's own ``outputSchema`` -> -32603
  (a bug in the server, never sent malformed).
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
import orjson

from ..core.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    ConnectionClosedError,
    LocalProtocolError,
    McpError,
    RequestTimeoutError,
)
from ..framing.param_headers import InvalidHeaderAnnotation, header_parameters
from .content import is_content, text, to_content_blocks
from .context import CapabilityError, Context, InputRequired
from .hints import ArgumentError, Signature, analyze
from .registry import Registry

__all__ = ("Tool", "ToolRegistry", "ToolError")

log = logging.getLogger("mobius_rpc.server")
#: what sync handlers usually return: never awaitable, so the ABC check is skipped
_PLAIN_VALUES = frozenset({str, dict, list, int, float, bool, type(None)})

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class ToolError(Exception):
    """Raise from a tool to report a failure to the model as an ``isError`` result."""


@dataclass(slots=True)
class Tool:
    name: str
    fn: Callable[..., Any]
    signature: Signature
    title: str | None = None
    description: str | None = None
    annotations: dict[str, Any] | None = None
    icons: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None
    structured: bool = True
    #: 2025-11-25 tasks: "forbidden" (default), "optional" or "required"
    task_support: str = "forbidden"
    #: arguments mirrored into ``Mcp-Param-*`` headers: {argument: header suffix}
    header_parameters: dict[str, str] = field(default_factory=dict)
    _output_validator: Any = field(default=None, repr=False)

    def definition(self) -> dict[str, Any]:
        """The ``Tool`` object for ``tools/list``."""
        out: dict[str, Any] = {"name": self.name, "inputSchema": self.signature.input_schema}
        if self.title:
            out["title"] = self.title
        if self.description:
            out["description"] = self.description
        if self.structured and self.signature.output_schema is not None:
            out["outputSchema"] = self.signature.output_schema
        if self.annotations:
            out["annotations"] = self.annotations
        if self.icons:
            out["icons"] = self.icons
        if self.meta:
            out["_meta"] = self.meta
        if self.task_support != "forbidden":
            out["execution"] = {"taskSupport": self.task_support}
        return out


def _error_result(message: str) -> dict[str, Any]:
    return {"content": [text(message)], "isError": True}


class ToolRegistry(Registry[Tool]):
    """The tools of one server, in registration order."""

    def add(self, fn: Callable[..., Any], *, name: str | None = None, title: str | None = None,
            description: str | None = None, annotations: dict[str, Any] | None = None,
            icons: list[dict[str, Any]] | None = None, meta: dict[str, Any] | None = None,
            structured: bool = True, task_support: str = "forbidden",
            input_schema: dict[str, Any] | None = None) -> Tool:
        tool_name = name or fn.__name__
        if task_support not in ("forbidden", "optional", "required"):
            raise ValueError("task_support is 'forbidden', 'optional' or 'required'")
        if not _NAME.match(tool_name):
            raise ValueError(f"invalid tool name {tool_name!r}: use 1-128 of [A-Za-z0-9_.-]")
        signature = analyze(fn, context_type=Context, input_schema=input_schema)
        try:
            headers = header_parameters(signature.input_schema)
        except InvalidHeaderAnnotation as exc:
            raise ValueError(f"tool {tool_name!r}: {exc}") from None
        tool = Tool(tool_name, fn, signature, title=title,
                    description=description or signature.description, annotations=annotations,
                    icons=icons, meta=meta, structured=structured, task_support=task_support,
                    header_parameters=headers)
        if structured and signature.output_schema is not None:
            tool._output_validator = jsonschema_rs.validator_for(signature.output_schema)
        return self._put(tool_name, tool)

    def header_parameters(self, name: str) -> dict[str, str]:
        """The ``Mcp-Param-*`` headers a call of tool ``name`` must carry (none if unknown)."""
        tool = self._entries.get(name)
        return tool.header_parameters if tool is not None else {}

    def supports_tasks(self) -> bool:
        return any(tool.task_support != "forbidden" for tool in self._entries.values())

    async def call(self, name: str, arguments: dict[str, Any] | None, ctx: Context
                   ) -> dict[str, Any]:
        tool = self._entries.get(name)
        if tool is None:
            raise McpError(INVALID_PARAMS, f"Unknown tool: {name}", {"name": name})
        try:
            kwargs = tool.signature.bind(arguments)
        except ArgumentError as exc:
            where = f"{exc.path}: " if exc.path else ""
            return _error_result(f"Invalid arguments for tool {name}: {where}{exc.message}")
        if tool.signature.context_param:
            kwargs[tool.signature.context_param] = ctx
        try:
            value = tool.fn(**kwargs)
            if type(value) not in _PLAIN_VALUES and inspect.isawaitable(value):
                # only here can the handler suspend, so only here can a limit on how
                # long it runs act (a synchronous handler cannot be cancelled at all)
                limit = ctx.limit_handler
                value = await (value if limit is None else limit(name, value))
        except InputRequired:
            raise  # modern era: the server answers InputRequiredResult
        except (ToolError, CapabilityError, LocalProtocolError, RequestTimeoutError,
                ConnectionClosedError) as exc:
            return _error_result(str(exc) or type(exc).__name__)
        except McpError:
            raise
        except Exception as exc:
            log.exception("tool %s failed", name)
            return _error_result(f"Tool {name} failed: {type(exc).__name__}: {exc}")
        return self._result(tool, value)

    def _result(self, tool: Tool, value: Any) -> dict[str, Any]:
        if isinstance(value, dict) and "content" in value and (
                "isError" in value or "structuredContent" in value):
            return value  # a complete CallToolResult built by the handler
        if is_content(value):  # content blocks the handler built itself
            return {"content": value if isinstance(value, list) else [value], "isError": False}
        if tool.structured and tool.signature.output_schema is not None:
            structured = tool.signature.serialize_output(value)
            if tool._output_validator is not None and not tool._output_validator.is_valid(
                    structured):
                error = next(iter(tool._output_validator.iter_errors(structured)))
                log.error("tool %s returned output that breaks its outputSchema: %s",
                          tool.name, error.message)
                raise McpError(INTERNAL_ERROR, f"Internal error: tool {tool.name} produced "
                               "output that does not match its outputSchema")
            shown = value if isinstance(value, str) else orjson.dumps(structured).decode()
            return {"content": [text(shown)],
                    "structuredContent": structured, "isError": False}
        blocks = to_content_blocks(value)
        if blocks is None:
            if value is None:
                blocks = []
            else:
                data = tool.signature.serialize_output(value)
                blocks = [text(data if isinstance(data, str) else orjson.dumps(data).decode())]
        return {"content": blocks, "isError": False}
