"""Builders for MCP content blocks, so handlers need not spell dicts by hand.

Every function returns the plain JSON object the protocol defines; handlers
may equally return such dicts themselves.
"""

from __future__ import annotations

import base64
from typing import Any

__all__ = ("text", "image", "audio", "resource_link", "embedded_text", "embedded_blob",
           "is_content", "to_content_blocks")


def _with_extras(block: dict[str, Any], annotations: dict[str, Any] | None,
                 meta: dict[str, Any] | None) -> dict[str, Any]:
    if annotations:
        block["annotations"] = annotations
    if meta:
        block["_meta"] = meta
    return block


def text(value: str, *, annotations: dict[str, Any] | None = None,
         meta: dict[str, Any] | None = None) -> dict[str, Any]:
    return _with_extras({"type": "text", "text": value}, annotations, meta)


def image(data: bytes, mime_type: str, *, annotations: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    return _with_extras({"type": "image", "data": base64.b64encode(data).decode("ascii"),
                         "mimeType": mime_type}, annotations, None)


def audio(data: bytes, mime_type: str, *, annotations: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    return _with_extras({"type": "audio", "data": base64.b64encode(data).decode("ascii"),
                         "mimeType": mime_type}, annotations, None)


def resource_link(uri: str, name: str, *, mime_type: str | None = None,
                  description: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "resource_link", "uri": uri, "name": name}
    if mime_type:
        block["mimeType"] = mime_type
    if description:
        block["description"] = description
    return block


def embedded_text(uri: str, value: str, mime_type: str = "text/plain") -> dict[str, Any]:
    return {"type": "resource", "resource": {"uri": uri, "mimeType": mime_type, "text": value}}


def embedded_blob(uri: str, data: bytes, mime_type: str = "application/octet-stream"
                  ) -> dict[str, Any]:
    return {"type": "resource", "resource": {
        "uri": uri, "mimeType": mime_type, "blob": base64.b64encode(data).decode("ascii")}}


_BLOCK_TYPES = frozenset(("text", "image", "audio", "resource", "resource_link"))


def _is_block(value: object) -> bool:
    return isinstance(value, dict) and value.get("type") in _BLOCK_TYPES


def is_content(value: Any) -> bool:
    """Whether ``value`` is a content block or a non-empty list of content blocks."""
    if _is_block(value):
        return True
    return isinstance(value, list) and bool(value) and all(_is_block(v) for v in value)


def to_content_blocks(value: Any) -> list[dict[str, Any]] | None:
    """Content blocks for a handler's return value, or None if it is plain data.

    ``str`` becomes one text block; a block or a list of blocks (or strings)
    passes through.  Anything else is data for the caller to serialize.
    """
    if isinstance(value, str):
        return [text(value)]
    if _is_block(value):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(
            _is_block(v) or isinstance(v, str) for v in value):
        return [text(v) if isinstance(v, str) else v for v in value]
    return None
