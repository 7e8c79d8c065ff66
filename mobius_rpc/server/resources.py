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
from .registry import Registry
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


class ResourceRegistry(Registry[Resource]):
    """Static resources by URI and, beside them, templates by their template
    string: one registry of each kind, changes reported through one callback."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        super().__init__(on_change)
        self.templates: Registry[ResourceTemplate] = Registry(on_change)

    def add(self, uri: str, fn: Callable[..., Any], *, name: str | None = None,
            title: str | None = None, description: str | None = None,
            mime_type: str | None = None, annotations: dict[str, Any] | None = None,
            icons: list[dict[str, Any]] | None = None, meta: dict[str, Any] | None = None,
            size: int | None = None) -> Resource | ResourceTemplate:
        signature = analyze(fn, context_type=Context)
        info = _Meta(name or fn.__name__, title, description or signature.description,
                     mime_type, annotations, icons, meta, size)
        if UriTemplate.is_template(uri):
            template = UriTemplate(uri)
            params = set(signature.input_schema.get("properties", {}))
            missing = params - set(template.variables)
            if missing:
                raise TypeError(f"resource template {uri!r} has no variables for parameters "
                                f"{sorted(missing)}")
            return self.templates._put(uri, ResourceTemplate(template, fn, info,
                                                             signature.context_param))
        if signature.input_schema.get("properties"):
            raise TypeError(f"static resource {uri!r} cannot take parameters")
        return self._put(uri, Resource(uri, fn, info, signature.context_param))

    def remove(self, uri: str) -> bool:
        """Remove the static resource or the template ``uri`` names."""
        return super().remove(uri) or self.templates.remove(uri)

    def __len__(self) -> int:
        return super().__len__() + len(self.templates)

    def template_definitions(self) -> list[dict[str, Any]]:
        return self.templates.definitions()

    def find_template(self, uri_template: str) -> ResourceTemplate | None:
        return self.templates.get(uri_template)

    async def read(self, uri: str, ctx: Context) -> dict[str, Any]:
        """The ``ReadResourceResult`` for ``uri``."""
        static = self._entries.get(uri)
        kwargs: dict[str, Any] = {}
        entry: Resource | ResourceTemplate | None = static
        if static is None:
            for template in self.templates:
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
