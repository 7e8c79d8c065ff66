"""Compile the project's own MCP definitions (``schemas/``) into JSON Schema.

Why our own definitions: each revision's wire format is data we own and review,
written compactly with explicit per-revision deltas, so a reader sees what
changed between revisions.  The official schema files are only a test oracle.

Notation (``schemas/README.md``):

* a string names a primitive (``string``, ``integer``, ``number``, ``boolean``,
  ``null``, ``object``, ``array``, ``any``) or another definition;
* ``{"$const": v}``, ``{"$enum": [...]}``, ``{"$types": [primitive, ...]}``,
  ``{"$num": {...bounds}}``, ``{"$int": {...bounds}}``, ``{"$list": T}`` (may
  carry ``"$minItems"``/``"$maxItems"``), ``{"$map": T}``,
  ``{"$any": [T, ...]}`` (anyOf), ``{"$all": [T, ...]}`` (allOf);
* any other object is an object type: each key is a field (``name?`` marks it
  optional); ``"$extends": "Def"`` (or a list) copies the fields of other
  object definitions first, local fields win.  Other ``$`` keys are reserved
  for the notation (the one field that starts with ``$`` is ``$schema``).

A base file (``mcp-<rev>.json``) holds a full ``defs`` table; a delta file
(``mcp-<rev>.delta.json``) names the revision it ``extends`` and lists
``remove`` (names), ``define`` (new or replaced definitions) and ``amend``
(fields added to or replaced in an object definition; ``"-name": null``
removes a field).  Pure stdlib, compiled once per process.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeGuard

__all__ = ("REVISIONS", "DIALECT", "NotationError", "compile_revision", "definitions",
           "apply_delta", "compile_defs")

DIALECT = "https://json-schema.org/draft/2020-12/schema"

_PRIMITIVES = ("string", "integer", "number", "boolean", "null", "object", "array")
_DIRECTIVES = frozenset({"$const", "$enum", "$types", "$num", "$int", "$list", "$map", "$any",
                         "$all"})
#: Modifiers that may sit beside a directive: ``{"$list": "string", "$maxItems": 100}``.
_MODIFIERS = {"$list": {"$minItems": "minItems", "$maxItems": "maxItems"}}
#: Raw keywords allowed in ``{"$num": {...}}`` / ``{"$int": {...}}``.
_BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"})
_EXTENDS = "$extends"


class NotationError(ValueError):
    """A definition file is malformed (bad notation, unknown name, stale delta)."""


def _schemas_dir() -> Path | Traversable:
    """Source checkout / editable install first, then the copy shipped in the wheel."""
    source = Path(__file__).resolve().parents[2] / "schemas"
    if source.is_dir():
        return source
    return resources.files("mobius_rpc") / "_schemas"


def _load_files() -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    for entry in _schemas_dir().iterdir():
        name = entry.name
        if not (name.startswith("mcp-") and name.endswith(".json")):
            continue
        doc = json.loads(entry.read_text(encoding="utf-8"))
        expected = name[len("mcp-"):].removesuffix(".json").removesuffix(".delta")
        if doc.get("revision") != expected:
            raise NotationError(f"{name}: 'revision' should be {expected!r}")
        files[expected] = doc
    return files


_FILES = _load_files()
REVISIONS: tuple[str, ...] = tuple(sorted(_FILES))


def _bare(key: str) -> str:
    return key[:-1] if key.endswith("?") else key


def _is_object(spec: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(spec, dict) and not (set(spec) & _DIRECTIVES)


def apply_delta(base: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """A new definition table: ``base`` with one delta file's operations applied.

    Strict on purpose: removing or amending a name that does not exist, or
    removing a field an object does not have, raises :class:`NotationError`,
    so a delta that no longer matches its base fails loudly.
    """
    label = delta.get("revision", "<delta>")
    unknown = set(delta) - {"revision", "extends", "remove", "define", "amend"}
    if unknown:
        raise NotationError(f"{label}: unknown delta keys {sorted(unknown)}")
    defs = copy.deepcopy(base)
    for name in delta.get("remove", []):
        if name not in defs:
            raise NotationError(f"{label}: cannot remove unknown {name!r}")
        del defs[name]
    defs.update(copy.deepcopy(delta.get("define", {})))
    for name, fields in delta.get("amend", {}).items():
        target = defs.get(name)
        if not _is_object(target):
            raise NotationError(f"{label}: can only amend object definitions, not {name!r}")
        out = dict(target)
        for key, value in fields.items():
            if key.startswith("-"):
                hits = [k for k in out if _bare(k) == key[1:]]
                if not hits:
                    raise NotationError(f"{label}: {name} has no field {key[1:]!r} to remove")
                del out[hits[0]]
                continue
            for k in [k for k in out if _bare(k) == _bare(key)]:
                del out[k]
            out[key] = copy.deepcopy(value)
        defs[name] = out
    return defs


@cache
def _definitions(revision: str) -> dict[str, Any]:
    doc = _FILES.get(revision)
    if doc is None:
        raise KeyError(f"unknown MCP revision {revision!r}; defined: {', '.join(REVISIONS)}")
    if "extends" not in doc:
        return dict(doc["defs"])
    return apply_delta(_definitions(doc["extends"]), doc)


def definitions(revision: str) -> dict[str, Any]:
    """The notation-level definitions of ``revision`` with its deltas applied (a copy)."""
    return copy.deepcopy(_definitions(revision))


class _Compiler:
    def __init__(self, revision: str, defs: dict[str, Any]) -> None:
        self.revision = revision
        self.defs = defs
        self.where = ""

    def fail(self, message: str) -> NotationError:
        return NotationError(f"{self.revision} {self.where}: {message}")

    def type_(self, spec: Any) -> dict[str, Any]:
        if isinstance(spec, str):
            if spec == "any":
                return {}
            if spec in _PRIMITIVES:
                return {"type": spec}
            if spec not in self.defs:
                raise self.fail(f"unknown definition {spec!r}")
            return {"$ref": f"#/$defs/{spec}"}
        if not isinstance(spec, dict):
            raise self.fail(f"a type is a string or an object, not {spec!r}")
        if _is_object(spec):
            return self.object(spec)
        directives = [k for k in spec if k in _DIRECTIVES]
        if len(directives) != 1:
            raise self.fail(f"one directive per type, not {sorted(directives)}")
        key = directives[0]
        value = spec[key]
        allowed = _MODIFIERS.get(key, {})
        extra = {allowed[k]: v for k, v in spec.items() if k in allowed}
        if len(extra) + 1 != len(spec):
            raise self.fail(f"{key} does not combine with {sorted(set(spec) - {key})}")
        if key == "$const":
            return {"const": value}
        if key == "$enum":
            return {"enum": list(value)}
        if key == "$types":
            bad = [t for t in value if t not in _PRIMITIVES]
            if bad:
                raise self.fail(f"$types takes primitives only, not {bad}")
            return {"type": list(value)}
        if key in ("$num", "$int"):
            if not isinstance(value, dict) or set(value) - _BOUNDS:
                raise self.fail(f"{key} takes a dict of bounds {sorted(_BOUNDS)}")
            return {"type": "number" if key == "$num" else "integer", **value}
        if key == "$list":
            items = {} if value == "any" else {"items": self.type_(value)}
            return {"type": "array", **items, **extra}
        if key == "$map":
            return {"type": "object", "additionalProperties": self.type_(value)} if (
                value != "any") else {"type": "object"}
        if key == "$any":
            return {"anyOf": [self.type_(v) for v in value]}
        return {"allOf": [self.type_(v) for v in value]}

    def fields(self, spec: dict[str, Any], seen: tuple[str, ...] = ()) -> dict[str, Any]:
        """The fields of an object spec with ``$extends`` resolved (local fields win)."""
        bases = spec.get(_EXTENDS, [])
        merged: dict[str, Any] = {}
        for base in [bases] if isinstance(bases, str) else bases:
            target = self.defs.get(base)
            if base in seen or not _is_object(target):
                raise self.fail(f"cannot extend {base!r}")
            merged.update(self.fields(target, seen + (base,)))
        for key, value in spec.items():
            if key == _EXTENDS:
                continue
            for k in [k for k in merged if _bare(k) == _bare(key)]:
                del merged[k]
            merged[key] = value
        return merged

    def object(self, spec: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object"}
        props: dict[str, Any] = {}
        required: list[str] = []
        for key, value in self.fields(spec).items():
            if key.startswith("$") and _bare(key) != "$schema":
                raise self.fail(f"{key!r}: '$' names are notation keywords, not fields")
            props[_bare(key)] = self.type_(value)
            if not key.endswith("?"):
                required.append(_bare(key))
        if props:
            out["properties"] = props
        if required:
            out["required"] = required
        return out


def compile_defs(defs: dict[str, Any], label: str = "<defs>") -> dict[str, Any]:
    """Compile a notation-level definition table into JSON Schema ``$defs``.

    Every reference must resolve inside ``defs``; ``label`` prefixes errors.
    """
    compiler = _Compiler(label, defs)
    out: dict[str, Any] = {}
    for name, spec in defs.items():
        compiler.where = name
        out[name] = compiler.type_(spec)
    return dict(sorted(out.items()))


@cache
def _compiled(revision: str) -> str:
    return json.dumps({"$schema": DIALECT, "$defs": compile_defs(_definitions(revision), revision)})


def compile_revision(revision: str) -> dict[str, Any]:
    """A fresh JSON Schema document (``$schema`` + ``$defs``) for ``revision``."""
    result: dict[str, Any] = json.loads(_compiled(revision))
    return result
