"""Tool arguments mirrored into ``Mcp-Param-*`` headers (2026-07-28 Streamable HTTP).

A tool's input schema may mark a top-level property with ``x-mcp-header:
Name``; a client calling that tool over HTTP then repeats the argument's
value in the ``Mcp-Param-Name`` header so that proxies and gateways can route
or authorize on it without parsing the body.  Since an intermediary acts on
the header and the server on the body, the server must refuse a request in
which the two disagree (-32020 HeaderMismatch, HTTP 400).

Pure functions, shared by both sides:

* :func:`header_parameters` reads (and vets) a schema's annotations; a tool
  whose annotations are malformed is refused at registration by the server
  and left out of the tool list by the client;
* :func:`encode_param_value` is the client's rendering of a value;
* :func:`check_param_headers` is the server's comparison.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from .http import decode_header_value, mismatch

__all__ = (
    "PARAM_HEADER_PREFIX",
    "InvalidHeaderAnnotation",
    "header_parameters",
    "encode_param_value",
    "check_param_headers",
)

PARAM_HEADER_PREFIX = "mcp-param-"
# An HTTP field-name token (RFC 9110 §5.6.2): no spaces, colons, controls or
# non-ASCII characters.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Primitive JSON types a header can carry exactly (a float has no single
# textual form, so ``number`` is excluded).
_HEADER_TYPES = frozenset(("string", "integer", "boolean"))
# Plain printable ASCII without surrounding whitespace travels as is.
_PLAIN = re.compile(r"(?:[!-~](?:[ -~]*[!-~])?)?")


class InvalidHeaderAnnotation(ValueError):
    """An ``x-mcp-header`` annotation that no header can carry."""


def header_parameters(input_schema: Mapping[str, Any] | None) -> dict[str, str]:
    """``{argument name: header suffix}`` for a tool's annotated properties.

    Raises :class:`InvalidHeaderAnnotation` when an annotation is empty, not a
    token, on a non-primitive or number property, or repeated (header names
    compare case-insensitively).
    """
    properties = (input_schema or {}).get("properties")
    if not isinstance(properties, Mapping):
        return {}
    found: dict[str, str] = {}
    seen: set[str] = set()
    for argument, schema in properties.items():
        if not isinstance(schema, Mapping) or "x-mcp-header" not in schema:
            continue
        name = schema["x-mcp-header"]
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise InvalidHeaderAnnotation(
                f"x-mcp-header of {argument!r} must be a non-empty header-name token")
        kinds = _value_types(schema)
        if not kinds or not kinds <= _HEADER_TYPES:
            raise InvalidHeaderAnnotation(
                f"x-mcp-header is only allowed on string, integer or boolean properties "
                f"({argument!r} is {sorted(kinds) or 'untyped'})")
        if name.lower() in seen:
            raise InvalidHeaderAnnotation(f"x-mcp-header {name!r} is used twice")
        seen.add(name.lower())
        found[argument] = name
    return found


def _value_types(schema: Mapping[str, Any]) -> set[str]:
    """The non-null JSON types a property admits (``type`` or an optional's ``anyOf``)."""
    kinds: set[str] = set()
    declared = schema.get("type")
    if isinstance(declared, str):
        kinds.add(declared)
    elif isinstance(declared, list):
        kinds.update(k for k in declared if isinstance(k, str))
    for branch in (schema.get("anyOf") or schema.get("oneOf") or ()):
        if isinstance(branch, Mapping):
            kinds |= _value_types(branch)
    kinds.discard("null")
    return kinds


def _text_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    return None  # not a primitive: no header (the schema check answers it)


def encode_param_value(value: Any) -> str | None:
    """The header value a client sends for an argument (None: send no header).

    Text that a header cannot carry verbatim (non-ASCII, controls, leading or
    trailing whitespace, or text that itself looks encoded) is sent in the
    ``=?base64?...?=`` form.
    """
    text = _text_of(value)
    if text is None:
        return None
    if _PLAIN.fullmatch(text) and not (text.startswith("=?base64?") and text.endswith("?=")):
        return text
    return "=?base64?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def check_param_headers(headers: Mapping[str, str], arguments: Any,
                        parameters: Mapping[str, str]) -> None:
    """Refuse a ``tools/call`` whose ``Mcp-Param-*`` headers disagree with its arguments.

    Every annotated argument present (and not null) in the body needs its
    header with the same value; a header without its argument is a mismatch
    too.  Raises :class:`HttpRefusal` (400, -32020).
    """
    if not parameters:
        return
    given: Mapping[str, Any] = arguments if isinstance(arguments, Mapping) else {}
    for argument, suffix in parameters.items():
        header = headers.get(PARAM_HEADER_PREFIX + suffix.lower())
        expected = _text_of(given.get(argument))
        if expected is None:
            if header is not None and given.get(argument) is None:
                raise mismatch(f"Mcp-Param-{suffix} is sent but {argument!r} is absent")
            continue
        if header is None:
            raise mismatch(f"Mcp-Param-{suffix} is missing for argument {argument!r}")
        if decode_header_value(header) != expected:
            raise mismatch(f"Mcp-Param-{suffix} differs from argument {argument!r}")
