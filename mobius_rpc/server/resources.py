"""Resources: static URIs and RFC 6570 URI templates, listing, reading.

A handler returns ``str`` (text), ``bytes`` (blob, base64 on the wire), a
contents dict, or a list of contents dicts; the registry fills in ``uri`` and
``mimeType``.  An unknown URI is -32002 in the legacy era (with ``data.uri``)
and -32602 in the modern era, where -32002 must not be emitted.
"""

from __future__ import annotations

import base64
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.errors import INVALID_PARAMS, RESOURCE_NOT_FOUND, McpError
from ..core.revisions import MODERN_REVISIONS
from .context import Context
from .hints import analyze
from .uritemplate import UriTemplate

__all__ = ("Resource", "ResourceTemplate", "ResourceRegistry", "ResourceNotFound")


class ResourceNotFound(Exception):
    """Raise from a template handler when the URI matched but names nothing.

    The registry answers it with the not-found error of the session's era.
    """


@dataclass(slots=True)
class _Meta:
    name: str
    title: str | None
    description: str | None
    mime_type: str | None
    annotations: dict[str, Any] | None
    icons: list[dict[str, Any]] | None
    meta: dict[str, Any] | None
    size: int | None = None

    def fill(self, out: dict[str, Any]) -> dict[str, Any]:
        for key, value in (("title", self.title), ("description", self.description),
                           ("mimeType", self.mime_type), ("annotations", self.annotations),
                           ("icons", self.icons), ("size", self.size), ("_meta", self.meta)):
            if value is not None:
                out[key] = value
        return out


@dataclass(slots=True)
class Resource:
    uri: str
    fn: Callable[..., Any]
    info: _Meta
    context_param: str | None

    def definition(self) -> dict[str, Any]:
        return self.info.fill({"uri": self.uri, "name": self.info.name})


@dataclass(slots=True)
class ResourceTemplate:
    template: UriTemplate
    fn: Callable[..., Any]
    info: _Meta
    context_param: str | None

    def definition(self) -> dict[str, Any]:
        out = self.info.fill({"uriTemplate": self.template.template, "name": self.info.name})
        out.pop("size", None)
        return out


class ResourceRegistry:
    def __init__(self, on_change: Callable[[], None]) -> None:
        self._static: dict[str, Resource] = {}
        self._templates: list[ResourceTemplate] = []
        self._on_change = on_change

    def add(self, uri: str, fn: Callable[..., Any], *, name: str | None = None,
            title: str | None = None, description: str | None = None,
            mime_type: str | None = None, annotations: dict[str, Any] | None = None,
            icons: list[dict[str, Any]] | None = None, meta: dict[str, Any] | None = None,
            size: int | None = None) -> Resource | ResourceTemplate:
        signature = analyze(fn, context_type=Context)
        info = _Meta(name or fn.__name__, title, description or signature.description,
                     mime_type, annotations, icons, meta, size)
        entry: Resource | ResourceTemplate
        if UriTemplate.is_template(uri):
            template = UriTemplate(uri)
            params = set(signature.input_schema.get("properties", {}))
            missing = params - set(template.variables)
            if missing:
                raise TypeError(f"resource template {uri!r} has no variables for parameters "
                                f"{sorted(missing)}")
            entry = ResourceTemplate(template, fn, info, signature.context_param)
            self._templates.append(entry)
        else:
            if signature.input_schema.get("properties"):
                raise TypeError(f"static resource {uri!r} cannot take parameters")
            entry = Resource(uri, fn, info, signature.context_param)
            self._static[uri] = entry
        self._on_change()
        return entry

    def remove(self, uri: str) -> None:
        if self._static.pop(uri, None) is not None:
            self._on_change()
            return
        before = len(self._templates)
        self._templates = [t for t in self._templates if t.template.template != uri]
        if len(self._templates) != before:
            self._on_change()

    def __len__(self) -> int:
        return len(self._static) + len(self._templates)

    def definitions(self) -> list[dict[str, Any]]:
        return [r.definition() for r in self._static.values()]

    def template_definitions(self) -> list[dict[str, Any]]:
        return [t.definition() for t in self._templates]

    def find_template(self, uri_template: str) -> ResourceTemplate | None:
        for entry in self._templates:
            if entry.template.template == uri_template:
                return entry
        return None

    async def read(self, uri: str, ctx: Context) -> dict[str, Any]:
        """The ``ReadResourceResult`` for ``uri``."""
        static = self._static.get(uri)
        kwargs: dict[str, Any] = {}
        entry: Resource | ResourceTemplate | None = static
        if static is None:
            for template in self._templates:
                values = template.template.match(uri)
                if values is not None:
                    entry = template
                    kwargs = dict(values)
                    break
        if entry is None:
            raise _not_found(uri, ctx)
        if entry.context_param:
            kwargs[entry.context_param] = ctx
        try:
            value = entry.fn(**kwargs)
            if inspect.isawaitable(value):
                value = await value
        except ResourceNotFound:
            raise _not_found(uri, ctx) from None
        return {"contents": _contents(uri, value, entry.info.mime_type)}


def _not_found(uri: str, ctx: Context) -> McpError:
    if ctx.protocol_version in MODERN_REVISIONS:
        return McpError(INVALID_PARAMS, f"Resource not found: {uri}", {"uri": uri})
    return McpError(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", {"uri": uri})


def _contents(uri: str, value: Any, mime_type: str | None) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, str):
            entry: dict[str, Any] = {"uri": uri, "text": item}
            entry["mimeType"] = mime_type or "text/plain"
        elif isinstance(item, (bytes, bytearray)):
            entry = {"uri": uri, "blob": base64.b64encode(bytes(item)).decode("ascii"),
                     "mimeType": mime_type or "application/octet-stream"}
        elif isinstance(item, dict):
            entry = dict(item)
            entry.setdefault("uri", uri)
            if mime_type:
                entry.setdefault("mimeType", mime_type)
        else:
            raise TypeError(f"resource handler for {uri} returned {type(item).__name__}; "
                            "return str, bytes, or a contents dict")
        out.append(entry)
    return out
