"""Compiled validators for the MCP definitions of each revision.

Validation is on every message's hot path, so it runs on compiled validators
(jsonschema-rs): a valid ``tools/call`` request costs well under a
microsecond, where python-jsonschema costs ~160.  Validators are built lazily,
one per definition actually used, and cached per revision.  Only a failing
instance pays for an error report: the path to the failing field and a short
message, found by walking into the ``anyOf`` branch the instance was most
likely meant to match (the one whose constants, such as ``method`` or
``type``, it satisfies).

python-jsonschema remains the reference: tests check that these validators
and python-jsonschema on the official schema files classify instances alike.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import jsonschema_rs

from .schemagen import DIALECT, compile_revision

__all__ = ("SchemaError", "UnknownDefinition", "RevisionSchema", "schema_for")

_MAX_MESSAGE = 200
#: Error kinds that say "this is a different variant", not "this variant is broken".
_MISMATCH_KINDS = frozenset({"const", "enum"})


class SchemaError(Exception):
    """An instance failed a definition.

    ``path`` is the dotted path to the failing field (``params.arguments.x``,
    list indices as numbers, ``''`` for the root), ``message`` says what is
    wrong, ``definition`` names the definition that was checked.
    """

    def __init__(self, path: str, message: str, definition: str) -> None:
        super().__init__(f"{path or '<root>'}: {message}")
        self.path = path
        self.message = message
        self.definition = definition


class UnknownDefinition(KeyError):
    """The revision has no definition of that name: a message of a kind the
    revision lacks (a bug of ours when it is a message we send, never the peer's).

    A ``KeyError`` for callers that looked definitions up before it existed.
    """

    def __init__(self, revision: str, name: str) -> None:
        super().__init__(f"MCP {revision} has no definition {name!r}")
        self.revision = revision
        self.name = name


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            found.add(ref[len("#/$defs/"):])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def _branch_score(errors: list[Any]) -> tuple[int, int, int]:
    """Lower is a better guess at the variant the instance meant to be."""
    mismatches = sum(1 for e in errors if e.kind.name in _MISMATCH_KINDS)
    depth = max((len(e.instance_path) for e in errors), default=0)
    return mismatches, len(errors), -depth


def _most_specific(errors: list[Any]) -> Any:
    """The error closest to the real problem, looking inside ``anyOf``/``oneOf``."""
    expanded = []
    for error in errors:
        context = getattr(error.kind, "context", None)
        if context:
            branch = min(context, key=_branch_score)
            if branch:
                expanded.append(_most_specific(branch))
                continue
        expanded.append(error)
    return max(expanded, key=lambda e: len(e.instance_path))


class RevisionSchema:
    """The definitions of one protocol revision, with a validator per definition."""

    def __init__(self, revision: str) -> None:
        self.revision = revision
        self._defs: dict[str, Any] = compile_revision(revision)["$defs"]
        self._names = frozenset(self._defs)
        self._validators: dict[str, Any] = {}

    def names(self) -> frozenset[str]:
        return self._names

    def _closure(self, name: str) -> list[str]:
        if name not in self._defs:
            raise UnknownDefinition(self.revision, name)
        seen = {name}
        todo = [name]
        while todo:
            found: set[str] = set()
            _refs(self._defs[todo.pop()], found)
            todo += sorted(found - seen)
            seen |= found
        return sorted(seen)

    def json_schema(self, name: str) -> dict[str, Any]:
        """A self-contained schema for one definition: a ``$ref`` plus the ``$defs`` it needs.

        A fresh copy on every call, usable by python-jsonschema as well.
        """
        defs = {n: copy.deepcopy(self._defs[n]) for n in self._closure(name)}
        return {"$schema": DIALECT, "$ref": f"#/$defs/{name}", "$defs": defs}

    def _validator(self, name: str) -> Any:
        """The compiled validator of ``name``, built on first use.

        No lock (the core stays free of threading): two threads racing on a
        first use may both compile, ``setdefault`` keeps one, and every caller
        gets that one.  Compiling twice is harmless, just wasted work.
        """
        validator = self._validators.get(name)
        if validator is None:
            built = jsonschema_rs.validator_for(self.json_schema(name), validate_formats=False)
            validator = self._validators.setdefault(name, built)
        return validator

    def is_valid(self, name: str, instance: object) -> bool:
        """Whether ``instance`` is a valid ``name``; the fast path, never raises for data."""
        result: bool = self._validator(name).is_valid(instance)
        return result

    def check(self, name: str, instance: object) -> None:
        """Return if ``instance`` is a valid ``name``; raise :class:`SchemaError` if not."""
        validator = self._validators.get(name) or self._validator(name)
        if validator.is_valid(instance):
            return
        errors = list(validator.iter_errors(instance))
        if not errors:  # pragma: no cover - is_valid and iter_errors disagree
            raise SchemaError("", "invalid", name)
        error = _most_specific(errors)
        path = ".".join(str(part) for part in error.instance_path)
        message = error.message
        if len(message) > _MAX_MESSAGE:
            message = message[:_MAX_MESSAGE - 3] + "..."
        raise SchemaError(path, message, name)


@cache
def schema_for(revision: str) -> RevisionSchema:
    """The (cached) schema of ``revision``; an unknown revision raises ``KeyError``."""
    return RevisionSchema(revision)
