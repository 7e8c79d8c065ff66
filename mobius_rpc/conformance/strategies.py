"""Hypothesis strategies for MCP messages, generated from our own schemas.

Valid messages come from the JSON Schema of a method's message definition in
one revision (the same compiled schemas the engine validates with), filtered
through that schema so nothing invalid slips through.  Invalid messages are
valid ones with one deliberate defect, each defect tagged with the error
class a correct server must answer: envelope defects -32600, unknown methods
-32601, bad parameters -32602.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from hypothesis import strategies as st

from ..core.methods import Direction, Kind, methods_for
from ..core.revisions import MODERN_REVISIONS
from ..core.schema import schema_for

__all__ = ("Mutation", "fuzzable_methods", "request_strategy", "invalid_request_strategy",
           "schema_strategy")

# Requests a fuzzer must not send at random: the handshake (sent once, by the
# engine) and long-lived requests that only end when the client cancels them.
_EXCLUDED = frozenset({"initialize", "subscriptions/listen"})
_MAX_DEPTH = 4

_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_KEYS = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=6)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), _TEXT)
_ANY_JSON = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=3)), max_leaves=6)


def fuzzable_methods(revision: str, capabilities: dict[str, Any] | None = None) -> list[str]:
    """Client->server request methods of ``revision`` a fuzzer may send; with the
    server's ``capabilities``, only those it declared (gated methods it lacks are
    answered -32601, whatever their params)."""
    found = []
    for name, spec in methods_for(revision).items():
        if spec.kind is not Kind.REQUEST or name in _EXCLUDED or spec.direction not in (
                Direction.CLIENT_TO_SERVER, Direction.BOTH):
            continue
        if capabilities is not None and spec.gate is not None and spec.gate[0] == "server":
            node: Any = capabilities
            for part in spec.gate[1]:
                node = node.get(part) if isinstance(node, dict) else None
            if not node and node != {}:
                continue
        found.append(name)
    return sorted(found)


def schema_strategy(schema: dict[str, Any], defs: dict[str, Any],
                    depth: int = 0) -> st.SearchStrategy[Any]:
    """Values for a JSON Schema node (the subset our schema compiler emits)."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema_strategy(merged, defs, depth)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([schema_strategy({**branch, **_rest(schema, key)}, defs, depth)
                              for branch in schema[key]])
    if "allOf" in schema:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            merged = _merge(merged, part)
        return schema_strategy(merged, defs, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([schema_strategy({**schema, "type": k}, defs, depth) for k in kind])
    if kind == "string":
        return _TEXT
    if kind == "integer":
        return st.integers(int(schema.get("minimum", -10**6)), int(schema.get("maximum", 10**6)))
    if kind == "number":
        low, high = schema.get("minimum", -1e6), schema.get("maximum", 1e6)
        return st.one_of(st.integers(int(low), int(high)),
                         st.floats(low, high, allow_nan=False, allow_infinity=False))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = schema.get("items")
        inner = schema_strategy(items, defs, depth + 1) if isinstance(items, dict) \
            and depth < _MAX_DEPTH else _SCALARS
        return st.lists(inner, min_size=int(schema.get("minItems", 0)), max_size=3)
    if kind == "object" or "properties" in schema:
        return _object_strategy(schema, defs, depth)
    return _ANY_JSON


def _rest(schema: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != key}


def _merge(base: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    merged = {**base, **{k: v for k, v in part.items() if k not in ("properties", "required")}}
    merged["properties"] = {**base.get("properties", {}), **part.get("properties", {})}
    merged["required"] = [*base.get("required", []), *part.get("required", [])]
    return merged


def _object_strategy(schema: dict[str, Any], defs: dict[str, Any],
                     depth: int) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Any] = schema.get("properties") or {}
    required = [name for name in schema.get("required") or [] if name in properties]
    optional = [name for name in properties if name not in required]
    if depth >= _MAX_DEPTH:
        optional = []

    def child(name: str) -> st.SearchStrategy[Any]:
        return schema_strategy(properties[name], defs, depth + 1)

    fixed = st.fixed_dictionaries({name: child(name) for name in required},
                                  optional={name: child(name) for name in optional})
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and extra and depth < _MAX_DEPTH:
        more = st.dictionaries(_KEYS.filter(lambda k: k not in properties),
                               schema_strategy(extra, defs, depth + 1), max_size=2)
        return st.tuples(fixed, more).map(lambda pair: {**pair[1], **pair[0]})
    return fixed


@cache
def request_strategy(revision: str, method: str) -> st.SearchStrategy[dict[str, Any]]:
    """Whole valid request messages (``jsonrpc``, ``id`` filled in later) for ``method``."""
    spec = methods_for(revision)[method]
    compiled = schema_for(revision)
    document = compiled.json_schema(spec.message_def)
    defs = document["$defs"]
    base = schema_strategy(defs[spec.message_def], defs)
    modern = revision in MODERN_REVISIONS

    def complete(message: dict[str, Any]) -> dict[str, Any]:
        out = {"jsonrpc": "2.0", "id": 0, **message, "method": method}
        if modern:  # the engine's own _meta replaces whatever was generated
            params = dict(out.get("params") or {})
            params.pop("_meta", None)
            out["params"] = params
        return out

    def valid(message: dict[str, Any]) -> bool:
        if modern:
            return True  # checked after the engine adds _meta
        return compiled.is_valid(spec.message_def, message)

    return base.map(complete).filter(valid)


@dataclass(frozen=True)
class Mutation:
    """One deliberate defect and the error codes a correct server may answer it with."""

    name: str
    expected: frozenset[int]


_ENVELOPE = frozenset({-32600})
_UNKNOWN = frozenset({-32601})
_PARAMS = frozenset({-32602})


def invalid_request_strategy(revision: str, methods: list[str]
                             ) -> st.SearchStrategy[tuple[Mutation, dict[str, Any]]]:
    """(defect, message) pairs: a valid request broken in exactly one way."""
    compiled = schema_for(revision)

    def bad_version(message: dict[str, Any]) -> tuple[Mutation, dict[str, Any]]:
        return Mutation("jsonrpc-version", _ENVELOPE), {**message, "jsonrpc": "1.0"}

    def bad_id(pair: tuple[dict[str, Any], Any]) -> tuple[Mutation, dict[str, Any]]:
        message, value = pair
        return Mutation("id-type", _ENVELOPE), {**message, "id": value}

    def unknown(pair: tuple[dict[str, Any], str]) -> tuple[Mutation, dict[str, Any]]:
        message, name = pair
        return Mutation("unknown-method", _UNKNOWN), {**message, "method": f"fuzz/{name}"}

    def params_not_object(pair: tuple[dict[str, Any], Any]
                          ) -> tuple[Mutation, dict[str, Any]]:
        message, value = pair
        return Mutation("params-not-object", _PARAMS | _ENVELOPE), {**message,
                                                                     "params": value}

    def drop_required(message: dict[str, Any]) -> tuple[Mutation, dict[str, Any]] | None:
        spec = methods_for(revision)[message["method"]]
        document = compiled.json_schema(spec.message_def)
        node = document["$defs"][spec.message_def].get("properties", {}).get("params", {})
        while "$ref" in node:
            node = document["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        required = [r for r in node.get("required", []) if r != "_meta"]
        params = dict(message.get("params") or {})
        if not required or required[0] not in params:
            return None
        del params[required[0]]
        return Mutation(f"missing-{required[0]}", _PARAMS), {**message, "params": params}

    def wrong_type(message: dict[str, Any]) -> tuple[Mutation, dict[str, Any]] | None:
        params = dict(message.get("params") or {})
        for key, value in params.items():
            if key != "_meta" and isinstance(value, str):
                params[key] = [value, 7]
                return Mutation(f"type-of-{key}", _PARAMS), {**message, "params": params}
        return None

    valid = st.sampled_from(methods).flatmap(lambda m: request_strategy(revision, m))
    broken = st.one_of(
        valid.map(bad_version),
        st.tuples(valid, st.one_of(st.booleans(), st.lists(st.integers(-1000, 1000), max_size=2),
                                   st.dictionaries(_KEYS, st.integers(-1000, 1000), max_size=2))
                  ).map(bad_id),
        st.tuples(valid, _KEYS).map(unknown),
        st.tuples(valid, st.one_of(st.lists(st.integers(-1000, 1000), min_size=1, max_size=2),
                                   st.integers(-1000, 1000), _TEXT)).map(params_not_object),
        valid.map(drop_required).filter(lambda x: x is not None),
        valid.map(wrong_type).filter(lambda x: x is not None),
    )
    return broken
