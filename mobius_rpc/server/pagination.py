"""Opaque pagination cursors for the list methods.

A cursor names a position in one list; clients must treat it as opaque
(Pagination, all revisions).  Ours encode the list kind and an offset, so a
cursor from ``tools/list`` handed to ``prompts/list`` (or any string we did
not issue) is rejected with -32602 instead of silently restarting.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any, TypeVar

from ..core.errors import INVALID_PARAMS, McpError

__all__ = ("paginate",)

T = TypeVar("T")
_PREFIX = "mobius1"


def _encode(kind: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}:{kind}:{offset}".encode()).decode().rstrip("=")


def _decode(kind: str, cursor: object) -> int:
    if not isinstance(cursor, str) or not cursor or len(cursor) > 200:
        raise McpError(INVALID_PARAMS, "Invalid params: invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, cursor_kind, offset_text = raw.split(":")
        offset = int(offset_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise McpError(INVALID_PARAMS, "Invalid params: invalid cursor") from None
    if prefix != _PREFIX or cursor_kind != kind or offset <= 0:
        raise McpError(INVALID_PARAMS, "Invalid params: invalid cursor")
    return offset


def paginate(kind: str, items: Sequence[T], params: dict[str, Any], page_size: int
             ) -> tuple[Sequence[T], str | None]:
    """The page selected by ``params["cursor"]`` and the cursor of the next one."""
    offset = _decode(kind, params["cursor"]) if params.get("cursor") is not None else 0
    if offset > len(items):
        raise McpError(INVALID_PARAMS, "Invalid params: cursor is past the end of the list")
    page = items[offset:offset + page_size]
    end = offset + len(page)
    return page, (_encode(kind, end) if end < len(items) else None)
