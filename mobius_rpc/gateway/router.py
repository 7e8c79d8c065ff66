"""Names and URIs through the gateway: one namespace over many upstreams.

Two upstreams may both have a ``search`` tool or a ``file:///`` resource, so
what the gateway lists is namespaced and every name maps back to exactly one
upstream:

* tools and prompts are ``<upstream><separator><name>`` (``git__status``);
  with ``bare=True`` a name only one upstream uses stays as it is and only
  clashing names are qualified;
* resource URIs and templates get the upstream as a scheme prefix,
  ``<upstream>+<uri>`` (``everything+test://static/resource/1``): still a URI
  (RFC 3986 schemes may contain ``+``), unique, and reversible without a table,
  so a URI produced by expanding a template maps back as well as a listed one.

Merged lists are sorted by name (or URI) and paginated by the last key seen,
not by an offset: a cursor stays valid and skips or repeats nothing that was
listed throughout, however the upstreams' lists change between two pages.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.errors import INVALID_PARAMS, McpError

__all__ = ("HOP_PARAMS", "Naming", "Router", "hop_free", "paginate_by_key", "scheme_prefix")

_SCHEME_UNSAFE = re.compile(r"[^a-z0-9.-]")
_CURSOR_PREFIX = "mgw1"
#: result fields of the upstream hop's era
_HOP_RESULT = ("resultType", "ttlMs", "cacheScope")
#: params of a downstream request that belong to the downstream hop only (never forwarded)
HOP_PARAMS = ("_meta", "inputResponses", "requestState", "task")
_PROTOCOL_META = "io.modelcontextprotocol/"


def scheme_prefix(upstream: str) -> str:
    """The URI scheme prefix of ``upstream``: lower case letters, digits, ``.`` and ``-``."""
    safe = _SCHEME_UNSAFE.sub("-", upstream.lower())
    return safe if safe[:1].isalpha() else f"u{safe}"


@dataclass(frozen=True)
class Naming:
    """How upstream names become public ones."""

    separator: str = "__"
    #: keep names that only one upstream uses unqualified
    bare: bool = False
    #: "prefix" (``<upstream>+<uri>``) or "keep" (URIs as the upstreams list them)
    resource_uris: str = "prefix"

    def __post_init__(self) -> None:
        if not self.separator:
            raise ValueError("the separator must not be empty")
        if self.resource_uris not in ("prefix", "keep"):
            raise ValueError("resource_uris is 'prefix' or 'keep'")


class Router:
    """Public names and URIs of the upstreams' items, and the way back."""

    def __init__(self, naming: Naming | None = None) -> None:
        self.naming = naming or Naming()
        #: kind ("tools", "prompts") -> public name -> (upstream, original name)
        self._routes: dict[str, dict[str, tuple[str, str]]] = {"tools": {}, "prompts": {}}
        #: scheme prefix -> upstream
        self._prefixes: dict[str, str] = {}
        #: "keep" mode: listed URI -> upstream
        self._owners: dict[str, str] = {}

    # ----------------------------------------------------------- upstreams

    def add_upstream(self, name: str) -> None:
        prefix = scheme_prefix(name)
        other = self._prefixes.get(prefix)
        if other is not None and other != name:
            raise ValueError(f"upstream names {other!r} and {name!r} give the same URI "
                             f"prefix {prefix!r}; rename one")
        self._prefixes[prefix] = name

    def remove_upstream(self, name: str) -> None:
        self._prefixes.pop(scheme_prefix(name), None)

    # --------------------------------------------------------- names

    def rebuild(self, kind: str, by_upstream: dict[str, list[dict[str, Any]]]
                ) -> list[dict[str, Any]]:
        """The public definitions of ``kind`` ("tools"/"prompts"); remembers the routes."""
        counts: dict[str, int] = {}
        for items in by_upstream.values():
            for item in items:
                counts[item["name"]] = counts.get(item["name"], 0) + 1
        routes: dict[str, tuple[str, str]] = {}
        merged: list[dict[str, Any]] = []
        for upstream, items in by_upstream.items():
            for item in items:
                original = item["name"]
                public = original if self.naming.bare and counts[original] == 1 \
                    else f"{upstream}{self.naming.separator}{original}"
                if public in routes:  # "a__b" + "c" against "a" + "b__c": first one wins
                    continue
                routes[public] = (upstream, original)
                merged.append({**item, "name": public})
        self._routes[kind] = routes
        return merged

    def route(self, kind: str, public: str) -> tuple[str, str] | None:
        """(upstream, original name) of a public tool or prompt name."""
        return self._routes[kind].get(public)

    def public_name(self, kind: str, upstream: str, original: str) -> str | None:
        for public, route in self._routes[kind].items():
            if route == (upstream, original):
                return public
        return None

    # --------------------------------------------------------- URIs

    def public_uri(self, upstream: str, uri: str) -> str:
        if self.naming.resource_uris == "keep":
            return uri
        return f"{scheme_prefix(upstream)}+{uri}"

    def resolve_uri(self, public: str) -> tuple[str, str] | None:
        """(upstream, original URI) of a public URI, or None (not an upstream's)."""
        if self.naming.resource_uris == "keep":
            owner = self._owners.get(public)
            return (owner, public) if owner is not None else None
        prefix, plus, original = public.partition("+")
        upstream = self._prefixes.get(prefix) if plus else None
        return (upstream, original) if upstream is not None and original else None

    def resources(self, by_upstream: dict[str, list[dict[str, Any]]]
                  ) -> list[dict[str, Any]]:
        owners: dict[str, str] = {}
        merged = []
        for upstream, items in by_upstream.items():
            for item in items:
                uri = item.get("uri")
                if not isinstance(uri, str):
                    continue
                owners.setdefault(uri, upstream)
                merged.append({**item, "uri": self.public_uri(upstream, uri)})
        self._owners = owners
        return merged

    def templates(self, by_upstream: dict[str, list[dict[str, Any]]]
                  ) -> list[dict[str, Any]]:
        return [{**item, "uriTemplate": self.public_uri(upstream, item["uriTemplate"])}
                for upstream, items in by_upstream.items() for item in items
                if isinstance(item.get("uriTemplate"), str)]

    def publish_contents(self, upstream: str, value: Any) -> Any:
        """``value`` (a result) with the URIs of resources in it made public.

        Copy on write: what holds no URI to publish (a tool's text content, the
        usual case) comes back as it is, not rebuilt dict by dict per call."""
        if self.naming.resource_uris == "keep":
            return value
        if isinstance(value, list):
            items = [self.publish_contents(upstream, v) for v in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] | None = None
        for key, item in value.items():
            if key == "uri" and isinstance(item, str) and (
                    "text" in value or "blob" in value or value.get("type") == "resource_link"):
                new = self.public_uri(upstream, item)
            elif key in ("content", "contents", "resource", "messages"):
                new = self.publish_contents(upstream, item)
            else:
                continue
            if new is not item:
                if out is None:
                    out = dict(value)
                out[key] = new
        return value if out is None else out


def _encode(kind: str, key: str) -> str:
    raw = f"{_CURSOR_PREFIX}:{kind}:{key}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(kind: str, cursor: object) -> str:
    if not isinstance(cursor, str) or not cursor or len(cursor) > 4096:
        raise McpError(INVALID_PARAMS, "Invalid params: invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise McpError(INVALID_PARAMS, "Invalid params: invalid cursor") from None
    prefix, _, rest = raw.partition(":")
    cursor_kind, sep, key = rest.partition(":")
    if prefix != _CURSOR_PREFIX or cursor_kind != kind or not sep:
        raise McpError(INVALID_PARAMS, "Invalid params: invalid cursor")
    return key


def paginate_by_key(kind: str, items: Sequence[dict[str, Any]], field: str,
                    params: dict[str, Any], page_size: int
                    ) -> tuple[list[dict[str, Any]], str | None]:
    """The page after ``params["cursor"]`` of ``items`` ordered by ``field``, and the
    next cursor (which names the last key of the page)."""
    ordered = sorted(items, key=lambda item: str(item.get(field, "")))
    start = 0
    if params.get("cursor") is not None:
        after = _decode(kind, params["cursor"])
        start = next((i for i, item in enumerate(ordered)
                      if str(item.get(field, "")) > after), len(ordered))
    page = ordered[start:start + page_size]
    more = start + len(page) < len(ordered)
    return page, (_encode(kind, str(page[-1].get(field, ""))) if more and page else None)


def hop_free(result: dict[str, Any]) -> dict[str, Any]:
    """An upstream's result without what belongs to the upstream hop only: its era's
    envelope (``resultType``, cache hints) and the protocol's own ``_meta`` keys
    (its server info would otherwise pass for ours)."""
    out = {k: v for k, v in result.items() if k not in _HOP_RESULT}
    meta = out.get("_meta")
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if not k.startswith(_PROTOCOL_META)}
        if kept:
            out["_meta"] = kept
        else:
            del out["_meta"]
    return out
