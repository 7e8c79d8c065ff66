"""Small rules every backend shares, so the three stores cannot drift apart on them.

Cursors for task pages, the JSON encoding of object fields, the checks on
channel names and payloads, and the order of work in a sweep live here once.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import anyio
import orjson
from anyio.abc import TaskGroup

from .base import MAX_MESSAGE_BYTES, EventStore, SessionStore, TaskStore
from .records import Retention, SweepReport

__all__ = ("encode_cursor", "decode_cursor", "dump_json", "load_json", "json_copy", "check_message",
           "check_limit", "check_after", "sweep_parts", "background", "scrub", "MAX_CHANNEL_NAME")

MAX_CHANNEL_NAME = 200
MAX_PAGE = 1000


def scrub(text: str, url: str) -> str:
    """``text`` with every form of the password in ``url`` replaced by ``***``.

    libpq's messages can quote the token they could not parse, which may be the
    password itself; nothing that reaches a user or a log may contain it.
    """
    try:
        parts = urlsplit(url)
        found = [parts.netloc.rpartition("@")[0].partition(":")[2]] if "@" in parts.netloc \
            else []
        found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True)
                  if k == "password"]
        found += [raw for item in parts.query.split("&")
                  for key, _, raw in [item.partition("=")] if key == "password"]
    except ValueError:
        return text
    for secret in sorted({form for value in found for form in (value, unquote(value))
                          if form}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def encode_cursor(created: float, task_id: str) -> str:
    """An opaque cursor naming the last task of a page: ``(created, task_id)``."""
    return base64.urlsafe_b64encode(orjson.dumps([created, task_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The position a cursor names; ValueError for anything we did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, task_id = orjson.loads(raw)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise ValueError(f"invalid cursor {cursor[:40]!r}") from None
    if not isinstance(created, int | float) or isinstance(created, bool) \
            or not isinstance(task_id, str):
        raise ValueError(f"invalid cursor {cursor[:40]!r}")
    return float(created), task_id


def dump_json(value: dict[str, Any] | None) -> str | None:
    """A JSON object as text for a column (None stays NULL)."""
    return None if value is None else orjson.dumps(value).decode()


def json_copy(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a database would hand back for ``value``: a fresh copy, JSON-checked."""
    return load_json(dump_json(value))


def load_json(text: str | bytes | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = orjson.loads(text)
    if not isinstance(value, dict):
        raise ValueError("a JSON column holds something other than an object")
    return value


def check_message(channel: str, payload: bytes) -> None:
    """Refuse what some backend could not carry, on every backend alike."""
    if not isinstance(channel, str) or not channel or len(channel) > MAX_CHANNEL_NAME \
            or any(c in channel for c in "\n\r\x00"):
        raise ValueError("a channel name is 1-200 characters without line breaks or NUL")
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise TypeError("a message payload is bytes")
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ValueError(f"a message payload is at most {MAX_MESSAGE_BYTES} bytes "
                         f"(got {len(payload)})")


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"a page holds 1-{MAX_PAGE} tasks (got {limit})")


def check_after(after: int) -> None:
    if after < 0:
        raise ValueError(f"an event id is never negative (got {after})")


async def sweep_parts(now: float, retention: Retention, sessions: SessionStore,
                      events: EventStore, tasks: TaskStore) -> SweepReport:
    """Expired sessions and their streams, events past ``max_age``, expired tasks."""
    gone = await sessions.expire_older_than(now)
    for session_id in gone:
        await events.delete_session(session_id)
    evicted = await events.expire_older_than(now - retention.max_age)
    expired = await tasks.expire(now)
    return SweepReport(sessions=tuple(gone), events=evicted, tasks=expired)


@asynccontextmanager
async def background() -> AsyncIterator[TaskGroup]:
    """A task group for a store's background work (pollers, listeners).

    The caller's code runs inside it, so without this an exception from that code
    would come out wrapped in an exception group; background tasks catch their
    own errors, so a group of one is unwrapped and the caller sees its exception.
    """
    try:
        async with anyio.create_task_group() as tg:
            try:
                yield tg
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
