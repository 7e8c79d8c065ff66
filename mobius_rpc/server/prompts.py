"""Prompts: templates of messages, registered from functions.

Prompt arguments are strings on the wire (``prompts/get`` params
``arguments: {string: string}``), so the function's parameters become the
prompt's ``arguments`` list (name, description, required) and values are passed
as strings.  A handler returns a ``str`` (one user message), a list of
messages / strings / content blocks, or a complete ``GetPromptResult`` dict.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.errors import INVALID_PARAMS, McpError
from .content import text, to_content_blocks
from .context import Context
from .hints import Signature, analyze
from .registry import Registry

__all__ = ("Prompt", "PromptRegistry")


@dataclass(slots=True)
class Prompt:
    name: str
    fn: Callable[..., Any]
    signature: Signature
    title: str | None
    description: str | None
    icons: list[dict[str, Any]] | None
    meta: dict[str, Any] | None

    def arguments(self) -> list[dict[str, Any]]:
        schema = self.signature.input_schema
        required = set(schema.get("required", []))
        out = []
        for arg_name, prop in schema.get("properties", {}).items():
            arg: dict[str, Any] = {"name": arg_name, "required": arg_name in required}
            if isinstance(prop, dict):
                if prop.get("description"):
                    arg["description"] = prop["description"]
                if prop.get("title"):
                    arg["title"] = prop["title"]
            out.append(arg)
        return out

    def definition(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "arguments": self.arguments()}
        for key, value in (("title", self.title), ("description", self.description),
                           ("icons", self.icons), ("_meta", self.meta)):
            if value:
                out[key] = value
        return out


class PromptRegistry(Registry[Prompt]):
    """The prompts of one server, in registration order."""

    def add(self, fn: Callable[..., Any], *, name: str | None = None, title: str | None = None,
            description: str | None = None, icons: list[dict[str, Any]] | None = None,
            meta: dict[str, Any] | None = None) -> Prompt:
        signature = analyze(fn, context_type=Context)
        prompt = Prompt(name or fn.__name__, fn, signature, title,
                        description or signature.description, icons, meta)
        return self._put(prompt.name, prompt)

    async def render(self, name: str, arguments: dict[str, Any] | None, ctx: Context
                     ) -> dict[str, Any]:
        prompt = self._entries.get(name)
        if prompt is None:
            raise McpError(INVALID_PARAMS, f"Unknown prompt: {name}", {"name": name})
        args = dict(arguments or {})
        missing = [a["name"] for a in prompt.arguments() if a["required"] and a["name"] not in args]
        if missing:
            raise McpError(INVALID_PARAMS,
                           f"Invalid params: prompt {name} needs argument(s) {', '.join(missing)}")
        known = set(prompt.signature.input_schema.get("properties", {}))
        kwargs: dict[str, Any] = {k: v for k, v in args.items() if k in known}
        if prompt.signature.context_param:
            kwargs[prompt.signature.context_param] = ctx
        value = prompt.fn(**kwargs)
        if inspect.isawaitable(value):
            value = await value
        return _result(value, prompt.description)


def _message(item: Any) -> dict[str, Any]:
    if isinstance(item, dict) and "role" in item and "content" in item:
        return item
    blocks = to_content_blocks(item)
    if blocks is None or len(blocks) != 1:
        raise TypeError("a prompt message must be a str, one content block, or "
                        "a {role, content} dict")
    return {"role": "user", "content": blocks[0]}


def _result(value: Any, description: str | None) -> dict[str, Any]:
    if isinstance(value, dict) and "messages" in value:
        return value
    if isinstance(value, str):
        messages = [{"role": "user", "content": text(value)}]
    elif isinstance(value, (list, tuple)):
        messages = [_message(item) for item in value]
    else:
        messages = [_message(value)]
    result: dict[str, Any] = {"messages": messages}
    if description:
        result["description"] = description
    return result
